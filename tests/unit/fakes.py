"""Test doubles of the unit tier, in one place: a fake Kubernetes API (for target reads and for the
controller), metric sources and a hand-moved clock for the controller; a fixed stream of looks for the
replay. Pure: nothing here opens a socket."""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import InitVar, dataclass, field
from typing import Any

import numpy as np

from robustness_gate.api import MetricSpec, RobustnessGate, parse_gate
from robustness_gate.controller import Controller
from robustness_gate.errors import KubeError
from robustness_gate.metrics.prometheus import PrometheusSource
from robustness_gate.metrics.queries import PART_LABEL, Query
from robustness_gate.metrics.source import MetricsError, RawSeries, Window
from robustness_gate.metrics.templates import Sides
from robustness_gate.series import CountSeries, MetricData
from robustness_gate.targets.deployment import Workload
from robustness_gate.targets.model import MERGE_PATCH, Patch
from robustness_gate.telemetry_sink import TelemetrySink

# ---------------------------------------------------------------- the controller's world

T0 = 1_700_000_000.0  # a whole second, so startedAt (second precision) is exactly T0
NAMESPACE = "shop"
CANARY = "6d5f7c9b8"
STABLE = "5c4b8d7f9"
NEW_CANARY = "7e8a9b0c1"
STEPS: list[dict[str, Any]] = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {"duration": "2m"}}]
PAUSED_AT = "2023-11-14T22:13:00Z"  # when make_rollout's Rollout reached its pause step


# ---------------------------------------------------------------- fakes


def json_merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies it."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge(result.get(key), value)
    return result


class OperatorCrashError(Exception):
    """The operator dies between recording a decision and sending its patch."""


@dataclass
class FakeClock:
    now: float = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeKube:
    """The Kubernetes API over dicts: what target reads need (targets.live.TargetReader) and what the
    controller needs besides (actuation.GateKube). It holds Rollouts, Deployments (also given as `workloads`)
    and their ReplicaSets in NAMESPACE, and the one gate whose status and Events it takes (none for target
    reads alone). Reads answer copies, as the API does, and find nothing in another namespace; `reads` keeps
    every read, `calls` the status patches, target patches and Events in the order made."""

    gate: dict[str, Any] = field(default_factory=dict)
    rollouts: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    sets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    workloads: InitVar[Iterable[Workload]] = ()
    calls: list[tuple[str, Any]] = field(default_factory=list)
    # (kind, namespace, name) of each read; ReplicaSets are listed by their Deployment's name.
    reads: list[tuple[str, str, str]] = field(default_factory=list)
    crash_on_apply: bool = False
    # The operator dies on the status write that marks its decision applied (after the patch and Event).
    crash_on_applied_status: bool = False
    # API answers to inject: each write pops the next status code of its list and fails with it.
    apply_failures: list[int] = field(default_factory=list)
    status_failures: list[int] = field(default_factory=list)
    # A watch cache lagging behind the API: the step reads these Rollouts, operations read `rollouts`.
    watched_rollouts: dict[str, dict[str, Any]] | None = None
    uncached_reads: int = 0
    event_keys: set[str] = field(default_factory=set)

    def __post_init__(self, workloads: Iterable[Workload]) -> None:
        for workload in workloads:
            self.deployments[workload.name] = workload.deployment
            self.sets[workload.name] = workload.replica_sets

    # TargetReader
    def rollout(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(("Rollout", namespace, name))
        rollouts = self.watched_rollouts if self.watched_rollouts is not None else self.rollouts
        return copy.deepcopy(rollouts.get(name)) if namespace == NAMESPACE else None

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(("Deployment", namespace, name))
        return copy.deepcopy(self.deployments.get(name)) if namespace == NAMESPACE else None

    def replica_sets(self, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        meta = deployment["metadata"]
        self.reads.append(("ReplicaSet", meta["namespace"], meta["name"]))
        return copy.deepcopy(self.sets.get(meta["name"], [])) if meta["namespace"] == NAMESPACE else []

    # GateKube
    def uncached(self) -> FakeKube:
        self.uncached_reads += 1
        return dataclasses.replace(self, watched_rollouts=None) if self.watched_rollouts is not None else self

    # writes
    def apply(self, namespace: str, patch: Patch) -> None:
        assert namespace == NAMESPACE
        if self.crash_on_apply:
            self.crash_on_apply = False
            raise OperatorCrashError("killed before the PATCH reached the API server")
        if self.apply_failures:
            raise KubeError(f"patching {patch.target.kind}/{patch.target.name}: conflict", self.apply_failures.pop(0))
        self.calls.append(("apply", patch))
        if patch.target.kind == "Rollout" and patch.content_type == MERGE_PATCH:
            rollout = self.rollouts[patch.target.name]
            body = patch.body
            assert isinstance(body, dict)
            # The status subresource takes only status; the main resource ignores status.
            if patch.subresource == "status":
                rollout["status"] = json_merge(rollout.get("status", {}), body["status"])
            else:
                self.rollouts[patch.target.name] = json_merge(rollout, {k: v for k, v in body.items() if k != "status"})
        if patch.target.kind == "Deployment" and patch.content_type == MERGE_PATCH:
            self.deployments[patch.target.name] = json_merge(self.deployments[patch.target.name], patch.body)

    def patch_gate_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        assert (namespace, name) == (self.gate["metadata"]["namespace"], self.gate["metadata"]["name"])
        if self.crash_on_applied_status and (status.get("decision") or {}).get("applied") is True:
            self.crash_on_applied_status = False
            raise OperatorCrashError("killed after the operation and its Event, before the status saying so")
        if self.status_failures:
            raise KubeError(f"writing status of RobustnessGate {name}: conflict", self.status_failures.pop(0))
        self.calls.append(("status", copy.deepcopy(status)))
        self.gate["status"] = json_merge(self.gate.get("status") or {}, status)

    def event(self, gate: dict[str, Any], type_: str, reason: str, message: str, key: str | None = None) -> None:
        assert gate["metadata"]["uid"] == self.gate["metadata"]["uid"]
        if key is not None:
            if key in self.event_keys:
                return  # the API answers 409 AlreadyExists for an Event of the same name
            self.event_keys.add(key)
        self.calls.append(("event", (type_, reason, message)))

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        raise AssertionError("no gate in these tests reads a Secret")

    # views
    @property
    def status(self) -> dict[str, Any]:
        return dict(self.gate.get("status") or {})

    def applied(self) -> list[Patch]:
        return [value for kind, value in self.calls if kind == "apply"]

    def status_patches(self) -> list[dict[str, Any]]:
        return [value for kind, value in self.calls if kind == "status"]

    def events(self) -> list[tuple[str, str, str]]:
        return [value for kind, value in self.calls if kind == "event"]

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status.get("conditions", []) if c["type"] == type_)


@dataclass
class FakeSource:
    """Error-rate counts per look: `per_look` requests a side (`baseline_per_look` for the baseline, when set),
    a fixed error rate each."""

    canary_rate: float = 0.01
    baseline_rate: float = 0.01
    per_look: float = 2000.0
    baseline_per_look: float | None = None
    error: MetricsError | None = None
    fetched: list[tuple[str, Sides, Window]] = field(default_factory=list)

    def fetch(self, metric: Any, sides: Sides, window: Window) -> CountSeries:
        self.fetched.append((metric.name, sides, window))
        if self.error is not None:
            raise self.error
        total = np.full(window.looks, self.per_look)
        baseline = total if self.baseline_per_look is None else np.full(window.looks, self.baseline_per_look)
        return CountSeries(
            canary_events=np.round(total * self.canary_rate),
            canary_total=total.copy(),
            baseline_events=np.round(baseline * self.baseline_rate),
            baseline_total=baseline.copy(),
        )


HEALTHY: dict[str, Any] = {"canary_rate": 0.01, "baseline_rate": 0.01, "per_look": 6000.0}
BAD: dict[str, Any] = {"canary_rate": 0.10, "baseline_rate": 0.01}
PROMETHEUS_DOWN = MetricsError("http://prometheus.monitoring:9090 unreachable: connection refused", "unreachable")


# ---------------------------------------------------------------- objects


def make_gate(*, generation: int = 1, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "robustness.dev/v1alpha1",
        "kind": "RobustnessGate",
        "metadata": {
            "name": "checkout-gate",
            "namespace": NAMESPACE,
            "uid": "0b6c2a1e-gate",
            "generation": generation,
            "resourceVersion": "4711",
        },
        "spec": {
            "targetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "checkout"},
            "prometheus": {"address": "http://prometheus.monitoring:9090"},
            "analysis": {
                "interval": "10s",
                "minDuration": "30s",
                "maxDuration": "5m",
                "minTraffic": {"canary": 10, "baseline": 10},
            },
            "metrics": [
                {
                    "name": "errors",
                    "errorRate": {"errors": "sum(x{ {{selector}} })", "total": "sum(y{ {{selector}} })"},
                    "compare": {"direction": "Increase"},
                    "critical": True,
                }
            ],
        },
    }
    body["spec"].update(spec)
    return body


def make_rollout(
    *,
    name: str = "checkout",
    current: str | None = CANARY,
    stable: str | None = STABLE,
    steps: list[dict[str, Any]] | None = STEPS,
    step_index: int | None = 1,
    pause_reasons: tuple[str, ...] = ("CanaryPauseStep",),
    controller_pause: bool | None = None,
    spec_paused: bool = False,
    abort: bool = False,
    promote_full: bool = False,
    step_analysis: str | None = None,
) -> dict[str, Any]:
    """A canary Rollout in NAMESPACE as `kubectl get rollout -o json` shows it: by default at its first pause
    step (`pause_reasons=()` for one between pauses), canary CANARY next to stable STABLE."""
    spec: dict[str, Any] = {
        "replicas": 5,
        "revisionHistoryLimit": 2,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": name, "image": f"registry.example/{name}:2.4.0"}]},
        },
        "strategy": {"canary": {} if steps is None else {"steps": copy.deepcopy(steps)}},
    }
    if spec_paused:
        spec["paused"] = True
    status: dict[str, Any] = {
        "observedGeneration": "7",
        "replicas": 6,
        "updatedReplicas": 1,
        "readyReplicas": 6,
        "availableReplicas": 6,
        "selector": f"app={name}",
        "canary": {},
        "conditions": [
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
            {"type": "Available", "status": "True", "reason": "AvailableReason"},
        ],
    }
    if current is not None:
        status["currentPodHash"] = current
    if stable is not None:
        status["stableRS"] = stable
    if step_index is not None:
        status["currentStepIndex"] = step_index
    if pause_reasons:
        status["pauseConditions"] = [{"reason": reason, "startTime": PAUSED_AT} for reason in pause_reasons]
        status["phase"] = "Paused"
        status["message"] = pause_reasons[0]
        status["controllerPause"] = True if controller_pause is None else controller_pause
    elif controller_pause:
        status["controllerPause"] = True
    if abort:
        status["abort"] = True
        status["phase"] = "Degraded"
    if promote_full:
        status["promoteFull"] = True
    if step_analysis is not None:
        status["canary"]["currentStepAnalysisRunStatus"] = {"name": f"{name}-{current}-2", "status": step_analysis}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": "4a1c-rollout", "generation": 7},
        "spec": spec,
        "status": status,
    }


@dataclass
class Harness:
    kube: FakeKube
    source: FakeSource
    clock: FakeClock
    controller: Controller
    delays: list[float] = field(default_factory=list)

    def step(self) -> float:
        """One worker iteration: re-read the stored gate, step it. It reads only in the gate's namespace."""
        reads = len(self.kube.reads)
        delay = self.controller.step(copy.deepcopy(self.kube.gate))
        assert {namespace for _, namespace, _ in self.kube.reads[reads:]} <= {NAMESPACE}
        self.delays.append(delay)
        return delay

    def next(self) -> float:
        """Sleep what the last step asked for, then step."""
        self.clock.advance(self.delays[-1])
        return self.step()

    def advance(self, looks: int) -> None:
        """Take `looks` more looks."""
        for _ in range(looks):
            self.next()

    def restart(self) -> None:
        """A new operator process: nothing but the stored gate survives."""
        self.controller = make_controller(self.kube, self.source, self.clock)


@functools.cache
def bad_looks() -> int:
    """Looks until a BAD canary is rolled back: harm shown at once still needs several looks, since the
    evidence one look adds is capped (stats.robust.LOOK_CAP)."""
    h = harness(rollout=make_rollout(), **BAD)
    h.step()
    for looks in range(1, 30):
        h.next()
        if h.kube.status.get("phase") == "RolledBack":
            return looks
    raise AssertionError("a BAD canary was not rolled back within 30 looks")


def before_the_rollback(h: Harness | None = None) -> Harness:
    """`h` (a BAD canary's by default) stepped up to the look before the one that rolls the canary back: one
    look cannot decide alone."""
    h = harness(rollout=make_rollout(), **BAD) if h is None else h
    h.step()
    h.advance(bad_looks() - 1)
    return h


def make_controller(kube: FakeKube, source: FakeSource, clock: FakeClock) -> Controller:
    def factory(spec: Any, credentials: Any) -> FakeSource:
        assert spec.address == "http://prometheus.monitoring:9090"
        return source

    return Controller(kube, source_factory=factory, clock=clock)


def harness(
    gate: dict[str, Any] | None = None,
    rollout: dict[str, Any] | None = None,
    *,
    kube: FakeKube | None = None,
    **source: Any,
) -> Harness:
    """A controller over a FakeKube of `gate` (make_gate's by default) and `rollout`, or over `kube` as given,
    and a FakeSource of the `source` settings."""
    if kube is None:
        kube = FakeKube(gate if gate is not None else make_gate())
        if rollout is not None:
            kube.rollouts["checkout"] = rollout
    else:
        assert gate is None and rollout is None, "the gate and its target are kube's"
    fake_source, clock = FakeSource(**source), FakeClock()
    return Harness(kube, fake_source, clock, make_controller(kube, fake_source, clock))


def decided(h: Harness) -> dict[str, Any]:
    return dict(h.kube.status.get("decision") or {})


# ---------------------------------------------------------------- the workers' view of the API


def worker_gate(namespace: str, name: str, uid: str = "u1") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "uid": uid, "generation": 1}}


class WorkerKube:
    """What GateWorkers read from the API: the gate (by `body`, default `worker_gate`), failing the first
    `failures` reads with HTTP `status`, and the resourceVersion our last status write made (`written`).
    `reads` keeps the time of every read."""

    def __init__(
        self,
        body: Callable[[str, str], dict[str, Any]] = worker_gate,
        *,
        failures: int = 0,
        status: int = 503,
        written: str | None = None,
    ) -> None:
        self.body, self.failures, self.status, self.written = body, failures, status, written
        self.reads: list[float] = []

    def gate(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(time.monotonic())
        if len(self.reads) <= self.failures:
            raise KubeError("reading RobustnessGate: the server is currently unable to handle the request", self.status)
        return self.body(namespace, name)

    def written_version(self, namespace: str, name: str) -> str | None:
        return self.written

    def forget_written(self, namespace: str, name: str) -> None:
        self.written = None


# ---------------------------------------------------------------- a stream of looks for the replay


REPLAY_SIDES = Sides.parse('version="v2"', 'version="v1"')
REPLAY_START = 1_800_000_000.0
REPLAY_INTERVAL = 30.0
REPLAY_LOOKS = 200  # looks the source can serve; every window reads its first looks of the same stream


def gate_document(
    metrics: list[dict[str, Any]], *, name: str = "g", namespace: str = "ml", target: str = "d", **analysis: Any
) -> dict[str, Any]:
    """A gate on a Deployment with these metrics and `analysis` settings, as a user's YAML decodes; its
    Prometheus address is a closed loopback port that no unit test dials."""
    return {
        "apiVersion": "robustness.dev/v1alpha1",
        "kind": "RobustnessGate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "prometheus": {"address": "http://127.0.0.1:9"},
            "analysis": analysis,
            "metrics": metrics,
        },
    }


ERRORS_METRIC: dict[str, Any] = {
    "name": "errors",
    "critical": True,
    "compare": {"tolerance": 0.2},
    "errorRate": {"errors": "e{ {{selector}} }", "total": "t{ {{selector}} }"},
}


def replay_gate(**analysis: str) -> RobustnessGate:
    settings = {"interval": "30s", "minDuration": "2m", "maxDuration": "30m", **analysis}
    return parse_gate(gate_document([copy.deepcopy(ERRORS_METRIC)], **settings))


class StreamSource:
    """A fixed stream of looks from REPLAY_START: a window sees its first looks, whatever its length."""

    def __init__(self, canary_rate: float, seed: int = 3, traffic: float = 2000.0) -> None:
        rng = np.random.default_rng(seed)
        self.total = np.full(REPLAY_LOOKS, traffic)
        self.canary = rng.binomial(int(traffic), canary_rate, REPLAY_LOOKS).astype(float)
        self.baseline = rng.binomial(int(traffic), 0.01, REPLAY_LOOKS).astype(float)
        self.windows: list[Window] = []

    def fetch(self, metric: MetricSpec, sides: Sides, window: Window) -> MetricData:
        assert window.start == REPLAY_START and window.looks <= REPLAY_LOOKS
        self.windows.append(window)
        k = window.looks
        return CountSeries(self.canary[:k], self.total[:k], self.baseline[:k], self.total[:k].copy())


def look_time(looks: int) -> float:
    return REPLAY_START + looks * REPLAY_INTERVAL


# ---------------------------------------------------------------- Prometheus's HTTP client


def _answer(series: RawSeries) -> list[dict[str, Any]]:
    return [{"metric": labels, "values": [[t, str(v)] for t, v in samples]} for labels, samples in series]


class FakePrometheusClient:
    """The prometheus-api-client a PrometheusSource talks to: answers each part's PromQL with fixed series, and
    their combination as Prometheus would (the union, each series tagged with its part); PromQL it was not
    given gets no series. Remembers what was sent and the ranges asked; `error` is raised instead."""

    def __init__(self, parts: dict[Query, RawSeries] | None = None, error: Exception | None = None) -> None:
        self.parts, self.error = dict(parts or {}), error
        self.sent: list[str] = []
        self.ranges: list[tuple[float, float]] = []

    def custom_query_range(self, promql: str, **kwargs: Any) -> list[dict[str, Any]]:
        self.sent.append(promql)
        self.ranges.append((kwargs["start_time"].timestamp(), kwargs["end_time"].timestamp()))
        if self.error is not None:
            raise self.error
        by_promql = {query.promql: series for query, series in self.parts.items()}
        tagged = re.findall(rf'label_replace\((.+?), "{PART_LABEL}", "([^"]+)", "", ""\)', promql)
        if tagged:
            return [
                {"metric": {**item["metric"], PART_LABEL: tag}, "values": item["values"]}
                for inner, tag in tagged
                for item in _answer(by_promql.get(inner, []))
            ]
        return _answer(by_promql.get(promql, []))

    def close(self) -> None:
        pass


def prometheus_source(client: FakePrometheusClient, telemetry: TelemetrySink) -> PrometheusSource:
    """A real PrometheusSource whose HTTP client is the fake."""
    source = PrometheusSource("http://127.0.0.1:9", telemetry=telemetry)
    source._client = client
    return source
