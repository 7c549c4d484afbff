"""A real Prometheus on loopback for integration tests and demos.

``PrometheusServer`` runs the installed Prometheus binary on a free 127.0.0.1 port with a throw-away
data directory and a generated scrape config.  ``backfill_blocks`` (with :mod:`hack.openmetrics`) turns
synthetic history into TSDB blocks with ``promtool`` so that a freshly started server can answer
queries about the past.

promtool 2.42 notes (checked against the binary, they shape the validation below):

* the input must end with ``# EOF``, every sample needs a timestamp, and timestamps are in SECONDS;
  millisecond timestamps are accepted silently and land in year ~58000, after which time-based
  retention (measured from the newest block, not the wall clock) would delete every other block;
* samples of one series that are out of order or repeat a timestamp are dropped silently (exit 0);
* blocks are cut at 2h-aligned boundaries (no ``--max-block-duration`` flag in 2.42), so a 2h range
  usually yields two or three blocks; overlapping blocks are always allowed since 2.39, so backfilled
  history may overlap data that the server scrapes live.

Run ``python -m hack.promlab --help`` for the command line (serve / backfill / free-port); a fake
service fleet with a Prometheus scraping it is ``python -m hack.fakeservice --prometheus``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

from hack.openmetrics import MAX_FUTURE_SECONDS, format_float
from hack.procs import LOOPBACK, Started, die_with_parent_prefix, free_port, tail, terminate

DEFAULT_PROMETHEUS_BIN = "/usr/bin/prometheus"
DEFAULT_PROMTOOL_BIN = "/usr/bin/promtool"
INSTALL_HINT = "install it with apt-get install prometheus"
RETENTION = "30d"
RETENTION_SECONDS = 30 * 86400
DEFAULT_STARTUP_TIMEOUT = 30.0
DEFAULT_MAX_LIFETIME = 3600.0

# Sanity window for backfill timestamps: anything outside is almost certainly milliseconds or a bug.

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]"}

# An opener without proxy handling: lab traffic must never leave loopback, even if HTTP(S)_PROXY is set.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _require_executable(path: str, what: str, env_var: str) -> str:
    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    raise RuntimeError(
        f"{what} binary not found or not executable at {path!r} (set {env_var} to override, or {INSTALL_HINT})"
    )


def resolve_prometheus_bin() -> str:
    """Path of the Prometheus binary (env PROMETHEUS_BIN overrides); RuntimeError if unusable."""
    return _require_executable(
        os.environ.get("PROMETHEUS_BIN") or DEFAULT_PROMETHEUS_BIN, "Prometheus", "PROMETHEUS_BIN"
    )


def resolve_promtool_bin() -> str:
    """Path of promtool (env PROMTOOL_BIN, else next to the Prometheus binary, else /usr/bin/promtool)."""
    explicit = os.environ.get("PROMTOOL_BIN")
    if explicit:
        return _require_executable(explicit, "promtool", "PROMTOOL_BIN")
    prom = os.environ.get("PROMETHEUS_BIN")
    if prom:
        sibling = Path(prom).with_name("promtool")
        if sibling.is_file() and os.access(sibling, os.X_OK):
            return str(sibling)
    return _require_executable(DEFAULT_PROMTOOL_BIN, "promtool", "PROMTOOL_BIN")


def prom_duration(value: str | float) -> str:
    """Prometheus duration string from seconds (float) or pass a duration string through."""
    if isinstance(value, str):
        return value
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"duration must be positive, got {value!r}")
    return f"{round(value * 1000)}ms"


def _check_loopback_target(target: str) -> str:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or host not in _LOOPBACK_HOSTS:
        raise ValueError(f"scrape target must be a loopback host:port, got {target!r}")
    return target


def write_file_sd(path: Path | str, targets: Sequence[str]) -> None:
    """Write a file_sd target file atomically (Prometheus re-reads it when it changes)."""
    checked = [_check_loopback_target(t) for t in targets]
    temporary = Path(f"{path}.tmp")
    temporary.write_text(json.dumps([{"targets": checked, "labels": {}}]))
    temporary.replace(path)


def _check_loopback_url(url: str) -> str:
    if urllib.parse.urlsplit(url).hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise ValueError(f"refusing non-loopback URL {url!r}")
    return url


def http_get(url: str, timeout: float = 10.0) -> bytes:
    """GET a loopback URL (never through a proxy) and return the body; raises on HTTP errors."""
    with _HTTP.open(_check_loopback_url(url), timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


def http_get_json(url: str, params: Mapping[str, str] | None = None, timeout: float = 10.0) -> Any:
    """GET a loopback URL and decode JSON (error bodies of the Prometheus API are decoded too)."""
    _check_loopback_url(url)
    if params:
        url = f"{url}?{urllib.parse.urlencode(params)}"
    try:
        with _HTTP.open(url, timeout=timeout) as resp:
            return json.loads(resp.read().decode())
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace")
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            raise RuntimeError(f"GET {url} failed: HTTP {err.code}: {body[:500]}") from err


@dataclass(frozen=True)
class BlockInfo:
    """A TSDB block created by promtool (times in unix seconds)."""

    ulid: str
    path: Path
    min_time: float
    max_time: float
    num_samples: int
    num_series: int


def _read_block(path: Path) -> BlockInfo:
    meta = json.loads((path / "meta.json").read_text())
    stats = meta.get("stats", {})
    return BlockInfo(
        ulid=str(meta["ulid"]),
        path=path,
        min_time=meta["minTime"] / 1000.0,
        max_time=meta["maxTime"] / 1000.0,
        num_samples=int(stats.get("numSamples", 0)),
        num_series=int(stats.get("numSeries", 0)),
    )


def backfill_blocks(
    openmetrics_path: Path | str,
    data_dir: Path | str,
    *,
    retention_seconds: float | None = RETENTION_SECONDS,
    timeout: float = 300.0,
) -> list[BlockInfo]:
    """Run ``promtool tsdb create-blocks-from openmetrics FILE DATA_DIR`` and return the new blocks.

    Refuses (and removes the new blocks) if they lie in the future or entirely outside retention:
    Prometheus would otherwise delete them, or let them push everything else out of retention.
    """
    src = Path(openmetrics_path)
    dest = Path(data_dir)
    if not src.is_file():
        raise FileNotFoundError(f"backfill file {src} does not exist")
    with src.open("rb") as fh:
        fh.seek(max(0, src.stat().st_size - 64))
        if not fh.read().rstrip().endswith(b"# EOF"):
            raise ValueError(f"{src}: OpenMetrics input must end with '# EOF' (promtool rejects it otherwise)")
    dest.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in dest.iterdir()}
    cmd = [
        resolve_promtool_bin(),
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        "--quiet",
        str(src),
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"promtool did not finish within {timeout}s: {' '.join(cmd)}") from err
    if proc.returncode != 0:
        raise RuntimeError(
            f"promtool failed (exit {proc.returncode}): {' '.join(cmd)}\n{(proc.stderr or proc.stdout)[-2000:]}"
        )
    blocks = sorted(
        (_read_block(p) for p in dest.iterdir() if p.name not in before and (p / "meta.json").is_file()),
        key=lambda b: b.min_time,
    )
    now = time.time()
    problem = None
    for block in blocks:
        if block.max_time > now + MAX_FUTURE_SECONDS:
            problem = f"block {block.ulid} ends in the future ({block.max_time:.0f}); timestamps must be seconds"
        elif retention_seconds is not None and block.max_time < now - retention_seconds:
            problem = f"block {block.ulid} ends {now - block.max_time:.0f}s ago, outside retention"
    if problem:
        for block in blocks:
            shutil.rmtree(block.path, ignore_errors=True)
        raise ValueError(problem)
    return blocks


# --------------------------------------------------------------------------------------------------
# Prometheus server


class PrometheusServer(Started):
    """Prometheus on a free loopback port, scraping loopback targets; use as a context manager.

    The admin API and lifecycle endpoints stay disabled.  ``backfill`` is an OpenMetrics file that is
    converted into blocks inside the fresh data directory before the server starts.  ``max_lifetime``
    bounds how long the server may run if nobody stops it; the process also gets SIGTERM when the
    spawning thread dies.

    The HTTP API is ready ~0.05 s after launch, but Prometheus 2.42 hands static targets to the scrape
    manager only after its ~5 s discovery-update throttle, so the first scrape lands ~5 s later; use
    ``wait_for_samples`` rather than sleeping.
    """

    def __init__(
        self,
        targets: Sequence[str] = (),
        *,
        scrape_interval: str | float = "1s",
        job_name: str = "fakeservice",
        backfill: Path | str | None = None,
        port: int | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        max_lifetime: float | None = DEFAULT_MAX_LIFETIME,
        extra_args: Sequence[str] = (),
        keep_files: bool = False,
        file_sd: Path | str | None = None,
    ) -> None:
        self.targets = [_check_loopback_target(t) for t in targets]
        # A file_sd target file (JSON) whose loopback targets can change while Prometheus runs.
        self.file_sd = Path(file_sd) if file_sd is not None else None
        self.scrape_interval = prom_duration(scrape_interval)
        self.job_name = job_name
        self.backfill = Path(backfill) if backfill is not None else None
        self.startup_timeout = startup_timeout
        self.max_lifetime = max_lifetime
        self.extra_args = list(extra_args)
        self.keep_files = keep_files or os.environ.get("PROMLAB_KEEP") == "1"
        self.backfilled_blocks: list[BlockInfo] = []
        self.startup_seconds: float | None = None
        self._requested_port = port
        self._port: int | None = None
        self._root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError("PrometheusServer already started")
        binary = resolve_prometheus_bin()  # fail before creating anything
        self._root = Path(tempfile.mkdtemp(prefix="promlab-"))
        try:
            self.data_dir.mkdir()
            if self.backfill is not None:
                self.backfilled_blocks = backfill_blocks(self.backfill, self.data_dir)
            self.config_path.write_text(json.dumps(self._config(), indent=2))  # JSON is valid YAML
            self._launch(binary)
        except BaseException:
            self._cleanup()
            raise
        atexit.register(self.stop)
        if self.max_lifetime is not None:
            self._timer = threading.Timer(self.max_lifetime, self._expire)
            self._timer.daemon = True
            self._timer.start()
        return self

    def _config(self) -> dict[str, Any]:
        scrape_configs = []
        if self.targets:
            scrape_configs.append({"job_name": self.job_name, "static_configs": [{"targets": self.targets}]})
        if self.file_sd is not None:
            scrape_configs.append(
                {
                    "job_name": f"{self.job_name}-files",
                    "file_sd_configs": [{"files": [str(self.file_sd)], "refresh_interval": "1s"}],
                }
            )
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": scrape_configs,
        }

    def _launch(self, binary: str) -> None:
        attempts = 1 if self._requested_port else 3  # a free_port() race is possible; retry on EADDRINUSE
        for attempt in range(attempts):
            self._port = self._requested_port or free_port()
            cmd = [
                *die_with_parent_prefix(),
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.data_dir}",
                f"--storage.tsdb.retention.time={RETENTION}",
                f"--web.listen-address={LOOPBACK}:{self._port}",
                "--log.level=info",
                *self.extra_args,
            ]
            if self._log is not None:
                self._log.close()
            self._log = self.log_path.open("wb")
            started = time.monotonic()
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, cwd=self._root
            )
            failure = self._wait_ready(started)
            if failure is None:
                self.startup_seconds = time.monotonic() - started
                return
            terminate(self._proc, grace=5.0)
            log = tail(self.log_path)
            if "address already in use" in log and attempt + 1 < attempts:
                continue
            raise RuntimeError(f"Prometheus ({binary}) {failure}. Last lines of its log:\n{log}")

    def _wait_ready(self, started: float) -> str | None:
        assert self._proc is not None
        deadline = started + self.startup_timeout
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                return f"exited with code {code} before becoming ready on {self.url}"
            try:
                with _HTTP.open(f"{self.url}/-/ready", timeout=1.0) as resp:
                    if resp.status == 200:
                        return None
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        return f"did not become ready on {self.url} within {self.startup_timeout:.0f}s"

    def _expire(self) -> None:
        print(f"promlab: Prometheus on port {self._port} reached max_lifetime, stopping", file=sys.stderr)
        self.stop()

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 10 s) and delete its files; safe to call twice."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._proc is not None:
                terminate(self._proc)
            atexit.unregister(self.stop)
            self._cleanup()

    def _cleanup(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._root is not None and not self.keep_files:
            shutil.rmtree(self._root, ignore_errors=True)

    # -- properties --------------------------------------------------------------------------------

    def _need_root(self) -> Path:
        if self._root is None:
            raise RuntimeError("PrometheusServer not started")
        return self._root

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("PrometheusServer not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self._need_root() / "data"

    @property
    def config_path(self) -> Path:
        return self._need_root() / "prometheus.yml"

    @property
    def log_path(self) -> Path:
        return self._need_root() / "prometheus.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines) if self._root is not None else ""

    # -- HTTP API ----------------------------------------------------------------------------------

    def api(self, path: str, params: Mapping[str, str] | None = None, timeout: float = 10.0) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; RuntimeError on an API error."""
        body = http_get_json(f"{self.url}/api/v1/{path.lstrip('/')}", params, timeout)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus API {path} {dict(params or {})}: {body}")
        return body["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; vector results as returned, a scalar as one sample with empty metric."""
        params = {"query": promql}
        if at is not None:
            params["time"] = format_float(at)
        data = self.api("query", params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_value(self, promql: str, at: float | None = None) -> float | None:
        """First sample value of an instant query, or None when the result is empty."""
        result = self.query(promql, at)
        return float(result[0]["value"][1]) if result else None

    def query_range(self, promql: str, start: float, end: float, step: str | float) -> list[dict[str, Any]]:
        params = {"query": promql, "start": format_float(start), "end": format_float(end), "step": str(step)}
        result: list[dict[str, Any]] = self.api("query_range", params)["result"]
        return result

    def wait_for_samples(self, query: str, min_value: float, timeout: float = 30.0, interval: float = 0.25) -> float:
        """Poll the instant ``query`` until its first sample is >= ``min_value``; returns that value."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while True:
            if not self.running:
                raise RuntimeError(f"Prometheus is not running. Last lines of its log:\n{self.log_tail()}")
            last = self.query_value(query)
            if last is not None and last >= min_value:
                return last
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{query!r} stayed below {min_value} for {timeout}s (last value: {last})")
            time.sleep(interval)


# --------------------------------------------------------------------------------------------------
# CLI


def _wait_for_signal(seconds: float) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait(seconds)


def _cmd_serve(args: argparse.Namespace) -> int:
    with PrometheusServer(
        args.target,
        scrape_interval=args.scrape_interval,
        backfill=args.backfill,
        port=args.port or None,
        max_lifetime=args.duration + 60,
    ) as prom:
        print(prom.url, flush=True)
        print(
            f"up in {prom.startup_seconds:.2f}s, data in {prom.data_dir}, stopping after {args.duration}s",
            file=sys.stderr,
        )
        _wait_for_signal(args.duration)
    return 0


def _cmd_backfill(args: argparse.Namespace) -> int:
    for block in backfill_blocks(args.openmetrics, args.data_dir):
        print(f"{block.ulid} {block.min_time:.0f}..{block.max_time:.0f} samples={block.num_samples}")
    return 0


def _cmd_free_port(_: argparse.Namespace) -> int:
    print(free_port())
    return 0


def _bounded_duration(text: str) -> float:
    value = float(text)
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError("duration must be in (0, 86400] seconds")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="promlab", description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run Prometheus on loopback scraping the given targets")
    serve.add_argument("--target", action="append", default=[], help="127.0.0.1:PORT to scrape (repeatable)")
    serve.add_argument("--scrape-interval", default="1s")
    serve.add_argument("--backfill", type=Path, help="OpenMetrics file to turn into blocks before start")
    serve.add_argument("--port", type=int, default=0, help="listen port (0 = pick a free one)")
    serve.add_argument("--duration", type=_bounded_duration, default=600.0, help="seconds until it stops")
    serve.set_defaults(func=_cmd_serve)

    backfill = sub.add_parser("backfill", help="promtool create-blocks-from openmetrics, with sanity checks")
    backfill.add_argument("openmetrics", type=Path)
    backfill.add_argument("data_dir", type=Path)
    backfill.set_defaults(func=_cmd_backfill)

    port = sub.add_parser("free-port", help="print a free 127.0.0.1 port")
    port.set_defaults(func=_cmd_free_port)

    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
