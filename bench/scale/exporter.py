"""Synthetic canary and baseline series for every gate, served on one loopback /metrics endpoint.

Each pair (app, canary hash, stable hash) gets, per side, the series the gates query: request
counters by status code, a latency histogram and a prediction-score histogram. Values grow
linearly with time at fixed rates and fixed bucket shares (the same for both sides), so every
look sees the same traffic and the judge keeps saying Continue until minDuration.

Run: ``python -m bench.scale.exporter --pairs pairs.json --port-file port [--max-lifetime S]``.
"""

from __future__ import annotations

import argparse
import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

LABEL = "pod_template_hash"
REQUESTS_PER_SECOND = 20.0
ERROR_SHARE = 0.01
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
LATENCY_MEDIAN = 0.03
LATENCY_SIGMA = 0.5


@dataclass(frozen=True)
class Pair:
    app: str
    canary: str
    stable: str


def _lognormal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf((math.log(x) - math.log(LATENCY_MEDIAN)) / (LATENCY_SIGMA * math.sqrt(2))))


def _score_cdf(x: float) -> float:
    return min(1.0, x) ** 2  # more high scores than low ones, as a fraud model's would be skewed


def _format_le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(bound)


def _histogram(name: str, bounds: tuple[float, ...], cdf: list[float], labels: str) -> list[tuple[str, float]]:
    lines = [(f'{name}_bucket{{{labels},le="{_format_le(b)}"}}', share) for b, share in zip(bounds, cdf, strict=True)]
    lines.append((f'{name}_bucket{{{labels},le="+Inf"}}', 1.0))
    lines.append((f"{name}_count{{{labels}}}", 1.0))
    return lines


def series_shares(pairs: Sequence[Pair]) -> list[tuple[str, float]]:
    """Each series and the share of all requests it counts (times requests so far = its value)."""
    latency_cdf = [_lognormal_cdf(b) for b in LATENCY_BUCKETS]
    score_cdf = [_score_cdf(b) for b in SCORE_BUCKETS]
    out: list[tuple[str, float]] = []
    for pair in pairs:
        for value in (pair.canary, pair.stable):
            labels = f'app="{pair.app}",{LABEL}="{value}"'
            out.append((f'http_requests_total{{{labels},code="200"}}', 1 - ERROR_SHARE))
            out.append((f'http_requests_total{{{labels},code="500"}}', ERROR_SHARE))
            out.extend(_histogram("http_request_duration_seconds", LATENCY_BUCKETS, latency_cdf, labels))
            out.extend(_histogram("model_prediction_score", SCORE_BUCKETS, score_cdf, labels))
    return out


HEADER = (
    "# TYPE http_requests_total counter\n"
    "# TYPE http_request_duration_seconds histogram\n"
    "# TYPE model_prediction_score histogram\n"
)


def render(shares: Sequence[tuple[str, float]], requests: float) -> str:
    """The exposition text after `requests` requests per side."""
    body = "".join(f"{series} {share * requests:.3f}\n" for series, share in shares)
    return HEADER + body


def load_pairs(path: Path) -> list[Pair]:
    return [Pair(**item) for item in json.loads(path.read_text())]


def serve(pairs: Sequence[Pair], port_file: Path, max_lifetime: float) -> None:
    shares = series_shares(pairs)
    started = time.time()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = render(shares, REQUESTS_PER_SECOND * (time.time() - started)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Timer(max_lifetime, server.shutdown).start()
    port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--pairs", type=Path, required=True, help="JSON list of {app, canary, stable}")
    parser.add_argument("--port-file", type=Path, required=True, help="where the bound port is written")
    parser.add_argument("--max-lifetime", type=float, default=3600.0, help="exit after this many seconds")
    args = parser.parse_args(argv)
    serve(load_pairs(args.pairs), args.port_file, args.max_lifetime)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
