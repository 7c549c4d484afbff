"""The operator's real HTTP server (verdict API, /healthz, /readyz) on 127.0.0.1, fuzzed with hypothesis over raw
sockets: arbitrary paths (percent-encoding, UTF-8, `..`, segments of a few KB), query strings, methods, bodies and
header junk. The gate reader is a stub that returns canned gates or raises the errors the real reader raises.

Every request must get a well-formed answer within 2 s, never a 5xx except the documented 503 when the reader
failed, a JSON document for every verdict path with valid names, and a keep-alive connection must stay in step
(the next request on it is answered as itself). The server is still healthy after the run.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3.exceptions import MaxRetryError, NewConnectionError

from robustness_gate.errors import KubeError
from robustness_gate.server import OperatorServer

EXAMPLES = 300
ANSWER_WITHIN = 2.0
NAME = r"[a-z0-9]([-.a-z0-9]*[a-z0-9])?"
# A verdict path the way a client such as Argo Rollouts sends it: origin-form, plain names, an optional query.
PLAIN_VERDICT = re.compile(rf"^/api/v1/verdict/(?P<namespace>{NAME})/(?P<gate>{NAME})/?(\?[^#\s]*)?$")
ALLOWED = {"GET", "HEAD"}


def gate(name: str, phase: str, revision: str = "abc123", **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "robustness.dev/v1alpha1",
        "kind": "RobustnessGate",
        "metadata": {"namespace": "ml", "name": name},
        "status": {"phase": phase, "revision": revision, "looks": 7, "message": f"{phase}: because", **status},
    }


def _unreachable() -> MaxRetryError:
    cause = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    return MaxRetryError(None, "/apis/robustness.dev/v1alpha1/namespaces/ml/robustnessgates/down", cause)  # type: ignore[arg-type]


# What the stub answers per "namespace/name"; anything else is a missing gate (None), as the real reader answers.
CANNED: dict[str, Any] = {
    "ml/fraud": gate("fraud", "Analyzing", score=80.0),
    "ml/promoted": gate(
        "promoted",
        "Promoted",
        decision={"action": "Promote", "reason": "all metrics pass", "operation": "Promote", "applied": True},
        metrics=[{"name": "error-rate", "verdict": "Pass", "canary": 0.01, "baseline": 0.011}],
    ),
    "ml/rolled-back": gate(
        "rolled-back",
        "RolledBack",
        decision={"action": "Rollback", "reason": "error rate", "operation": "Rollback", "applied": True},
    ),
    "ml/paused": gate("paused", "Paused", decision={"action": "Inconclusive", "reason": "r", "applied": True}),
    "ml/invalid": gate("invalid", "Invalid", message="spec.analysis.interval: must be positive"),
    "ml/no-status": {"metadata": {"namespace": "ml", "name": "no-status"}},
    # Status the operator never writes: unknown phase, wrong types, a list. Must still be a JSON verdict.
    "ml/junk-status": gate("junk-status", "Exploded", looks="many", score="high", metrics=[{"name": 5}]),
    "ml/list-status": {"metadata": {"namespace": "ml", "name": "list-status"}, "status": ["Promoted"]},
    "ml/huge.status": gate("huge.status", "Analyzing", message="x" * 20000),
    # The reader's failures: API errors (status and reason only) and an unreachable apiserver.
    "ml/broken": KubeError("reading RobustnessGate ml/broken: HTTP 500 Internal Server Error", 500),
    "ml/denied": KubeError("reading RobustnessGate ml/denied: HTTP 403 Forbidden", 403),
    "ml/down": "unreachable",
}
VALID_NAMES = [
    "fraud",
    "promoted",
    "rolled-back",
    "paused",
    "invalid",
    "no-status",
    "junk-status",
    "list-status",
    "huge.status",
    "broken",
    "denied",
    "down",
    "missing",
    "a",
    "0",
    "a.b-c",
]


@dataclass
class Reader:
    """The gate reader stub: canned gates by key; records whether the last call raised."""

    calls: list[tuple[str, str]] = field(default_factory=list)
    raised: int = 0

    def __call__(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append((namespace, name))
        value = CANNED.get(f"{namespace}/{name}")
        if value == "unreachable":
            self.raised += 1
            raise _unreachable()
        if isinstance(value, Exception):
            self.raised += 1
            raise value
        return value if isinstance(value, dict) else None


@dataclass
class Running:
    server: OperatorServer
    reader: Reader
    ready: dict[str, bool]
    requests: int = 0
    slowest: float = 0.0
    codes: dict[int, int] = field(default_factory=dict)


@pytest.fixture(scope="module")
def running() -> Iterator[Running]:
    reader = Reader()
    ready = {"ready": True}
    server = OperatorServer("127.0.0.1:0", reader, lambda: ready["ready"]).start()
    try:
        yield Running(server, reader, ready)
    finally:
        server.stop()


# ---------------------------------------------------------------- a raw HTTP/1.x client


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    seconds: float
    will_close: bool


def send(
    sock: socket.socket, method: str, target: bytes, headers: list[bytes], body: bytes, version: str = "HTTP/1.1"
) -> Answer:
    """One request written byte for byte (no client-side validation), its answer read with http.client."""
    started = time.monotonic()
    head = method.encode() + b" " + target + b" " + version.encode() + b"\r\n" + b"".join(h + b"\r\n" for h in headers)
    sock.sendall(head + b"\r\n" + body)
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    data = response.read()
    return Answer(response.status, response.headers, data, time.monotonic() - started, response.will_close)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN)
    sock.settimeout(ANSWER_WITHIN)
    return sock


# ---------------------------------------------------------------- strategies

SAFE = "abcdefghijklmnopqrstuvwxyz0123456789-."


def long_text(alphabet: str, low: int, high: int) -> st.SearchStrategy[str]:
    """Long strings, cheaply: a short random pattern repeated to a random length."""
    return st.tuples(st.text(alphabet, min_size=1, max_size=16), st.integers(low, high)).map(
        lambda pair: (pair[0] * (pair[1] // len(pair[0]) + 1))[: pair[1]]
    )


segment = st.one_of(
    st.sampled_from(["ml", "api", "v1", "verdict", "healthz", "readyz", "..", ".", "", "%2e%2e", "%2F", "%00"]),
    st.sampled_from(VALID_NAMES),
    st.text(SAFE, min_size=1, max_size=40),
    long_text(SAFE, 1000, 4096),  # very long segments
    st.text(
        st.characters(codec="utf-8", exclude_characters=" \t\r\n\x0b\x0c#?"), max_size=30
    ),  # unicode, raw (sent as UTF-8)
    st.binary(max_size=12).map(lambda b: "".join(f"%{x:02X}" for x in b)),  # percent-encoding
    st.text("ABCXYZ_~!$&'()*+,;=:@%", min_size=1, max_size=12),
)
prefix = st.sampled_from(
    [
        "/api/v1/verdict",
        "/api/v1",
        "/api",
        "",
        "/healthz",
        "/readyz",
        "//api/v1/verdict",
        "/API/v1/verdict",
        "/api/v1/verdict/..",
        "http://127.0.0.1/api/v1/verdict",
    ]
)
query_value = st.one_of(
    st.sampled_from(["", "abc123", "other", "%ZZ", "%00", "&", "=", "a=b=c"]),
    st.text(st.characters(codec="latin-1", exclude_characters=" \t\r\n#"), max_size=60),
)
query = st.lists(
    st.tuples(st.sampled_from(["revision", "revision", "REVISION", "rev", "", "x[]"]), query_value), max_size=6
).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))


@st.composite
def targets(draw: st.DrawFn) -> str:
    if draw(st.booleans()):  # a verdict path with valid names most of the time, to reach the reader
        path = f"/api/v1/verdict/{draw(st.sampled_from(['ml', 'default', 'a', 'ml.x']))}/"
        path += draw(st.sampled_from(VALID_NAMES)) + draw(st.sampled_from(["", "/"]))
    else:
        path = draw(prefix) + "".join("/" + s for s in draw(st.lists(segment, max_size=5)))
        path = path or "/"  # an empty request target would make an HTTP/0.9 request line
    q = draw(query)
    return path + ("?" + q if q or draw(st.booleans()) else "") + draw(st.sampled_from(["", "", "#frag"]))


header_name = st.one_of(
    st.sampled_from(
        [
            "Host",
            "Content-Type",
            "Accept",
            "Connection",
            "Content-Length",
            "Transfer-Encoding",
            "Expect",
            "Authorization",
            "X-Forwarded-For",
            "Cookie",
            "Range",
            "If-None-Match",
        ]
    ),
    st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~", min_size=1, max_size=30),
)
header_value = st.one_of(
    st.sampled_from(
        [
            "",
            "close",
            "keep-alive",
            "chunked",
            "100-continue",
            "-1",
            "99999999999999999999",
            "1_0",
            "abc",
            "application/json",
            "text/html; charset=utf-8",
            "bytes=0-",
            "\xff\xfe",
            "Bearer x",
        ]
    ),
    st.text(st.characters(codec="latin-1", exclude_characters="\r\n\x00"), max_size=80),
    long_text("abcdefghijklmnopqrstuvwxyz", 1000, 4000),
)
junk_line = st.binary(min_size=1, max_size=60).filter(
    lambda b: b"\r" not in b and b"\n" not in b and b[:1] not in (b" ", b"\t")
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes, list[bytes], bytes, str]:
    method = draw(st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]))
    target = draw(targets()).encode("utf-8")
    headers: list[bytes] = [b"Host: 127.0.0.1"] if draw(st.booleans()) else []
    for name, value in draw(st.lists(st.tuples(header_name, header_value), max_size=12)):
        if name.lower() in ("content-length", "transfer-encoding", "expect"):
            continue  # framing headers are set below, consistently with the body actually sent
        headers.append(name.encode() + b": " + value.encode("latin-1"))
    headers += draw(st.lists(junk_line.map(lambda b: b"X-Junk: " + b), max_size=3))
    body = b""
    if draw(st.booleans()):
        body = draw(st.binary(max_size=2048))
        headers.append(b"Content-Length: " + str(len(body)).encode())
    elif draw(st.integers(0, 9)) == 0:
        headers.append(b"Transfer-Encoding: chunked")
        body = b"5\r\nhello\r\n0\r\n\r\n"
    elif draw(st.integers(0, 9)) == 0:  # an unusable length and no body: answered, then the connection closed
        headers.append(b"Content-Length: " + draw(st.sampled_from([b"abc", b"-1", b"1_0", b"+3", b"99999999999", b""])))
    if draw(st.integers(0, 9)) == 0:
        headers.append(b"Expect: 100-continue")
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"]))
    return method, target, headers, body, version


# ---------------------------------------------------------------- the properties


def check_answer(running: Running, method: str, target: bytes, answer: Answer, raised: bool) -> None:
    where = f"{method} {target[:200]!r}"
    running.codes[answer.status] = running.codes.get(answer.status, 0) + 1
    running.slowest = max(running.slowest, answer.seconds)
    assert answer.seconds < ANSWER_WITHIN, f"{where} took {answer.seconds:.2f}s"
    if answer.status >= 500:
        assert answer.status == 503 and raised, f"{where}: {answer.status} {answer.body[:300]!r}"
    if raised:
        assert answer.status == 503, f"{where}: the reader failed but the answer was {answer.status}"
        document = json.loads(answer.body) if method != "HEAD" else None
        assert document is None or "error" in document
    match = PLAIN_VERDICT.match(target.decode("latin-1"))  # the request line as the server decodes it
    if match is None:
        return
    # A verdict path with valid names: always JSON, and the status follows the reader.
    assert answer.headers.get("Content-Type") == "application/json", where
    if method not in ALLOWED:
        assert answer.status == 405, f"{where}: {answer.status}"
        assert set(re.split(r",\s*", answer.headers.get("Allow", ""))) >= ALLOWED, where
        json.loads(answer.body)
        return
    key = f"{match['namespace']}/{match['gate']}"
    canned = CANNED.get(key)
    expected = 200 if isinstance(canned, dict) else 503 if canned is not None else 404
    assert answer.status == expected, f"{where}: {answer.status} {answer.body[:300]!r}"
    if method == "HEAD":
        assert answer.body == b"" and int(answer.headers["Content-Length"]) > 0, where
        return
    document = json.loads(answer.body)
    assert isinstance(document, dict)
    if expected == 200:
        assert document["kind"] == "Verdict" and document["gate"] == key, document
        assert document["verdict"] in {"pass", "fail", "pending", "inconclusive", "invalid"}, document
    elif expected == 404:
        assert document["verdict"] is None and key in document["error"]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(request=requests())
def test_fuzzed_requests_get_a_prompt_well_formed_answer(running: Running, request: tuple[Any, ...]) -> None:
    method, target, headers, body, version = request
    running.requests += 1
    before = running.reader.raised
    with connect(running.server.port) as sock:
        answer = send(sock, method, target, headers, body, version)
        check_answer(running, method, target, answer, running.reader.raised > before)
        if not answer.will_close:
            # A kept-alive connection must be in step: the next request is answered as itself.
            after = send(sock, "GET", b"/healthz", [b"Host: 127.0.0.1"], b"")
            assert (after.status, json.loads(after.body)) == (200, {"status": "ok"}), (
                f"{method} {target[:200]!r} with body {body[:50]!r} left the connection out of step: "
                f"{after.status} {after.body[:200]!r}"
            )


@settings(max_examples=EXAMPLES // 3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(VALID_NAMES), revision=query_value, method=st.sampled_from(["GET", "HEAD"]))
def test_every_valid_verdict_path_is_json_with_the_reader_outcome(
    running: Running, name: str, revision: str, method: str
) -> None:
    running.requests += 1
    before = running.reader.raised
    target = f"/api/v1/verdict/ml/{name}?revision={revision}".encode("latin-1")
    with connect(running.server.port) as sock:
        answer = send(sock, method, target, [b"Host: 127.0.0.1", b"Connection: close"], b"")
    check_answer(running, method, target, answer, running.reader.raised > before)
    if PLAIN_VERDICT.match(target.decode("latin-1")) is None:  # a revision with '#' or spaces: still answered
        assert answer.status < 500 or running.reader.raised > before


def test_after_the_fuzzing_the_server_is_healthy_and_was_exercised(running: Running) -> None:
    with connect(running.server.port) as sock:
        answer = send(sock, "GET", b"/healthz", [b"Host: 127.0.0.1", b"Connection: close"], b"")
    assert (answer.status, json.loads(answer.body)) == (200, {"status": "ok"})
    running.ready["ready"] = False
    with connect(running.server.port) as sock:
        answer = send(sock, "GET", b"/readyz", [b"Host: 127.0.0.1", b"Connection: close"], b"")
    assert answer.status == 503 and json.loads(answer.body) == {"status": "starting"}
    running.ready["ready"] = True
    # The run reached every kind of answer (the module runs this last), so the properties were not vacuous.
    print(
        f"requests {running.requests}, status codes {dict(sorted(running.codes.items()))}, "
        f"slowest {running.slowest:.3f}s, reader calls {len(running.reader.calls)}, failures {running.reader.raised}"
    )
    assert running.requests >= EXAMPLES
    assert {200, 404, 405, 503} <= set(running.codes), running.codes
    assert running.reader.raised > 0 and len(running.reader.calls) > 50
