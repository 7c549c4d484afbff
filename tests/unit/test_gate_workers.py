"""The per-gate worker loop: API failures back off exponentially with jitter, a success resets it."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import pytest
from fakes import WorkerKube, worker_gate

from robustness_gate import cli, handlers
from robustness_gate import workers as workers_module
from robustness_gate.defaults import DEFAULT_CONCURRENCY
from robustness_gate.telemetry import Telemetry
from robustness_gate.workers import API_RETRY_MAX_SECONDS, API_RETRY_SECONDS, GateWorkers, api_retry_delay


def test_retry_delay_doubles_per_failure_up_to_a_cap_with_jitter() -> None:
    lows = [api_retry_delay(n, jitter=lambda: 0.0) for n in range(1, 10)]
    highs = [api_retry_delay(n, jitter=lambda: 1.0) for n in range(1, 10)]
    assert highs[:4] == [API_RETRY_SECONDS * 2**k for k in range(4)]
    assert lows == [h / 2 for h in highs]  # jitter spreads each delay over [base/2, base]
    assert highs[-1] == API_RETRY_MAX_SECONDS and api_retry_delay(10_000, jitter=lambda: 1.0) == API_RETRY_MAX_SECONDS


def _pool_kube() -> WorkerKube:
    """Gates whose UID is their name, so that many can be stepped side by side."""
    return WorkerKube(lambda namespace, name: worker_gate(namespace, name, uid=name))


class _Controller:
    def __init__(self) -> None:
        self.steps = threading.Event()
        self.bodies: list[dict[str, Any]] = []

    def step(self, body: dict[str, Any]) -> float:
        self.bodies.append(body)
        self.steps.set()
        return 3600.0

    def forget(self, namespace: str, name: str, uid: str) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("status", [409, 503, 0])
def test_a_worker_backs_off_on_api_failures_and_steps_once_the_api_answers(
    status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers_module, "API_RETRY_SECONDS", 0.05)
    kube, controller = WorkerKube(failures=4, status=status), _Controller()
    workers = GateWorkers(kube, controller)  # type: ignore[arg-type]
    workers.seen({"metadata": {"namespace": "ns", "name": "g", "uid": "u1", "generation": 1}}, deleted=False)
    try:
        assert controller.steps.wait(10), "the worker never stepped after the API came back"
    finally:
        workers.stop_all()
    gaps = [b - a for a, b in zip(kube.reads, kube.reads[1:], strict=False)]
    assert len(kube.reads) == 5
    # Base delays 0.05, 0.1, 0.2, 0.4 with jitter in [base/2, base]: each gap at least half its base.
    for k, gap in enumerate(gaps):
        assert gap >= 0.05 * 2**k / 2 - 0.01, gaps
    assert gaps[-1] > gaps[0]


def _gate(version: str, status: str) -> dict[str, Any]:
    meta = {"namespace": "ns", "name": "g", "uid": "u1", "generation": 1, "resourceVersion": version}
    return {"metadata": meta, "status": {"message": status}}


@pytest.mark.parametrize(
    ("written", "seen", "reads", "stepped_on"),
    [
        ("7", "7", 0, "watch"),  # the watch delivered our own last write: no GET
        ("7", "6", 1, "api"),  # the watch lags behind our write: read the API
        ("7", "8", 1, "api"),  # somebody changed the gate after our write: read the API
        (None, "7", 1, "api"),  # no write of ours known (a restart, a failed write): read the API
    ],
)
def test_a_worker_steps_on_the_watch_copy_only_if_it_is_our_last_write(
    written: str | None, seen: str, reads: int, stepped_on: str
) -> None:
    kube, controller = WorkerKube(lambda namespace, name: _gate("7", "api"), written=written), _Controller()
    workers = GateWorkers(kube, controller)  # type: ignore[arg-type]
    workers.seen(_gate(seen, "watch"), deleted=False)
    try:
        assert controller.steps.wait(10)
    finally:
        workers.stop_all()
    assert len(kube.reads) == reads
    assert controller.bodies[0]["status"]["message"] == stepped_on
    assert kube.written is None  # the stopped worker forgot its gate's written version


class _TimedController:
    """Records each step (gate, start, end); a step takes `duration` and asks for `delay` before the next."""

    def __init__(self, duration: float, delay: float) -> None:
        self.duration, self.delay = duration, delay
        self.lock = threading.Lock()
        self.steps: list[tuple[str, float, float]] = []
        self.running: set[str] = set()
        self.overlaps = 0
        self.most_at_once = 0
        self.forgotten: list[tuple[str, float]] = []
        self.started = threading.Event()

    def step(self, body: dict[str, Any]) -> float:
        name = body["metadata"]["name"]
        with self.lock:
            self.overlaps += name in self.running
            self.running.add(name)
            self.most_at_once = max(self.most_at_once, len(self.running))
        start = time.monotonic()
        self.started.set()
        time.sleep(self.duration)
        with self.lock:
            self.running.discard(name)
            self.steps.append((name, start, time.monotonic()))
        return self.delay

    def forget(self, namespace: str, name: str, uid: str) -> None:
        with self.lock:
            self.forgotten.append((name, time.monotonic()))

    def close(self) -> None:
        pass

    def count(self, name: str) -> int:
        with self.lock:
            return sum(1 for step in self.steps if step[0] == name)


def _body(name: str, generation: int = 1) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": name, "uid": name, "generation": generation}}


def test_a_small_pool_steps_every_gate_at_its_delay_and_one_gate_on_one_thread_at_a_time() -> None:
    controller = _TimedController(duration=0.01, delay=0.3)
    workers = GateWorkers(_pool_kube(), controller, concurrency=4)  # type: ignore[arg-type]
    names = [f"g{i}" for i in range(40)]
    for name in names:
        workers.seen(_body(name), deleted=False)
    time.sleep(1.5)
    workers.stop_all()
    threads = [t for t in threading.enumerate() if t.name.startswith("gate-steps-")]
    assert threads == []  # stopped with the operator
    assert controller.overlaps == 0 and controller.most_at_once <= 4
    assert len(workers._threads) == 4
    for name in names:
        starts = [start for gate, start, _ in controller.steps if gate == name]
        # 40 steps of 10 ms on 4 threads take 0.1 s, well within each gate's 0.3 s delay: every gate
        # keeps its pace (steps ~0.31 s apart), none is starved.
        assert 4 <= len(starts) <= 6, (name, starts)
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert min(gaps) >= 0.3 - 0.005, (name, gaps)


def test_a_spec_change_during_a_step_steps_the_gate_again_when_it_ends() -> None:
    controller = _TimedController(duration=0.3, delay=3600.0)
    workers = GateWorkers(_pool_kube(), controller, concurrency=2)  # type: ignore[arg-type]
    workers.seen(_body("g"), deleted=False)
    assert controller.started.wait(5)
    workers.seen(_body("g", generation=2), deleted=False)  # while the first step runs
    deadline = time.monotonic() + 5
    while controller.count("g") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    workers.stop_all()
    assert controller.count("g") == 2 and controller.overlaps == 0
    first, second = sorted(controller.steps, key=lambda step: step[1])
    assert second[1] >= first[2]  # after the first ended, not beside it


def test_a_gate_deleted_during_its_step_is_let_go_after_the_step_and_not_stepped_again() -> None:
    controller = _TimedController(duration=0.3, delay=0.0)
    workers = GateWorkers(_pool_kube(), controller, concurrency=2)  # type: ignore[arg-type]
    workers.seen(_body("g"), deleted=False)
    assert controller.started.wait(5)
    workers.seen(_body("g"), deleted=True)
    time.sleep(0.6)
    workers.stop_all()
    assert controller.count("g") == 1
    [(_name, when)] = [item for item in controller.forgotten if item[0] == "g"]
    assert when >= controller.steps[0][2]  # its connection closed only once the step was done
    assert workers.count() == 0


def test_the_gate_due_longest_is_stepped_first() -> None:
    controller = _TimedController(duration=0.05, delay=3600.0)
    workers = GateWorkers(_pool_kube(), controller, concurrency=1)  # type: ignore[arg-type]
    for name in ("a", "b", "c", "d"):
        workers.seen(_body(name), deleted=False)
    deadline = time.monotonic() + 5
    while len(controller.steps) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    workers.stop_all()
    assert [name for name, _, _ in sorted(controller.steps, key=lambda step: step[1])] == ["a", "b", "c", "d"]


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GateWorkers(_pool_kube(), _TimedController(0, 0), concurrency=0)  # type: ignore[arg-type]


def test_the_run_command_offers_the_pools_default_and_refuses_nonsense() -> None:
    pool = GateWorkers(_pool_kube(), _TimedController(0, 0))  # type: ignore[arg-type]
    parser = cli._parser()
    assert parser.parse_args(["run"]).concurrent_steps == pool.concurrency == DEFAULT_CONCURRENCY
    assert parser.parse_args(["run", "--concurrent-steps", "3"]).concurrent_steps == 3
    for bad in ("0", "300", "many"):
        with pytest.raises(SystemExit):
            parser.parse_args(["run", "--concurrent-steps", bad])


def test_how_late_a_step_starts_is_measured() -> None:
    telemetry = Telemetry()
    controller = _TimedController(duration=0.2, delay=3600.0)
    workers = GateWorkers(_pool_kube(), controller, telemetry, concurrency=1)  # type: ignore[arg-type]
    for name in ("a", "b", "c"):
        workers.seen(_body(name), deleted=False)
    deadline = time.monotonic() + 5
    while len(controller.steps) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    workers.stop_all()
    registry = telemetry.registry
    assert registry.get_sample_value("robustness_gate_step_lateness_seconds_count") == 3
    # On one thread, b waited for a's step and c for both: about 0.2 s + 0.4 s in all.
    total = registry.get_sample_value("robustness_gate_step_lateness_seconds_sum")
    assert total is not None and 0.55 <= total <= 1.5
    assert registry.get_sample_value("robustness_gate_step_lateness_seconds_bucket", {"le": "0.1"}) == 1


def test_kopf_keeps_no_diff_base_so_watch_events_copy_nothing() -> None:
    """Only event handlers are registered: kopf gets a diff-base store that neither copies a body nor
    annotates one, in place of its default, which deep-copies every watched object on every event."""
    import asyncio

    import kopf

    workers = GateWorkers(WorkerKube(), _Controller(), concurrency=1)  # type: ignore[arg-type]
    reg = handlers.registry(workers)
    settings = kopf.OperatorSettings()
    startup = [h for h in reg._activities.get_all_handlers() if h.activity and h.activity.value == "startup"]
    assert startup, "the registry configures kopf at startup"
    for handler in startup:
        result = handler.fn(settings=settings, logger=None)  # type: ignore[call-arg, arg-type]  # what kopf passes
        if asyncio.iscoroutine(result):
            asyncio.run(result)
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, handlers.NoDiffBase)
    body = kopf.Body({"metadata": {"name": "g", "annotations": {"a": "b"}}, "spec": {"x": 1}, "status": {"y": 2}})
    assert storage.build(body=body) == {} and storage.fetch(body=body) is None
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=kopf.BodyEssence())
    assert not patch  # nothing written to the object
    assert reg._changing.get_all_handlers() == [], "a change handler would need a real diff base"
