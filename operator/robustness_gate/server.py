"""The operator's HTTP endpoints: gate verdicts for Argo Rollouts web metrics, health, readiness.

`GET /api/v1/verdict/<namespace>/<gate>[?revision=<pod-template-hash>]` answers 200 with a JSON
object for every gate state, including "not enough data yet": released Argo Rollouts versions
count an empty or non-JSON body as Successful whatever the conditions say. An unknown gate is a
404 JSON object; an API failure a 503 JSON object. The answer carries the verdict, the numbers
and the reason, never credentials. HEAD is answered like GET without the body; other methods get 405.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from robustness_gate.api import API_VERSION, Action, Phase, RobustnessGateStatus

log = logging.getLogger("robustness_gate.server")
_NAME = r"[a-z0-9]([-.a-z0-9]*[a-z0-9])?"
VERDICT_PATH = re.compile(rf"^/api/v1/verdict/(?P<namespace>{_NAME})/(?P<gate>{_NAME})/?$")

PASS, FAIL, PENDING, INCONCLUSIVE, INVALID = "pass", "fail", "pending", "inconclusive", "invalid"
_BY_PHASE = {
    Phase.PROMOTED: PASS,
    Phase.PASSED: PASS,
    Phase.ROLLED_BACK: FAIL,
    Phase.FAILED: FAIL,
    Phase.INCONCLUSIVE: INCONCLUSIVE,
    Phase.INVALID: INVALID,
    Phase.PENDING: PENDING,
    Phase.ANALYZING: PENDING,
    Phase.ERROR: PENDING,
}

GateReader = Callable[[str, str], "dict[str, Any] | None"]
ALLOW = "GET, HEAD"
MAX_BODY = 65536  # a request body (never used) up to this size is read and dropped; a larger one closes the connection
IDLE_SECONDS = 10.0  # a connection that sends nothing for this long is closed
_LENGTH = re.compile(r"[0-9]{1,9}")


def watched_only(gates: GateReader, namespaces: list[str]) -> GateReader:
    """With --namespace, the verdict API answers only for the namespaces the operator watches: a gate
    elsewhere is unknown (404) and is never read, whatever the operator's credentials may read."""
    if not namespaces:
        return gates
    allowed = frozenset(namespaces)

    def read(namespace: str, name: str) -> dict[str, Any] | None:
        return gates(namespace, name) if namespace in allowed else None

    return read


def verdict_document(body: dict[str, Any], revision: str | None = None) -> dict[str, Any]:
    """A gate as Argo Rollouts should read it: verdict pass | fail | pending | inconclusive | invalid."""
    meta = body.get("metadata") or {}
    try:
        status = RobustnessGateStatus.model_validate(body.get("status") or {})
    except ValidationError:
        status = RobustnessGateStatus(message="the gate's status is unreadable")
    verdict = _BY_PHASE.get(status.phase, PENDING)
    if status.phase is Phase.PAUSED:
        verdict = FAIL if status.decision and status.decision.action is Action.ROLLBACK else INCONCLUSIVE
    reason = status.message
    if revision and status.revision != revision:
        verdict = PENDING
        reason = (
            f"revision {revision} is not under analysis yet (the gate is on {status.revision or 'no revision'}: "
            f"{status.phase.value})"
        )
    decision = status.decision
    return {
        "apiVersion": API_VERSION,
        "kind": "Verdict",
        "gate": f"{meta.get('namespace')}/{meta.get('name')}",
        "verdict": verdict,
        "phase": status.phase.value,
        "revision": status.revision,
        "stableRevision": status.stable_revision,
        "startedAt": status.started_at,
        "looks": status.looks,
        "score": status.score,
        "gateVerdict": status.verdict.value if status.verdict else None,
        "decision": None
        if decision is None
        else {
            "action": decision.action.value,
            "operation": decision.operation.value,
            "applied": decision.applied,
            "dryRun": decision.dry_run,
            "at": decision.at,
        },
        "metrics": [
            {
                "name": m.name,
                "verdict": m.verdict.value,
                "canary": m.canary,
                "baseline": m.baseline,
                "pValue": m.p_value,
                "effect": m.effect,
            }
            for m in status.metrics
        ],
        "reason": reason,
    }


class OperatorServer:
    """A small threaded HTTP server on one address; `ready` decides /readyz."""

    def __init__(self, address: str, gates: GateReader, ready: Callable[[], bool]) -> None:
        host, _, port = address.rpartition(":")
        self.gates = gates
        self.ready = ready
        self._server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> OperatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "robustness-gate"
            timeout = IDLE_SECONDS

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("%s %s", self.address_string(), format % args)

            def _drop_body(self) -> None:
                """Read and drop a request body so that the next request on a kept-alive connection is read from
                its first byte; a body that cannot be read safely (chunked, unusable or large length) closes the
                connection after the answer instead."""
                length = self.headers.get("Content-Length")
                if self.headers.get("Transfer-Encoding") is not None or (
                    length is not None and (not _LENGTH.fullmatch(length.strip()) or int(length) > MAX_BODY)
                ):
                    self.close_connection = True
                elif length is not None and int(length) > 0:
                    self.rfile.read(int(length))

            def _json(self, code: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self._drop_body()
                body = json.dumps(document).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _not_allowed(self) -> None:
                self._json(405, {"error": "only GET is served"}, {"Allow": ALLOW})

            def do_POST(self) -> None:
                self._not_allowed()

            def do_PUT(self) -> None:
                self._not_allowed()

            def do_DELETE(self) -> None:
                self._not_allowed()

            def do_PATCH(self) -> None:
                self._not_allowed()

            def do_OPTIONS(self) -> None:
                self._not_allowed()

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/healthz":
                    self._json(200, {"status": "ok"})
                    return
                if url.path == "/readyz":
                    ready = server.ready()
                    self._json(200 if ready else 503, {"status": "ok" if ready else "starting"})
                    return
                match = VERDICT_PATH.match(url.path)
                if match is None:
                    self._json(404, {"error": "not found; use /api/v1/verdict/<namespace>/<gate>"})
                    return
                namespace, name = match.group("namespace"), match.group("gate")
                revisions = parse_qs(url.query).get("revision") or [""]
                revision = revisions[0] or None
                try:
                    body = server.gates(namespace, name)
                except Exception as error:  # KubeError (status code and reason only) or a transport error
                    self._json(503, {"error": f"cannot read RobustnessGate {namespace}/{name}: {error}"})
                    return
                if body is None:
                    self._json(404, {"error": f"RobustnessGate {namespace}/{name} not found", "verdict": None})
                    return
                self._json(200, verdict_document(body, revision))

        return Handler
