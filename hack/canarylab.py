"""Stand-ins for the pods of a canary release: real model servers on 127.0.0.1 under real load.

``serve`` runs one model server: an HTTP server on a loopback port whose ``/predict`` answers with
a prediction score after a log-normal delay, fails with HTTP 500 at a set rate, and exports
Prometheus metrics labelled with a pod-template hash (the label a Prometheus pod scrape would add):

* ``http_requests_total{app, code, <label>}``                       counter
* ``http_request_duration_seconds{app, <label>}``                  histogram
* ``model_prediction_score{app, <label>}``                         histogram
* ``model_feature_null_total{app, <label>, feature}``              counter
* ``model_feature_observations_total{app, <label>, feature}``      counter

``load`` sends requests at a fixed rate to a list of loopback URLs for a bounded time, then exits.

``ModelServer`` and ``LoadGenerator`` start those as child processes, for tests and the demo.
Every process binds or connects to 127.0.0.1 only, and stops by itself after ``max_lifetime``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from hack.procs import Started, module_command, module_env, terminate

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
FEATURE = "device_fingerprint"
# The model's input features whose null (missing) values are counted, each its own series.
FEATURES = (FEATURE, "age", "amount", "merchant_id")


@dataclass(frozen=True)
class Behaviour:
    """How one version of the model behaves."""

    error_rate: float = 0.01
    latency_median: float = 0.02  # seconds
    latency_sigma: float = 0.4  # of log(latency)
    score_mu: float = -1.0  # logit of the score
    score_sigma: float = 1.0
    null_rate: float = 0.01  # of every feature, but those in feature_null_rates
    # (feature, null rate) pairs that differ from null_rate, e.g. a canary that stops sending one feature.
    feature_null_rates: tuple[tuple[str, float], ...] = ()
    # Error bursts, as one pod has when a dependency or its own process misbehaves for a while:
    # (start, seconds) after the server starts, during which requests fail at burst_error_rate.
    bursts: tuple[tuple[float, float], ...] = ()
    burst_error_rate: float = 0.15

    def __post_init__(self) -> None:
        # Tuples also when read back from JSON, so a behaviour stays hashable and compares by value.
        object.__setattr__(self, "bursts", tuple((float(start), float(length)) for start, length in self.bursts))
        object.__setattr__(self, "feature_null_rates", tuple((str(f), float(r)) for f, r in self.feature_null_rates))
        unknown = {feature for feature, _ in self.feature_null_rates} - set(FEATURES)
        if unknown or not all(0.0 <= rate <= 1.0 for _, rate in self.feature_null_rates):
            raise ValueError(f"invalid feature_null_rates {self.feature_null_rates} (features: {FEATURES})")
        if not 0.0 <= self.burst_error_rate <= 1.0 or any(length <= 0 or start < 0 for start, length in self.bursts):
            raise ValueError(f"invalid bursts {self.bursts} or burst_error_rate {self.burst_error_rate}")

    def null_rate_of(self, feature: str) -> float:
        return dict(self.feature_null_rates).get(feature, self.null_rate)

    def error_rate_at(self, seconds: float) -> float:
        """The error rate `seconds` after the server started."""
        bursting = any(start <= seconds < start + length for start, length in self.bursts)
        return self.burst_error_rate if bursting else self.error_rate


class _Metrics:
    """Counters and histograms of one server, rendered in the Prometheus text format."""

    def __init__(self, app: str, label: str, value: str) -> None:
        self.base = f'app="{app}",{label}="{value}"'
        self.lock = threading.Lock()
        self.codes: dict[str, int] = {}
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.score = [0] * (len(SCORE_BUCKETS) + 1)
        self.score_sum = 0.0
        self.nulls = dict.fromkeys(FEATURES, 0)
        self.observations = 0

    def record(self, code: str, seconds: float, score: float | None, nulls: Sequence[str]) -> None:
        with self.lock:
            self.codes[code] = self.codes.get(code, 0) + 1
            self.latency[_bucket(LATENCY_BUCKETS, seconds)] += 1
            self.latency_sum += seconds
            if score is not None:
                self.score[_bucket(SCORE_BUCKETS, score)] += 1
                self.score_sum += score
                self.observations += 1
                for feature in nulls:
                    self.nulls[feature] += 1

    def render(self) -> str:
        with self.lock:
            lines = ["# TYPE http_requests_total counter"]
            for code in sorted(set(self.codes) | {"200", "500"}):
                lines.append(f'http_requests_total{{{self.base},code="{code}"}} {self.codes.get(code, 0)}')
            lines += _histogram(
                "http_request_duration_seconds", self.base, LATENCY_BUCKETS, self.latency, self.latency_sum
            )
            lines += _histogram("model_prediction_score", self.base, SCORE_BUCKETS, self.score, self.score_sum)
            lines.append("# TYPE model_feature_null_total counter")
            for name in FEATURES:
                lines.append(f'model_feature_null_total{{{self.base},feature="{name}"}} {self.nulls[name]}')
            lines.append("# TYPE model_feature_observations_total counter")
            for name in FEATURES:
                lines.append(f'model_feature_observations_total{{{self.base},feature="{name}"}} {self.observations}')
        return "\n".join(lines) + "\n"


def _bucket(bounds: Sequence[float], value: float) -> int:
    for index, bound in enumerate(bounds):
        if value <= bound:
            return index
    return len(bounds)


def _histogram(name: str, base: str, bounds: Sequence[float], counts: list[int], total: float) -> list[str]:
    lines = [f"# TYPE {name} histogram"]
    cumulative = 0
    for bound, count in zip(bounds, counts, strict=False):
        cumulative += count
        lines.append(f'{name}_bucket{{{base},le="{bound}"}} {cumulative}')
    cumulative += counts[-1]
    lines.append(f'{name}_bucket{{{base},le="+Inf"}} {cumulative}')
    lines.append(f"{name}_sum{{{base}}} {total}")
    lines.append(f"{name}_count{{{base}}} {cumulative}")
    return lines


def serve(
    port: int,
    app: str,
    label: str,
    value: str,
    behaviour: Behaviour,
    seed: int,
    max_lifetime: float,
    port_file: Path | None = None,
) -> None:
    metrics = _Metrics(app, label, value)
    started = time.monotonic()  # the time bursts count from
    rng = random.Random(seed)
    rng_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, metrics.render().encode(), "text/plain; version=0.0.4")
            elif self.path.startswith("/predict"):
                self._predict()
            elif self.path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
            else:
                self._send(404, b"not found\n", "text/plain")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self._predict()

        def _predict(self) -> None:
            began = time.monotonic()
            with rng_lock:
                delay = behaviour.latency_median * math.exp(behaviour.latency_sigma * rng.gauss(0.0, 1.0))
                failed = rng.random() < behaviour.error_rate_at(began - started)
                logit = rng.gauss(behaviour.score_mu, behaviour.score_sigma)
                nulls = [feature for feature in FEATURES if rng.random() < behaviour.null_rate_of(feature)]
            time.sleep(min(delay, 5.0))
            if failed:
                self._send(500, b'{"error":"model failed"}', "application/json")
                metrics.record("500", time.monotonic() - began, None, ())
                return
            score = 1.0 / (1.0 + math.exp(-logit))
            self._send(200, json.dumps({"score": round(score, 6)}).encode(), "application/json")
            metrics.record("200", time.monotonic() - began, score, nulls)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    if port_file is not None:
        port_file.write_text(str(server.server_address[1]))
    deadline = threading.Timer(max_lifetime, server.shutdown)
    deadline.daemon = True
    deadline.start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    server.serve_forever(poll_interval=0.2)
    server.server_close()


def load(urls: Sequence[str], rate: float, duration: float, workers: int) -> dict[str, int]:
    """`rate` requests/s to each URL for `duration` seconds, spread over `workers` threads per URL."""
    for url in urls:
        host = urlsplit(url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"{url}: load is only ever sent to loopback addresses")
    stop = threading.Event()
    sent: dict[str, int] = {url: 0 for url in urls}
    lock = threading.Lock()
    end = time.monotonic() + duration

    def worker(url: str, offset: float) -> None:
        parts = urlsplit(url)
        connection: http.client.HTTPConnection | None = None
        period = workers / rate
        next_at = time.monotonic() + offset
        while not stop.is_set() and time.monotonic() < end:
            pause = next_at - time.monotonic()
            if pause > 0 and stop.wait(pause):
                break
            next_at += period
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
                connection.request("GET", parts.path or "/predict")
                connection.getresponse().read()
                with lock:
                    sent[url] += 1
            except (OSError, http.client.HTTPException):
                if connection is not None:
                    connection.close()
                connection = None
                stop.wait(0.2)
        if connection is not None:
            connection.close()

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [
        threading.Thread(target=worker, args=(url, i / rate), daemon=True) for url in urls for i in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent


# ---------------------------------------------------------------- child-process wrappers


class _Child(Started):
    proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)


class ModelServer(_Child):
    """One model version as a child process; `target` is what Prometheus scrapes."""

    def __init__(
        self,
        workdir: Path,
        app: str,
        label: str,
        value: str,
        behaviour: Behaviour,
        seed: int = 0,
        max_lifetime: float = 900.0,
    ) -> None:
        self.workdir, self.app, self.label, self.value = workdir, app, label, value
        self.behaviour, self.seed, self.max_lifetime = behaviour, seed, max_lifetime
        self.port = 0
        self.started_at = 0.0  # Unix time the server started (its bursts count from it), to within 50 ms

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        port_file = self.workdir / f"modelserver-{self.value}.port"
        port_file.unlink(missing_ok=True)
        command = [
            *module_command("hack.canarylab"),
            "serve",
            "--app",
            self.app,
            "--label",
            self.label,
            "--value",
            self.value,
            "--behaviour",
            json.dumps(asdict(self.behaviour)),
            "--seed",
            str(self.seed),
            "--max-lifetime",
            str(self.max_lifetime),
            "--port-file",
            str(port_file),
        ]
        log = open(self.workdir / f"modelserver-{self.value}.log", "wb")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=module_env()
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if port_file.exists() and port_file.read_text().strip():
                self.started_at = time.time()
                self.port = int(port_file.read_text())
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"model server {self.value} did not start; see {self.workdir}/modelserver-{self.value}.log")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/predict"


class LoadGenerator(_Child):
    """Bounded load on loopback model servers, as a child process."""

    def __init__(self, workdir: Path, urls: Sequence[str], rate: float, duration: float, workers: int = 6) -> None:
        self.workdir, self.urls, self.rate, self.duration, self.workers = workdir, list(urls), rate, duration, workers

    def start(self) -> Self:
        command = [
            *module_command("hack.canarylab"),
            "load",
            "--rate",
            str(self.rate),
            "--duration",
            str(self.duration),
            "--workers",
            str(self.workers),
            *self.urls,
        ]
        log = open(self.workdir / "load.log", "wb")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=module_env()
        )
        log.close()
        return self


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve")
    serve_cmd.add_argument("--port", type=int, default=0)
    serve_cmd.add_argument("--port-file", type=Path)
    serve_cmd.add_argument("--app", default="fraud")
    serve_cmd.add_argument("--label", default="rollouts_pod_template_hash")
    serve_cmd.add_argument("--value", required=True)
    serve_cmd.add_argument("--behaviour", default="{}", help="JSON object of Behaviour fields")
    serve_cmd.add_argument("--seed", type=int, default=0)
    serve_cmd.add_argument("--max-lifetime", type=float, default=900.0)
    load_cmd = commands.add_parser("load")
    load_cmd.add_argument("urls", nargs="+")
    load_cmd.add_argument("--rate", type=float, default=50.0, help="requests per second to each URL")
    load_cmd.add_argument("--duration", type=float, default=60.0)
    load_cmd.add_argument("--workers", type=int, default=6)
    args = parser.parse_args(argv)
    if args.command == "serve":
        behaviour = Behaviour(**json.loads(args.behaviour))
        serve(args.port, args.app, args.label, args.value, behaviour, args.seed, args.max_lifetime, args.port_file)
    else:
        with contextlib.redirect_stdout(sys.stderr):
            sent = load(args.urls, args.rate, args.duration, args.workers)
        print(json.dumps(sent), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
