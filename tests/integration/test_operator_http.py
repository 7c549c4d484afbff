"""The operator's HTTP side on loopback: the verdict API Argo Rollouts calls, and the decision
webhook with its retries (against a real local HTTP server that fails on purpose)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from robustness_gate.notify import Notice, WebhookNotifier
from robustness_gate.server import OperatorServer


def gate(phase: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "ml", "name": "fraud"}, "status": {"phase": phase, "revision": "abc"}}


@pytest.fixture
def server() -> Iterator[tuple[OperatorServer, dict[str, Any]]]:
    gates: dict[str, Any] = {"ml/fraud": gate("Analyzing"), "ml/broken": RuntimeError("HTTP 500 from the API")}
    state = {"ready": False}

    def read(namespace: str, name: str) -> dict[str, Any] | None:
        value = gates.get(f"{namespace}/{name}")
        if isinstance(value, Exception):
            raise value
        return value

    running = OperatorServer("127.0.0.1:0", read, lambda: state["ready"]).start()
    try:
        yield running, state
    finally:
        running.stop()


def fetch(port: int, path: str, method: str = "GET") -> tuple[int, str, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.loads(error.read())


def test_the_verdict_api_always_answers_json(server: tuple[OperatorServer, dict[str, Any]]) -> None:
    running, state = server
    code, kind, body = fetch(running.port, "/api/v1/verdict/ml/fraud?revision=abc")
    assert (code, kind, body["verdict"]) == (200, "application/json", "pending")
    assert fetch(running.port, "/api/v1/verdict/ml/nope")[:2] == (404, "application/json")
    code, kind, body = fetch(running.port, "/api/v1/verdict/ml/broken")
    assert (code, kind) == (503, "application/json") and "HTTP 500" in body["error"]
    assert fetch(running.port, "/somewhere")[0] == 404
    assert fetch(running.port, "/api/v1/verdict/ml/fraud", method="POST")[0] == 405
    assert fetch(running.port, "/healthz")[0] == 200
    assert fetch(running.port, "/readyz")[0] == 503
    state["ready"] = True
    assert fetch(running.port, "/readyz")[0] == 200


class _Webhook(BaseHTTPRequestHandler):
    """Fails the first `failures` posts with 503, then accepts; records every body."""

    failures = 0
    bodies: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).bodies.append(body)
        code = 503 if len(type(self).bodies) <= type(self).failures else 200
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def webhook() -> Iterator[tuple[str, type[_Webhook]]]:
    handler = type("Hook", (_Webhook,), {"failures": 2, "bodies": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/services/T000/B000/secret-part", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_webhook_is_retried_until_it_accepts(webhook: tuple[str, type[_Webhook]], caplog: Any) -> None:
    url, handler = webhook
    notifier = WebhookNotifier(url, attempts=4, backoff_seconds=0.05)
    notifier(Notice("ml", "fraud", "abc", "Rollback", "Rollback", False, 33.3, "error rate 3x"))
    deadline = time.monotonic() + 10
    while notifier.sent + notifier.failed == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    notifier.close()
    assert (notifier.sent, notifier.failed) == (1, 0)
    assert len(handler.bodies) == 3 and all(b == handler.bodies[0] for b in handler.bodies)
    assert handler.bodies[0]["text"].startswith("robustness-gate ml/fraud: canary abc Rollback")
    assert "secret-part" not in caplog.text and "secret-part" not in json.dumps(handler.bodies)


def test_a_webhook_that_never_accepts_is_given_up_without_blocking(
    webhook: tuple[str, type[_Webhook]], caplog: Any
) -> None:
    url, handler = webhook
    handler.failures = 100
    notifier = WebhookNotifier(url, attempts=3, backoff_seconds=0.05)
    started = time.monotonic()
    notifier(Notice("ml", "fraud", "abc", "Promote", "Promote", False, 100, "ok"))
    assert time.monotonic() - started < 0.1  # queued, not sent inline
    deadline = time.monotonic() + 10
    while notifier.failed == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    notifier.close()
    assert (notifier.sent, notifier.failed) == (0, 1) and len(handler.bodies) == 3
    assert "secret-part" not in caplog.text
