"""A fault-injecting HTTPS reverse proxy in front of the local cluster's kube-apiserver (loopback only).

It terminates TLS with the cluster's serving certificate, and forwards every request to the real apiserver over
TLS as the admin user (client certificate), verifying the apiserver against the cluster CA. Watches
(`?watch=true`) are relayed as they stream, line by line, with chunked framing.

Rules, switchable at runtime, answer instead of the apiserver:

* `conflicts[(kind, name)] = K`: the next K PATCH requests on that object (`kind` is "gates" for
  `robustnessgates/<name>/status`, "rollouts" for `rollouts/<name>` and `rollouts/<name>/status`) get a
  409 Conflict, with the Status body the apiserver sends for a stale resourceVersion;
* `unavailable_every = N`: every Nth GET of a single RobustnessGate gets a 503 ServiceUnavailable Status;
* `after_target_patch = K`: once the first PATCH of Rollout <name> went through, the next K status patches of
  gate <name> get a 409 (the write that records the action as applied fails after the action was sent).

Everything injected and forwarded is counted, with the time of each event.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "content-length",
    "host",
    "accept-encoding",
}
GATE_STATUS = re.compile(r"^/apis/robustness\.dev/v1alpha1/namespaces/[^/]+/robustnessgates/([^/?]+)/status(\?|$)")
GATE_ONE = re.compile(r"^/apis/robustness\.dev/v1alpha1/namespaces/[^/]+/robustnessgates/([^/?]+)(\?|$)")
ROLLOUT = re.compile(r"^/apis/argoproj\.io/v1alpha1/namespaces/[^/]+/rollouts/([^/?]+)(/status)?(\?|$)")
CONFLICT_MESSAGE = (
    'Operation cannot be fulfilled on {what} "{name}": the object has been modified; '
    "please apply your changes to the latest version and try again"
)


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return json.dumps(body).encode()


@dataclass
class Injected:
    """One answer the proxy made up: when, what and on which object."""

    at: float  # time.time()
    code: int
    kind: str  # "gates", "rollouts" or "gate-get"
    name: str
    method: str
    path: str


@dataclass
class ApiFaultProxy:
    upstream: str  # https://127.0.0.1:<port>
    pki: Path  # ca.crt, serving.crt/.key, admin.crt/.key
    conflicts: dict[tuple[str, str], int] = field(default_factory=dict)
    unavailable_every: int = 0
    after_target_patch: int = 0
    injected: list[Injected] = field(default_factory=list)
    forwarded: Counter[str] = field(default_factory=Counter)  # "METHOD kind" -> count, upstream answered
    patched: list[tuple[float, str, str, int]] = field(default_factory=list)  # rollout PATCHes that went through
    status_writes: list[tuple[float, str]] = field(default_factory=list)  # gate status PATCHes that went through
    gate_gets: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # requests the proxy could not relay to the end

    def __post_init__(self) -> None:
        target = urlsplit(self.upstream)
        assert target.hostname == "127.0.0.1" and target.port, self.upstream
        self.port = target.port
        self.lock = threading.Lock()
        self.client_ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        self.client_ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(str(self.pki / "serving.crt"), str(self.pki / "serving.key"))
        self._open: set[http.client.HTTPSConnection] = set()
        self._armed: set[str] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def setup(self) -> None:
                self.request.settimeout(30)
                self.request.do_handshake()  # in this connection's thread, not in the accepting one
                self.request.settimeout(None)
                super().setup()

            def handle_one(self) -> None:
                try:
                    proxy._serve(self)
                except Exception as error:  # a client or upstream gone mid-answer (also when the proxy stops)
                    self.close_connection = True
                    with proxy.lock:
                        proxy.errors.append(f"{self.command} {self.path}: {error!r}")

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one  # noqa: N815 - http.server's names

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=True)
        self.server.daemon_threads = True
        self.server.socket = server_ctx.wrap_socket(self.server.socket, server_side=True, do_handshake_on_connect=False)
        self.thread = threading.Thread(target=self.server.serve_forever, name="api-fault-proxy", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            open_now = list(self._open)
        for connection in open_now:  # ends the watches still relayed
            with contextlib.suppress(OSError):
                if connection.sock is not None:
                    connection.sock.shutdown(socket.SHUT_RDWR)
            connection.close()

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for clients of the proxy: the cluster CA, and the admin client cert so that it is a
        complete, valid config (the proxy authenticates upstream itself)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "proxied", "cluster": {"server": self.url, "certificate-authority": str(self.pki / "ca.crt")}}
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(self.pki / "admin.crt"),
                        "client-key": str(self.pki / "admin.key"),
                    },
                }
            ],
            "contexts": [{"name": "proxied", "context": {"cluster": "proxied", "user": "admin"}}],
            "current-context": "proxied",
        }
        path.write_text(json.dumps(config, indent=2))
        return path

    # ------------------------------------------------------------ counts

    def count(self, code: int, kind: str) -> int:
        with self.lock:
            return sum(1 for item in self.injected if item.code == code and item.kind == kind)

    def first(self, code: int, kind: str, name: str) -> Injected | None:
        with self.lock:
            return next((i for i in self.injected if i.code == code and i.kind == kind and i.name == name), None)

    # ------------------------------------------------------------ serving

    def _fault(self, method: str, path: str) -> tuple[int, str, str, bytes] | None:
        """The made-up answer for this request, if a rule says so (counted), else None."""
        with self.lock:
            if method == "PATCH":
                for kind, pattern, what in (
                    ("gates", GATE_STATUS, "robustnessgates.robustness.dev"),
                    ("rollouts", ROLLOUT, "rollouts.argoproj.io"),
                ):
                    match = pattern.match(path)
                    if match and self.conflicts.get((kind, match.group(1)), 0) > 0:
                        name = match.group(1)
                        self.conflicts[(kind, name)] -= 1
                        self.injected.append(Injected(time.time(), 409, kind, name, method, path))
                        body = status_body(
                            409,
                            "Conflict",
                            CONFLICT_MESSAGE.format(what=what, name=name),
                            {"name": name, "group": what.split(".", 1)[1], "kind": what.split(".")[0]},
                        )
                        return 409, kind, name, body
            if method == "GET" and "watch=" not in path:
                match = GATE_ONE.match(path)
                if match and not GATE_STATUS.match(path):
                    name = match.group(1)
                    self.gate_gets[name] += 1
                    if self.unavailable_every and self.gate_gets[name] % self.unavailable_every == 0:
                        self.injected.append(Injected(time.time(), 503, "gate-get", name, method, path))
                        return (
                            503,
                            "gate-get",
                            name,
                            status_body(
                                503, "ServiceUnavailable", "the server is currently unable to handle the request"
                            ),
                        )
        return None

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        method, path = handler.command, handler.path
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        fault = self._fault(method, path)
        if fault is not None:
            code, _, _, data = fault
            handler.send_response(code)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Host"] = f"127.0.0.1:{self.port}"
        watch = bool(re.search(r"[?&]watch=(true|1)", path))
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.client_ctx, timeout=None if watch else 60
        )
        with self.lock:
            self._open.add(connection)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            kind = "rollouts" if ROLLOUT.match(path) else "gates" if GATE_ONE.match(path) else "other"
            with self.lock:
                self.forwarded[f"{method} {kind}"] += 1
                status_match = GATE_STATUS.match(path)
                if method == "PATCH" and status_match and 200 <= response.status < 300:
                    self.status_writes.append((time.time(), status_match.group(1)))
                if method == "PATCH" and kind == "rollouts" and 200 <= response.status < 300:
                    match = ROLLOUT.match(path)
                    assert match is not None
                    name = match.group(1)
                    self.patched.append((time.time(), name, path, response.status))
                    if self.after_target_patch and name not in self._armed:
                        self._armed.add(name)  # once per object: a re-sent patch does not re-arm it
                        self.conflicts[("gates", name)] = self.conflicts.get(("gates", name), 0) + (
                            self.after_target_patch
                        )
            passed = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            if not watch:
                data = response.read()
                handler.send_response(response.status)
                for key, value in passed:
                    handler.send_header(key, value)
                handler.send_header("Content-Length", str(len(data)))
                handler.end_headers()
                handler.wfile.write(data)
                return
            handler.send_response(response.status)
            for key, value in passed:
                handler.send_header(key, value)
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            handler.wfile.flush()
            while True:
                piece = response.readline()  # watch events are JSON lines
                if not piece:
                    break
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                handler.wfile.flush()
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        finally:
            with self.lock:
                self._open.discard(connection)
            connection.close()
