"""The per-gate worker loop: API failures back off exponentially with jitter, a success resets it."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from robustness_gate import handlers
from robustness_gate.handlers import API_RETRY_MAX_SECONDS, API_RETRY_SECONDS, GateWorkers, api_retry_delay
from robustness_gate.kube import KubeError


def test_retry_delay_doubles_per_failure_up_to_a_cap_with_jitter() -> None:
    lows = [api_retry_delay(n, jitter=lambda: 0.0) for n in range(1, 10)]
    highs = [api_retry_delay(n, jitter=lambda: 1.0) for n in range(1, 10)]
    assert highs[:4] == [API_RETRY_SECONDS * 2**k for k in range(4)]
    assert lows == [h / 2 for h in highs]  # jitter spreads each delay over [base/2, base]
    assert highs[-1] == API_RETRY_MAX_SECONDS and api_retry_delay(10_000, jitter=lambda: 1.0) == API_RETRY_MAX_SECONDS


class _Kube:
    """Fails the first `failures` reads of the gate with the given status, then serves it."""

    def __init__(self, failures: int, status: int) -> None:
        self.failures, self.status = failures, status
        self.reads: list[float] = []

    def gate(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(time.monotonic())
        if len(self.reads) <= self.failures:
            raise KubeError("reading RobustnessGate: the server is currently unable to handle the request", self.status)
        return {"metadata": {"namespace": namespace, "name": name, "uid": "u1", "generation": 1}}

    def written_version(self, namespace: str, name: str) -> str | None:
        return None

    def forget_written(self, namespace: str, name: str) -> None:
        pass


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
    monkeypatch.setattr(handlers, "API_RETRY_SECONDS", 0.05)
    kube, controller = _Kube(failures=4, status=status), _Controller()
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


class _WrittenKube:
    """The API holds the gate at resourceVersion "7" with status "api"; our last status write made `written`."""

    def __init__(self, written: str | None) -> None:
        self.written, self.reads = written, 0

    def gate(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return _gate("7", "api")

    def written_version(self, namespace: str, name: str) -> str | None:
        return self.written

    def forget_written(self, namespace: str, name: str) -> None:
        self.written = None


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
    kube, controller = _WrittenKube(written), _Controller()
    workers = GateWorkers(kube, controller)  # type: ignore[arg-type]
    workers.seen(_gate(seen, "watch"), deleted=False)
    try:
        assert controller.steps.wait(10)
    finally:
        workers.stop_all()
    assert kube.reads == reads
    assert controller.bodies[0]["status"]["message"] == stepped_on
    assert kube.written is None  # the stopped worker forgot its gate's written version
