"""A loopback reverse proxy in front of one Prometheus, for tests that change what the operator gets back.

A subclass decides per request in :meth:`PrometheusProxy.answer`: an :class:`Answer` of its own, ``DROP`` (the
connection is cut without an answer), or ``None`` to forward the request unchanged. Forwarded requests lose the
hop-by-hop and credential headers; an upstream that cannot be reached gets a 502, as from a gateway.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import urlsplit

from hack.procs import LOOPBACK

_NOT_FORWARDED = {"authorization", "host", "accept-encoding", "connection", "keep-alive", "transfer-encoding"}
DROP: Final = "drop"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Message
    body: bytes | None


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


class PrometheusProxy:
    """Serves on a free 127.0.0.1 port until stop(); ``upstream`` may be changed while it runs."""

    def __init__(self, upstream: str, timeout: float = 30.0) -> None:
        self.upstream = upstream
        self.timeout = timeout
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, self.path, self.headers, self.rfile.read(length) if length else None)
                try:
                    answer = proxy.answer(request)
                    if answer == DROP:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    proxy.send(self, answer if isinstance(answer, Answer) else proxy.forward(request))
                except OSError:
                    return  # the client went away (its timeout): nothing to answer

            do_GET = do_POST = _handle  # noqa: N815 - http.server's method names

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name=type(self).__name__, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, request: Request) -> Answer | str | None:
        """What to answer instead of Prometheus: an Answer, DROP, or None to forward."""
        return None

    def forward(self, request: Request) -> Answer:
        target = urlsplit(self.upstream)
        if target.hostname not in {"127.0.0.1", "localhost"} or target.port is None:
            raise ValueError(f"the proxy forwards to loopback only, not {self.upstream!r}")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED}
        connection = http.client.HTTPConnection(LOOPBACK, target.port, timeout=self.timeout)
        try:
            connection.request(request.method, request.path, body=request.body, headers=headers)
            response = connection.getresponse()
            return Answer(response.status, response.read(), response.getheader("Content-Type") or "application/json")
        except (OSError, http.client.HTTPException) as error:  # upstream down (a restart): a gateway error
            return Answer(502, json.dumps({"status": "error", "error": f"upstream: {error}"}).encode())
        finally:
            connection.close()

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, answer: Answer) -> None:
        handler.send_response(answer.status)
        handler.send_header("Content-Type", answer.content_type)
        handler.send_header("Content-Length", str(len(answer.body)))
        for key, value in answer.headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(answer.body)
