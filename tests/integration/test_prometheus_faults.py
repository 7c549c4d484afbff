"""Prometheus faults become clear errors, never data: a real HTTP server on 127.0.0.1 plays a broken Prometheus."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from robustness_gate.api import MetricSpec
from robustness_gate.metrics.prometheus import Credentials, PrometheusSource
from robustness_gate.metrics.source import MetricsError, Window
from robustness_gate.metrics.templates import Sides

METRIC = MetricSpec.model_validate(
    {
        "name": "errors",
        "slo": {"max": 0.1},
        "errorRate": {"errors": "sum by ({{by}}) (e{ {{selector}} })", "total": "sum by ({{by}}) (t{ {{selector}} })"},
    }
)
SIDES = Sides.by_label("version", "v2", "v1")


class Behaviour:
    status = 200
    body = b"{}"
    delay = 0.0
    seen_headers: ClassVar[list[dict[str, str]]] = []


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        Behaviour.seen_headers.append(dict(self.headers))
        if Behaviour.delay:
            time.sleep(Behaviour.delay)
        try:
            self.send_response(Behaviour.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(Behaviour.body)
        except BrokenPipeError:  # the client gave up first (the timeout test)
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def broken_prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Behaviour.status, Behaviour.body, Behaviour.delay, Behaviour.seen_headers = 200, b"{}", 0.0, []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _fetch(url: str, timeout: float = 2.0, **kwargs: object) -> None:
    source = PrometheusSource(url, timeout_seconds=timeout, **kwargs)  # type: ignore[arg-type]
    try:
        source.fetch(METRIC, SIDES, Window(start=time.time() - 60, step=10, looks=6))
    finally:
        source.close()


@pytest.mark.parametrize(
    ("status", "body", "kind", "fragment"),
    [
        (503, b'{"status":"error","errorType":"unavailable","error":"overloaded"}', "http", "HTTP 503: overloaded"),
        (500, b"<html>oops</html>", "http", "HTTP 500: <html>oops</html>"),
        (200, b"{not json", "malformed", "malformed JSON"),
        (
            200,
            b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"x"]]}]}}',
            "malformed",
            "unreadable sample",
        ),
        (401, b'{"error":"unauthorized"}', "http", "check the credentials"),
        (
            422,
            b'{"status":"error","errorType":"execution","error":"many-to-many matching not allowed"}',
            "http",
            "many-to-many",
        ),
    ],
)
def test_faults_are_errors_with_the_reason(
    broken_prometheus: str, status: int, body: bytes, kind: str, fragment: str
) -> None:
    Behaviour.status, Behaviour.body = status, body
    with pytest.raises(MetricsError) as raised:
        _fetch(broken_prometheus)
    assert raised.value.kind == kind and fragment in str(raised.value)


def test_slow_prometheus_times_out(broken_prometheus: str) -> None:
    Behaviour.delay = 3.0
    started = time.monotonic()
    with pytest.raises(MetricsError, match=r"did not answer metric errors .* within 1s") as raised:
        _fetch(broken_prometheus, timeout=1.0)
    assert raised.value.kind == "timeout" and time.monotonic() - started < 2.9


def test_infinite_value_is_an_error(broken_prometheus: str) -> None:
    now = time.time()
    look = now - 60 + 10
    Behaviour.body = (
        b'{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"version":"v2"},'
        b'"values":[[%d,"+Inf"]]}]}}' % int(look)
    )
    source = PrometheusSource(broken_prometheus, timeout_seconds=2)
    with pytest.raises(MetricsError, match=r"returned inf") as raised:
        source.fetch(METRIC, SIDES, Window(start=int(now) - 60, step=10, looks=6))
    assert raised.value.kind == "data"


def test_credentials_are_sent_but_never_shown(broken_prometheus: str) -> None:
    Behaviour.status, Behaviour.body = 500, b'{"error":"boom"}'
    secret = "s3cr3t-token-value"
    with pytest.raises(MetricsError) as raised:
        _fetch(broken_prometheus, credentials=Credentials(bearer_token=secret), headers={"X-Scope-OrgID": "ml"})
    assert Behaviour.seen_headers[0]["Authorization"] == f"Bearer {secret}"
    assert Behaviour.seen_headers[0]["X-Scope-OrgID"] == "ml"
    assert secret not in str(raised.value) and secret not in repr(Credentials(bearer_token=secret))
