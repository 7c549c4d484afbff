"""The operator's own metrics (prometheus_client), served on /metrics.

Label sets stay small: one series per gate for score and looks, per gate and outcome for
decisions; the number of gates per phase is computed at scrape time from the workers' view.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from robustness_gate.api import Phase


class _PhaseCollector(Collector):
    def __init__(self, phases: Callable[[], Iterable[str]]) -> None:
        self.phases = phases

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("robustness_gate_gates", "RobustnessGates by phase.", labels=["phase"])
        counts = {phase.value: 0 for phase in Phase}
        for phase in self.phases():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in sorted(counts.items()):
            family.add_metric([phase], count)
        yield family


class _StepPart:
    """A plain context manager, not a generator: it runs on every step, several times."""

    __slots__ = ("counter", "frame", "stack")

    def __init__(self, counter: Counter, stack: list[list[float]]) -> None:
        self.counter, self.stack = counter, stack
        self.frame = [0.0, 0.0]  # started at, spent in inner parts

    def __enter__(self) -> None:
        self.frame[0] = time.thread_time()
        self.stack.append(self.frame)

    def __exit__(self, *_: object) -> None:
        self.stack.pop()
        elapsed = time.thread_time() - self.frame[0]
        self.counter.inc(max(0.0, elapsed - self.frame[1]))
        if self.stack:
            self.stack[-1][1] += elapsed


class Telemetry:
    """Metric objects on their own registry (tests and several operators in one process stay apart).

    It implements telemetry_sink.TelemetrySink; parts given no telemetry record to its NULL_TELEMETRY."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call] # no *_created series: they double the series count for nothing here
        self.registry = registry or CollectorRegistry()
        # process_cpu_seconds_total, process_resident_memory_bytes, ...: the whole process, kopf included.
        ProcessCollector(registry=self.registry)
        self.decisions = Counter(
            "robustness_gate_decisions",
            "Decisions taken, by gate, action (Promote, Rollback, Inconclusive) and operation sent.",
            ["namespace", "gate", "action", "operation"],
            registry=self.registry,
        )
        self.step_seconds = Histogram(
            "robustness_gate_analysis_step_seconds",
            "Duration of one analysis step (target, Prometheus queries, judgement, status).",
            # Fine around 1 s, so a p99 target there can be read off exactly.
            buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.step_lateness = Histogram(
            "robustness_gate_step_lateness_seconds",
            "Time from when a gate's step fell due to when a worker thread started it (waiting for a free thread).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.prometheus_errors = Counter(
            "robustness_gate_prometheus_errors",
            "Failed metric queries, by gate and kind (unreachable, timeout, http, promql, malformed, data, auth).",
            ["namespace", "gate", "kind"],
            registry=self.registry,
        )
        self.score = Gauge(
            "robustness_gate_score",
            "Last score (0-100) of the gate's analysis.",
            ["namespace", "gate"],
            registry=self.registry,
        )
        self.looks = Gauge(
            "robustness_gate_looks",
            "Looks taken in the gate's current analysis.",
            ["namespace", "gate"],
            registry=self.registry,
        )
        # Cost of the operator on its dependencies: divided by the step count, these give requests per step.
        self.api_requests = Counter(
            "robustness_gate_api_requests",
            "Kubernetes API requests sent by the operator (not kopf's watches), by verb and kind.",
            ["verb", "kind"],
            registry=self.registry,
        )
        self.watched_reads = Counter(
            "robustness_gate_watched_reads",
            "Target reads answered from the watch streams (hit) or sent to the API after all (miss), by kind.",
            ["kind", "result"],
            registry=self.registry,
        )
        self.prometheus_queries = Counter(
            "robustness_gate_prometheus_queries",
            "Range queries sent to Prometheus, failed ones included.",
            registry=self.registry,
        )
        self.step_cpu = Counter(
            "robustness_gate_step_cpu_seconds",
            "CPU time of analysis steps (their threads' CPU time), by part: read (the gate and its target), "
            "prometheus (queries and their answers), judge, status (status writes and Events), other.",
            ["part"],
            registry=self.registry,
        )
        self._step_cpu_parts: dict[str, Counter] = {}
        self._open_parts = threading.local()

    def api_request(self, verb: str, kind: str) -> None:
        self.api_requests.labels(verb, kind).inc()

    def watched_read(self, kind: str, hit: bool) -> None:
        self.watched_reads.labels(kind, "hit" if hit else "miss").inc()

    def prometheus_query(self) -> None:
        self.prometheus_queries.inc()

    def step_part(self, part: str) -> _StepPart:
        """Count this thread's CPU time in the block to `part` of robustness_gate_step_cpu_seconds. Parts may
        nest: an inner part's time counts to it alone, not to the part around it."""
        counter = self._step_cpu_parts.get(part)
        if counter is None:
            counter = self._step_cpu_parts.setdefault(part, self.step_cpu.labels(part))
        stack: list[list[float]] = self._open_parts.__dict__.setdefault("stack", [])
        return _StepPart(counter, stack)

    def watch_phases(self, phases: Callable[[], Iterable[str]]) -> None:
        self.registry.register(_PhaseCollector(phases))

    def forget(self, namespace: str, gate: str) -> None:
        """Drop a deleted gate's per-gate series."""
        for gauge in (self.score, self.looks):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, gate)
