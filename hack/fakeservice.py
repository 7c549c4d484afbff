"""A simulated fleet of inference-service variants exposing Prometheus metrics on 127.0.0.1.

One process serves ``/metrics`` for many ``(app, version)`` variants.  Every tick (0.1 s of real time)
each variant draws, from its own seeded numpy Generator: a Poisson number of requests, binomial
errors, lognormal latencies, logit-normal prediction scores and binomial feature nulls.  Exposed
families (labels ``app`` and the configurable version label, default ``version``):

* ``http_requests_total{code="200"|"500"}``           counter
* ``http_request_duration_seconds``                   histogram
* ``model_prediction_score``                          histogram
* ``model_feature_null_total{feature}``               counter
* ``model_feature_observations_total{feature}``       counter

A variant with ``pods`` > 0 is a set of pods sharing its traffic evenly, each its own series with a
``pod`` label (sum over ``pod`` for the version's totals).  A pod can have error bursts: for a while its
error rate is ``burst_error_rate``.  Random bursts start about once per ``burst_every`` seconds and last
a uniform ``burst_min``..``burst_max`` seconds (seeded); ``forced_bursts`` add bursts at given times, and
``pod_resets`` drop a pod's counters to 0 at given times, as a restarted process does.  Times are seconds
of simulated time since the service started (since ``start`` for a backfill).

``write_backfill`` produces the same families over a past time range from the same model, as an
OpenMetrics file for ``promlab.backfill_blocks``.  Ticks follow a fixed schedule (missed ticks are
caught up), so each variant's draw sequence depends only on its seed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Self

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import MetricsHandler
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from hack import openmetrics, promlab
from hack.procs import LOOPBACK, Started, module_command, module_env, tail, terminate

TICK_SECONDS = 0.1
DEFAULT_DURATION = 600.0
MAX_DURATION = 86400.0
DEFAULT_VERSION_LABEL = "version"
DEFAULT_FEATURE = "device_fingerprint"
DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DEFAULT_SCORE_BUCKETS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 11))

# Separate random streams so backfilled history is not a replay of the live run with the same seed.
_LIVE_STREAM = 0
_BACKFILL_STREAM = 1
# Tags the random stream of a pod's burst schedule, apart from its requests' draws.
_BURST_STREAM = 2
POD_LABEL = "pod"
MAX_PODS = 1000
_RESERVED_LABELS = {"app", "code", "feature", "le", "job", "instance", POD_LABEL}
# Slack when comparing accumulated simulated time with a scheduled time (sums of 0.1 s ticks drift).
_TIME_EPS = 1e-9

Window = tuple[float, float]


def _time_ok(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value >= 0


@dataclass(frozen=True)
class Variant:
    """One deployed version of an app and the statistical model of its traffic."""

    app: str
    version: str
    rps: float = 100.0  # simulated requests per real second
    error_rate: float = 0.01
    latency_median: float = 0.05  # seconds
    latency_sigma: float = 0.5  # of log(latency)
    score_mu: float = 0.0  # logit-scale mean of the prediction score
    score_sigma: float = 1.0
    null_rate: float = 0.0
    seed: int = 0
    feature: str = DEFAULT_FEATURE
    pods: int = 0  # 0: one series without a pod label; n: n pods, each its own series
    burst_error_rate: float = 0.15  # a bursting pod's error rate
    burst_every: float = 0.0  # mean seconds between a pod's random bursts; 0: none
    burst_min: float = 30.0  # seconds
    burst_max: float = 120.0
    forced_bursts: tuple[tuple[int, float, float], ...] = ()  # (pod index, start, seconds)
    pod_resets: tuple[tuple[int, float], ...] = ()  # (pod index, time its counters drop to 0)

    def __post_init__(self) -> None:
        # Tuples, also when given lists: a frozen variant stays hashable and compares by value.
        object.__setattr__(self, "forced_bursts", tuple(tuple(b) for b in self.forced_bursts))
        object.__setattr__(self, "pod_resets", tuple(tuple(r) for r in self.pod_resets))
        checks = {
            "app": bool(self.app),
            "version": bool(self.version),
            "rps": math.isfinite(self.rps) and self.rps >= 0,
            "error_rate": 0.0 <= self.error_rate <= 1.0,
            "latency_median": math.isfinite(self.latency_median) and self.latency_median > 0,
            "latency_sigma": math.isfinite(self.latency_sigma) and self.latency_sigma >= 0,
            "score_mu": math.isfinite(self.score_mu),
            "score_sigma": math.isfinite(self.score_sigma) and self.score_sigma >= 0,
            "null_rate": 0.0 <= self.null_rate <= 1.0,
            "seed": self.seed >= 0,
            "feature": bool(self.feature),
            "pods": 0 <= self.pods <= MAX_PODS,
            "burst_error_rate": 0.0 <= self.burst_error_rate <= 1.0,
            "burst_every": math.isfinite(self.burst_every) and self.burst_every >= 0,
            "burst_min": math.isfinite(self.burst_min) and self.burst_min > 0,
            "burst_max": math.isfinite(self.burst_max) and self.burst_max >= self.burst_min,
            "forced_bursts": all(
                len(b) == 3 and self._pod_index_ok(b[0]) and _time_ok(b[1]) and _time_ok(b[2]) and b[2] > 0
                for b in self.forced_bursts
            ),
            "pod_resets": all(len(r) == 2 and self._pod_index_ok(r[0]) and _time_ok(r[1]) for r in self.pod_resets),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"variant {self.app}/{self.version}: invalid {', '.join(bad)}")

    def _pod_index_ok(self, index: object) -> bool:
        # A variant without pods is one series: index 0.
        return isinstance(index, int) and 0 <= index < max(self.pods, 1)

    @property
    def series_count(self) -> int:
        """How many series (pods) each family has for this variant."""
        return max(self.pods, 1)

    def pod_name(self, index: int) -> str | None:
        """The ``pod`` label of pod ``index``; None for a variant without pods."""
        if not self._pod_index_ok(index):
            raise IndexError(f"variant {self.app}/{self.version} has no pod {index}")
        return f"{self.app}-{self.version}-{index}" if self.pods else None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Variant:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown variant fields {sorted(unknown)} (known: {sorted(known)})")
        kwargs: dict[str, Any] = dict(data)
        for name in (
            "rps",
            "error_rate",
            "latency_median",
            "latency_sigma",
            "score_mu",
            "score_sigma",
            "null_rate",
            "burst_error_rate",
            "burst_every",
            "burst_min",
            "burst_max",
        ):
            if name in kwargs:
                kwargs[name] = float(kwargs[name])
        for name in ("app", "version", "feature"):
            if name in kwargs:
                kwargs[name] = str(kwargs[name])
        for name in ("seed", "pods"):
            if name in kwargs:
                kwargs[name] = int(kwargs[name])
        if "forced_bursts" in kwargs:
            kwargs["forced_bursts"] = tuple((int(p), float(t), float(d)) for p, t, d in kwargs["forced_bursts"])
        if "pod_resets" in kwargs:
            kwargs["pod_resets"] = tuple((int(p), float(t)) for p, t in kwargs["pod_resets"])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


DEMO_VARIANTS: tuple[Variant, ...] = (
    Variant(app="demo", version="stable", rps=200, error_rate=0.01, latency_median=0.05, seed=1),
    Variant(
        app="demo",
        version="canary",
        rps=200,
        error_rate=0.03,
        latency_median=0.08,
        score_mu=0.4,
        null_rate=0.05,
        seed=2,
    ),
)


def load_variants(spec: str | Path | Sequence[Variant | Mapping[str, Any]]) -> list[Variant]:
    """Variants from a JSON string, a JSON file path, or a sequence of Variant / mappings."""
    items: Iterable[Any]
    if isinstance(spec, str | Path):
        text = str(spec).strip()
        items = json.loads(text if text.startswith("[") else Path(text).read_text())
    else:
        items = spec
    variants = [v if isinstance(v, Variant) else Variant.from_mapping(v) for v in items]
    if not variants:
        raise ValueError("no variants given")
    keys = [(v.app, v.version) for v in variants]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate (app, version) among {keys}")
    return variants


def _check_buckets(buckets: Sequence[float], what: str) -> tuple[float, ...]:
    out = tuple(float(b) for b in buckets)
    if not out or any(not math.isfinite(b) for b in out) or any(a >= b for a, b in itertools.pairwise(out)):
        raise ValueError(f"{what} buckets must be finite and strictly increasing, got {buckets!r}")
    return out


def _check_version_label(name: str) -> str:
    if not openmetrics.LABEL_NAME_RE.match(name) or name.startswith("__") or name in _RESERVED_LABELS:
        raise ValueError(f"invalid version label {name!r}")
    return name


# --------------------------------------------------------------------------------------------------
# Simulation model (shared by the live service and the backfill generator)


def _union(windows: Iterable[Window]) -> list[Window]:
    """Overlapping or touching windows merged, sorted by start."""
    merged: list[Window] = []
    for begin, end in sorted(windows):
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    return merged


class BurstClock:
    """When one pod bursts: its forced windows and, with ``burst_every`` > 0, seeded random ones.

    The schedule has its own random stream, so it does not depend on the pod's request draws.
    ``share`` must be asked about non-decreasing times; it forgets windows that have ended.
    """

    def __init__(self, variant: Variant, pod: int, stream: int = _LIVE_STREAM) -> None:
        self.variant = variant
        self._forced = sorted((float(t), float(t + d)) for p, t, d in variant.forced_bursts if p == pod)
        self._rng = (
            np.random.default_rng([variant.seed, stream, _BURST_STREAM, pod]) if variant.burst_every > 0 else None
        )
        self._random: deque[Window] = deque()
        self._last_random: Window | None = None

    def _draw_until(self, until: float) -> None:
        # Poisson starts: a burst begins on average burst_every seconds after the previous one ended.
        if self._rng is None:
            return
        v = self.variant
        while self._last_random is None or self._last_random[0] < until:
            begin = (self._last_random[1] if self._last_random else 0.0) + float(self._rng.exponential(v.burst_every))
            self._last_random = (begin, begin + float(self._rng.uniform(v.burst_min, v.burst_max)))
            self._random.append(self._last_random)

    def windows(self, until: float) -> list[Window]:
        """All burst windows (merged) that start before ``until``."""
        self._draw_until(until)
        return [w for w in _union([*self._forced, *self._random]) if w[0] < until]

    def share(self, t0: float, t1: float) -> float:
        """The fraction of [t0, t1) during which the pod bursts."""
        if t1 <= t0:
            return 0.0
        self._draw_until(t1)
        while self._random and self._random[0][1] <= t0:
            self._random.popleft()
        self._forced = [w for w in self._forced if w[1] > t0]
        inside = [(max(b, t0), min(e, t1)) for b, e in (*self._forced, *self._random) if b < t1 and e > t0]
        return sum(e - b for b, e in _union(inside)) / (t1 - t0)


def burst_windows(variant: Variant, pod: int, until: float, *, backfill: bool = False) -> list[Window]:
    """The bursts pod ``pod`` of ``variant`` has (merged, in seconds since the start) that start before ``until``.

    The same schedule the live service (or, with ``backfill``, ``write_backfill``) follows.
    """
    variant.pod_name(pod)  # raises for a pod the variant does not have
    return BurstClock(variant, pod, _BACKFILL_STREAM if backfill else _LIVE_STREAM).windows(until)


class PodSim:
    """Cumulative counters of one pod (or of a variant without pods), advanced by random draws."""

    def __init__(
        self,
        name: str | None,
        rng: np.random.Generator,
        latency_bounds: np.ndarray[Any, Any],
        score_bounds: np.ndarray[Any, Any],
        bursts: BurstClock,
        resets: Iterable[float] = (),
    ) -> None:
        self.name = name
        self.rng = rng
        self.latency_bounds = latency_bounds
        self.score_bounds = score_bounds
        self.bursts = bursts
        self._resets = deque(sorted(resets))
        self.restarts = 0
        self.reset()

    def reset(self) -> None:
        """All counters to 0, as when the pod's process restarts."""
        self.ok = 0
        self.errors = 0
        # Per-bucket (non-cumulative) counts; the last slot is the +Inf overflow.
        self.latency_counts = np.zeros(len(self.latency_bounds) + 1, dtype=np.int64)
        self.latency_sum = 0.0
        self.score_counts = np.zeros(len(self.score_bounds) + 1, dtype=np.int64)
        self.score_sum = 0.0
        self.nulls = 0
        self.observations = 0

    def step(self, v: Variant, rps: float, t0: float, t1: float) -> None:
        """The draws of simulated time [t0, t1) at ``rps`` requests per second."""
        # A reset within this step shows in the counters at its end: they hold only this step's draws.
        while self._resets and self._resets[0] <= t1 + _TIME_EPS:
            self._resets.popleft()
            self.reset()
            self.restarts += 1
        # Expected errors follow the part of the step spent in a burst (exactly error_rate outside bursts).
        error_rate = v.error_rate + (v.burst_error_rate - v.error_rate) * self.bursts.share(t0, t1)
        n = int(self.rng.poisson(rps * (t1 - t0)))
        errors = int(self.rng.binomial(n, error_rate))
        latencies = self.rng.lognormal(mean=math.log(v.latency_median), sigma=v.latency_sigma, size=n)
        scores = 1.0 / (1.0 + np.exp(-self.rng.normal(v.score_mu, v.score_sigma, size=n)))
        nulls = int(self.rng.binomial(n, v.null_rate))
        self.ok += n - errors
        self.errors += errors
        # side="left": a value equal to a bound belongs to that bucket, matching Prometheus' "le".
        self.latency_counts += np.bincount(
            np.searchsorted(self.latency_bounds, latencies, side="left"), minlength=len(self.latency_counts)
        )
        self.latency_sum += float(latencies.sum())
        self.score_counts += np.bincount(
            np.searchsorted(self.score_bounds, scores, side="left"), minlength=len(self.score_counts)
        )
        self.score_sum += float(scores.sum())
        self.nulls += nulls
        self.observations += n

    @property
    def requests(self) -> int:
        return self.ok + self.errors

    def latency_buckets(self) -> list[tuple[str, float]]:
        return _cumulative(self.latency_bounds, self.latency_counts)

    def score_buckets(self) -> list[tuple[str, float]]:
        return _cumulative(self.score_bounds, self.score_counts)


class VariantSim:
    """Cumulative counters of one variant (summed over its pods), advanced by random draws.

    A variant without pods draws from ``rng`` itself; a variant with pods gives each pod a stream
    spawned from it, so adding pods to one variant changes no other variant's draws.
    """

    def __init__(
        self,
        variant: Variant,
        rng: np.random.Generator,
        latency_buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
        score_buckets: Sequence[float] = DEFAULT_SCORE_BUCKETS,
        *,
        stream: int = _LIVE_STREAM,
    ) -> None:
        self.variant = variant
        self.rng = rng
        self.latency_bounds = np.asarray(latency_buckets, dtype=float)
        self.score_bounds = np.asarray(score_buckets, dtype=float)
        self.elapsed = 0.0  # simulated seconds since the start
        rngs = rng.spawn(variant.pods) if variant.pods else [rng]
        self.pods = [
            PodSim(
                variant.pod_name(i),
                pod_rng,
                self.latency_bounds,
                self.score_bounds,
                BurstClock(variant, i, stream),
                (t for p, t in variant.pod_resets if p == i),
            )
            for i, pod_rng in enumerate(rngs)
        ]

    def step(self, seconds: float) -> None:
        v = self.variant
        start, self.elapsed = self.elapsed, self.elapsed + seconds
        for pod in self.pods:
            pod.step(v, v.rps / len(self.pods), start, self.elapsed)

    @property
    def ok(self) -> int:
        return sum(p.ok for p in self.pods)

    @property
    def errors(self) -> int:
        return sum(p.errors for p in self.pods)

    @property
    def requests(self) -> int:
        return self.ok + self.errors

    @property
    def latency_counts(self) -> np.ndarray[Any, Any]:
        total: np.ndarray[Any, Any] = np.sum([p.latency_counts for p in self.pods], axis=0)
        return total

    @property
    def latency_sum(self) -> float:
        return sum(p.latency_sum for p in self.pods)

    @property
    def score_counts(self) -> np.ndarray[Any, Any]:
        total: np.ndarray[Any, Any] = np.sum([p.score_counts for p in self.pods], axis=0)
        return total

    @property
    def score_sum(self) -> float:
        return sum(p.score_sum for p in self.pods)

    @property
    def nulls(self) -> int:
        return sum(p.nulls for p in self.pods)

    @property
    def observations(self) -> int:
        return sum(p.observations for p in self.pods)

    def latency_buckets(self) -> list[tuple[str, float]]:
        return _cumulative(self.latency_bounds, self.latency_counts)

    def score_buckets(self) -> list[tuple[str, float]]:
        return _cumulative(self.score_bounds, self.score_counts)


def _le(bound: float) -> str:
    text: str = floatToGoString(bound)  # type: ignore[no-untyped-call]
    return text


def _cumulative(bounds: np.ndarray[Any, Any], counts: np.ndarray[Any, Any]) -> list[tuple[str, float]]:
    # floatToGoString gives the same "le" strings prometheus_client uses ("1.0", "+Inf").
    les = [_le(b) for b in bounds] + ["+Inf"]
    return list(zip(les, (float(c) for c in np.cumsum(counts)), strict=True))


def _rng(variant: Variant, stream: int) -> np.random.Generator:
    return np.random.default_rng([variant.seed, stream])


# --------------------------------------------------------------------------------------------------
# Live service


class FleetCollector:
    """prometheus_client collector exposing the counters of all simulated variants."""

    def __init__(self, sims: Sequence[VariantSim], version_label: str, lock: threading.Lock) -> None:
        self.sims = list(sims)
        self.version_label = version_label
        self.lock = lock

    def _families(
        self,
    ) -> tuple[
        CounterMetricFamily,
        HistogramMetricFamily,
        HistogramMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
    ]:
        base = ["app", self.version_label]
        return (
            CounterMetricFamily("http_requests", "Requests served, by status code.", labels=[*base, "code"]),
            HistogramMetricFamily("http_request_duration_seconds", "Request latency in seconds.", labels=base),
            HistogramMetricFamily("model_prediction_score", "Model prediction score in [0, 1].", labels=base),
            CounterMetricFamily(
                "model_feature_null", "Requests where the feature was null.", labels=[*base, "feature"]
            ),
            CounterMetricFamily(
                "model_feature_observations",
                "Requests where the feature was read.",
                labels=[*base, "feature"],
            ),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        requests, latency, score, nulls, observations = self._families()
        families = [requests, latency, score, nulls, observations]
        with self.lock:
            for sim in self.sims:
                v = sim.variant
                for pod in sim.pods:
                    added = [len(f.samples) for f in families]
                    requests.add_metric([v.app, v.version, "200"], float(pod.ok))
                    requests.add_metric([v.app, v.version, "500"], float(pod.errors))
                    latency.add_metric([v.app, v.version], pod.latency_buckets(), pod.latency_sum)
                    score.add_metric([v.app, v.version], pod.score_buckets(), pod.score_sum)
                    nulls.add_metric([v.app, v.version, v.feature], float(pod.nulls))
                    observations.add_metric([v.app, v.version, v.feature], float(pod.observations))
                    if pod.name is not None:
                        for family, first in zip(families, added, strict=True):
                            _label_samples(family, first, pod.name)
        return families


def _label_samples(family: Metric, first: int, pod: str) -> None:
    # The families' label names are shared by all variants; only pods' series carry a pod label, and
    # variants without pods keep exactly the series they always had.
    family.samples[first:] = [s._replace(labels={**s.labels, POD_LABEL: pod}) for s in family.samples[first:]]


class _Ticker(threading.Thread):
    """Advances all variants every TICK_SECONDS of wall time until ``stop`` is set."""

    def __init__(self, sims: Sequence[VariantSim], lock: threading.Lock, stop: threading.Event) -> None:
        super().__init__(name="fakeservice-ticker", daemon=True)
        self.sims = sims
        self.lock = lock
        self.stop = stop

    def run(self) -> None:
        next_tick = time.monotonic() + TICK_SECONDS
        while not self.stop.wait(max(0.0, next_tick - time.monotonic())):
            # Catch up on missed ticks so the simulated rate tracks real time exactly on average.
            for _ in range(100):
                if next_tick > time.monotonic():
                    break
                with self.lock:
                    for sim in self.sims:
                        sim.step(TICK_SECONDS)
                next_tick += TICK_SECONDS


def serve(
    variants: Sequence[Variant],
    *,
    port: int = 0,
    duration: float = DEFAULT_DURATION,
    version_label: str = DEFAULT_VERSION_LABEL,
    latency_buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
    score_buckets: Sequence[float] = DEFAULT_SCORE_BUCKETS,
    ready_file: Path | None = None,
) -> int:
    """Serve the fleet's /metrics on 127.0.0.1:port for ``duration`` seconds (or until SIGTERM/SIGINT)."""
    if not 0 < duration <= MAX_DURATION:
        raise ValueError(f"duration must be in (0, {MAX_DURATION:.0f}] seconds")
    version_label = _check_version_label(version_label)
    lat = _check_buckets(latency_buckets, "latency")
    sc = _check_buckets(score_buckets, "score")
    lock = threading.Lock()
    stop = threading.Event()
    sims = [VariantSim(v, _rng(v, _LIVE_STREAM), lat, sc) for v in variants]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(sims, version_label, lock))

    server = ThreadingHTTPServer((LOOPBACK, port), MetricsHandler.factory(registry))
    server.daemon_threads = True
    http_thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    ticker = _Ticker(sims, lock, stop)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    http_thread.start()
    ticker.start()
    actual_port = int(server.server_address[1])
    print(actual_port, flush=True)
    if ready_file is not None:
        tmp = ready_file.with_name(ready_file.name + ".tmp")
        tmp.write_text(f"{actual_port}\n")
        tmp.replace(ready_file)  # atomic: readers never see a partial port
    print(
        f"fakeservice: {len(sims)} variants on http://{LOOPBACK}:{actual_port}/metrics for {duration:.0f}s",
        file=sys.stderr,
        flush=True,
    )
    try:
        stop.wait(duration)
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        ticker.join(timeout=5)
        http_thread.join(timeout=5)
    return 0


class FakeService(Started):
    """Runs ``serve`` in a separate Python process (like a real service); use as a context manager."""

    def __init__(
        self,
        variants: Sequence[Variant | Mapping[str, Any]],
        *,
        duration: float = DEFAULT_DURATION,
        port: int = 0,
        version_label: str = DEFAULT_VERSION_LABEL,
        latency_buckets: Sequence[float] | None = None,
        score_buckets: Sequence[float] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        if not 0 < duration <= MAX_DURATION:
            raise ValueError(f"duration must be in (0, {MAX_DURATION:.0f}] seconds")
        self.variants = load_variants(variants)
        self.duration = duration
        self.version_label = _check_version_label(version_label)
        self.latency_buckets = _check_buckets(latency_buckets or DEFAULT_LATENCY_BUCKETS, "latency")
        self.score_buckets = _check_buckets(score_buckets or DEFAULT_SCORE_BUCKETS, "score")
        self.startup_timeout = startup_timeout
        self._requested_port = port
        self._port: int | None = None
        self._started_at: float | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError("FakeService already started")
        self._tmp = tempfile.TemporaryDirectory(prefix="fakeservice-")
        root = Path(self._tmp.name)
        variants_file = root / "variants.json"
        variants_file.write_text(json.dumps([v.to_dict() for v in self.variants]))
        ready = root / "port"
        cmd = [
            *module_command("hack.fakeservice"),
            "--variants",
            str(variants_file),
            "--port",
            str(self._requested_port),
            "--duration",
            repr(self.duration),
            "--ready-file",
            str(ready),
            "--version-label",
            self.version_label,
            "--latency-buckets",
            ",".join(map(repr, self.latency_buckets)),
            "--score-buckets",
            ",".join(map(repr, self.score_buckets)),
        ]
        self._log = (root / "fakeservice.log").open("wb")
        env = module_env({"PYTHONUNBUFFERED": "1"})
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + self.startup_timeout
        while not ready.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log = self.log_tail()
                self.stop()
                raise RuntimeError(f"fake service did not start within {self.startup_timeout}s:\n{log}")
            time.sleep(0.02)
        # The ready file is written right after the ticks start: simulated time 0, to within the poll.
        self._started_at = time.time()
        self._port = int(ready.read_text().strip())
        return self

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove its files; safe to call twice."""
        if self._proc is not None:
            terminate(self._proc, grace=5.0)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def log_tail(self, lines: int = 40) -> str:
        return tail(Path(self._tmp.name) / "fakeservice.log", lines) if self._tmp else ""

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeService not started")
        return self._port

    @property
    def started_at(self) -> float:
        """Unix time of the simulation's time 0, which ``forced_bursts``, ``pod_resets`` and ``burst_windows``
        count from (to within 20 ms)."""
        if self._started_at is None:
            raise RuntimeError("FakeService not started")
        return self._started_at

    @property
    def target(self) -> str:
        """``127.0.0.1:PORT``, ready for a scrape config."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/metrics"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None


# --------------------------------------------------------------------------------------------------
# Backfill


@dataclass(frozen=True)
class VariantTotals:
    """Counter values of one variant at the end of a backfilled range."""

    ok: int
    errors: int
    latency_count: int
    latency_sum: float
    score_count: int
    score_sum: float
    nulls: int
    observations: int

    @property
    def requests(self) -> int:
        return self.ok + self.errors


@dataclass(frozen=True)
class Backfill:
    """What ``write_backfill`` wrote: the file, its time grid and the final counter values."""

    path: Path
    start: float
    end: float
    step: float
    families: list[openmetrics.MetricFamily]
    totals: dict[tuple[str, str], VariantTotals]  # keyed by (app, version)


def _time_grid(start: float, end: float, step: float) -> Iterator[float]:
    count = math.floor((end - start) / step + 1e-9)
    for i in range(count + 1):
        yield start + i * step


def _counter_row(pod: PodSim) -> list[float]:
    """Every counter value of one pod, in the column order backfill_families reads."""
    return [
        float(pod.ok),
        float(pod.errors),
        *(c for _, c in pod.latency_buckets()),
        pod.latency_sum,
        *(c for _, c in pod.score_buckets()),
        pod.score_sum,
        float(pod.nulls),
        float(pod.observations),
    ]


def backfill_families(
    variants: Sequence[Variant | Mapping[str, Any]],
    *,
    start: float,
    end: float,
    step: float = 15.0,
    version_label: str = DEFAULT_VERSION_LABEL,
    latency_buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
    score_buckets: Sequence[float] = DEFAULT_SCORE_BUCKETS,
    extra_labels: Mapping[str, str] | None = None,
) -> tuple[list[openmetrics.MetricFamily], dict[tuple[str, str], VariantTotals]]:
    """History of the live model sampled every ``step`` s over [start, end]; counters are 0 at ``start``.

    Deterministic for given seeds.  ``extra_labels`` (e.g. ``{"job": "fakeservice"}``) are added to every
    series, since scraped series carry ``job``/``instance`` and backfilled ones otherwise do not.
    """
    if not (step > 0 and end > start):
        raise ValueError("need step > 0 and end > start")
    vs = load_variants(variants)
    version_label = _check_version_label(version_label)
    lat = _check_buckets(latency_buckets, "latency")
    sc = _check_buckets(score_buckets, "score")
    extra = dict(extra_labels or {})
    times = list(_time_grid(start, end, step))

    req: list[openmetrics.Series] = []
    lat_series: list[openmetrics.Series] = []
    score_series: list[openmetrics.Series] = []
    null_series: list[openmetrics.Series] = []
    obs_series: list[openmetrics.Series] = []
    totals: dict[tuple[str, str], VariantTotals] = {}
    for v in vs:
        sim = VariantSim(v, _rng(v, _BACKFILL_STREAM), lat, sc, stream=_BACKFILL_STREAM)
        # rows[pod][t] = every counter value of that pod at time t, in a fixed column order
        rows: list[list[list[float]]] = [[] for _ in sim.pods]
        for i, _ in enumerate(times):
            if i:
                sim.step(step)
            for pod, pod_rows in zip(sim.pods, rows, strict=True):
                pod_rows.append(_counter_row(pod))
        for pod, pod_rows in zip(sim.pods, rows, strict=True):
            base = {**extra, "app": v.app, version_label: v.version}
            if pod.name is not None:
                base[POD_LABEL] = pod.name
            cols = np.asarray(pod_rows, dtype=float).T

            def points(col: int, _cols: np.ndarray[Any, Any] = cols) -> list[tuple[float, float]]:
                return list(zip(times, (float(x) for x in _cols[col]), strict=True))

            req.append(openmetrics.Series("http_requests_total", {**base, "code": "200"}, points(0)))
            req.append(openmetrics.Series("http_requests_total", {**base, "code": "500"}, points(1)))
            col = 2
            for le, _ in sim.latency_buckets():
                lat_series.append(
                    openmetrics.Series("http_request_duration_seconds_bucket", {**base, "le": le}, points(col))
                )
                col += 1
            lat_series.append(openmetrics.Series("http_request_duration_seconds_count", base, points(col - 1)))
            lat_series.append(openmetrics.Series("http_request_duration_seconds_sum", base, points(col)))
            col += 1
            for le, _ in sim.score_buckets():
                score_series.append(
                    openmetrics.Series("model_prediction_score_bucket", {**base, "le": le}, points(col))
                )
                col += 1
            score_series.append(openmetrics.Series("model_prediction_score_count", base, points(col - 1)))
            score_series.append(openmetrics.Series("model_prediction_score_sum", base, points(col)))
            col += 1
            feat = {**base, "feature": v.feature}
            null_series.append(openmetrics.Series("model_feature_null_total", feat, points(col)))
            obs_series.append(openmetrics.Series("model_feature_observations_total", feat, points(col + 1)))
            assert col + 2 == len(pod_rows[0]), "column layout out of sync with rows"
        totals[(v.app, v.version)] = VariantTotals(
            ok=sim.ok,
            errors=sim.errors,
            latency_count=int(sim.latency_counts.sum()),
            latency_sum=sim.latency_sum,
            score_count=int(sim.score_counts.sum()),
            score_sum=sim.score_sum,
            nulls=sim.nulls,
            observations=sim.observations,
        )

    families = [
        openmetrics.MetricFamily("http_requests", "counter", "Requests served, by status code.", req),
        openmetrics.MetricFamily(
            "http_request_duration_seconds", "histogram", "Request latency in seconds.", lat_series
        ),
        openmetrics.MetricFamily(
            "model_prediction_score", "histogram", "Model prediction score in [0, 1].", score_series
        ),
        openmetrics.MetricFamily("model_feature_null", "counter", "Requests where the feature was null.", null_series),
        openmetrics.MetricFamily(
            "model_feature_observations", "counter", "Requests where the feature was read.", obs_series
        ),
    ]
    return families, totals


def write_backfill(
    path: Path | str,
    variants: Sequence[Variant | Mapping[str, Any]],
    *,
    start: float | None = None,
    end: float | None = None,
    step: float = 15.0,
    version_label: str = DEFAULT_VERSION_LABEL,
    latency_buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
    score_buckets: Sequence[float] = DEFAULT_SCORE_BUCKETS,
    extra_labels: Mapping[str, str] | None = None,
) -> Backfill:
    """Write an OpenMetrics backfill file; default range: the 2 hours ending 1 hour ago (whole seconds)."""
    if end is None:
        end = float(int(time.time()) - 3600)
    if start is None:
        start = end - 7200.0
    families, totals = backfill_families(
        variants,
        start=start,
        end=end,
        step=step,
        version_label=version_label,
        latency_buckets=latency_buckets,
        score_buckets=score_buckets,
        extra_labels=extra_labels,
    )
    out = openmetrics.write_openmetrics_backfill(path, families)
    return Backfill(path=out, start=start, end=end, step=step, families=families, totals=totals)


# --------------------------------------------------------------------------------------------------
# CLI


def _with_prometheus(variants: list[Variant], duration: float, history_hours: float) -> int:
    """The fleet in a child process and a Prometheus scraping it, until `duration` or a signal."""
    with contextlib.ExitStack() as stack:
        backfill = None
        if history_hours > 0:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fakeservice-history-")))
            end = float(int(time.time()) - 300)
            backfill = tmp / "history.om"
            write_backfill(
                backfill, variants, start=end - history_hours * 3600, end=end, extra_labels={"job": "history"}
            )
        service = stack.enter_context(FakeService(variants, duration=duration + 30))
        prometheus = stack.enter_context(
            promlab.PrometheusServer([service.target], backfill=backfill, max_lifetime=duration + 60)
        )
        print(f"fake service: {service.url}\nprometheus:   {prometheus.url}", flush=True)
        print('try: sum by (version) (rate(http_requests_total{code="500"}[1m]))', flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait(duration)
    return 0


def _float_list(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fakeservice", description="Simulated inference-service fleet exposing /metrics on 127.0.0.1."
    )
    parser.add_argument(
        "--variants",
        help="JSON list, or path to a JSON file, of variant objects "
        f"(fields: {', '.join(f.name for f in fields(Variant))}); default: a demo canary",
    )
    parser.add_argument("--port", type=int, default=0, help="listen port; 0 = pick a free one (printed)")
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION,
        help=f"seconds after which the process exits by itself (max {MAX_DURATION:.0f})",
    )
    parser.add_argument("--ready-file", type=Path, help="written with the port once serving")
    parser.add_argument(
        "--version-label",
        default=DEFAULT_VERSION_LABEL,
        help="label carrying the version, e.g. rollouts_pod_template_hash",
    )
    parser.add_argument(
        "--latency-buckets",
        type=_float_list,
        default=DEFAULT_LATENCY_BUCKETS,
        help="comma-separated upper bounds in seconds",
    )
    parser.add_argument("--score-buckets", type=_float_list, default=DEFAULT_SCORE_BUCKETS)
    parser.add_argument(
        "--write-backfill",
        type=Path,
        metavar="FILE",
        help="instead of serving, write an OpenMetrics backfill file and exit",
    )
    parser.add_argument("--backfill-hours", type=float, default=2.0)
    parser.add_argument("--backfill-end-ago", type=float, default=3600.0, help="seconds before now")
    parser.add_argument("--backfill-step", type=float, default=15.0)
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="also run a Prometheus on loopback scraping the fleet; print both URLs",
    )
    parser.add_argument(
        "--history-hours", type=float, default=0.0, help="with --prometheus: synthetic history ending 5 min ago"
    )
    args = parser.parse_args(argv)

    variants = load_variants(args.variants) if args.variants else list(DEMO_VARIANTS)
    if args.prometheus:
        return _with_prometheus(variants, args.duration, args.history_hours)
    if args.write_backfill:
        end = float(int(time.time() - args.backfill_end_ago))
        result = write_backfill(
            args.write_backfill,
            variants,
            start=end - args.backfill_hours * 3600,
            end=end,
            step=args.backfill_step,
            version_label=args.version_label,
            latency_buckets=args.latency_buckets,
            score_buckets=args.score_buckets,
        )
        print(f"wrote {result.path} covering {result.start:.0f}..{result.end:.0f}")
        return 0
    return serve(
        variants,
        port=args.port,
        duration=args.duration,
        version_label=args.version_label,
        latency_buckets=args.latency_buckets,
        score_buckets=args.score_buckets,
        ready_file=args.ready_file,
    )


if __name__ == "__main__":
    sys.exit(main())
