"""Leader election on a Lease: who may take it, when, and that a racing loser never leads."""

from __future__ import annotations

import copy
from typing import Any

from robustness_gate.leader import LeaderElector, _micro, next_lease

NS, NAME = "robustness-gate", "robustness-gate"


def held_by(holder: str, renewed: float, duration: int = 15, version: str = "7") -> dict[str, Any]:
    return {
        "metadata": {"name": NAME, "namespace": NS, "resourceVersion": version},
        "spec": {
            "holderIdentity": holder,
            "renewTime": _micro(renewed),
            "leaseDurationSeconds": duration,
            "acquireTime": _micro(renewed - 100),
            "leaseTransitions": 2,
        },
    }


def test_a_free_lease_is_created_without_a_resource_version() -> None:
    lease = next_lease(None, "a", 1000.0, 15, NS, NAME)
    assert lease is not None and "resourceVersion" not in lease["metadata"]
    assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseDurationSeconds"] == 15


def test_a_valid_lease_of_another_replica_is_left_alone() -> None:
    assert next_lease(held_by("b", 1000.0), "a", 1014.9, 15, NS, NAME) is None


def test_an_expired_lease_is_taken_over_with_its_resource_version() -> None:
    lease = next_lease(held_by("b", 1000.0), "a", 1015.1, 15, NS, NAME)
    assert lease is not None
    assert lease["metadata"]["resourceVersion"] == "7"  # optimistic: a racing writer makes this one fail
    assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseTransitions"] == 3


def test_the_holder_renews_and_keeps_its_acquire_time() -> None:
    current = held_by("a", 1000.0)
    lease = next_lease(current, "a", 1002.0, 15, NS, NAME)
    assert lease is not None
    assert lease["spec"]["acquireTime"] == current["spec"]["acquireTime"]
    assert lease["spec"]["renewTime"] == _micro(1002.0) and lease["spec"]["leaseTransitions"] == 2


class FakeLeases:
    """An in-memory Lease store with resourceVersion checks, like the apiserver's."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.fail = False

    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.fail:
            raise RuntimeError("HTTP 503")
        return copy.deepcopy(self.lease)

    def write_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> bool:
        if self.fail:
            raise RuntimeError("HTTP 503")
        expected = lease["metadata"].get("resourceVersion")
        if (self.lease is None) != (expected is None):
            return False
        if self.lease is not None and self.lease["metadata"]["resourceVersion"] != expected:
            return False
        self.version += 1
        self.lease = copy.deepcopy(lease)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return True


def test_two_replicas_never_both_win_and_the_second_takes_over_after_expiry() -> None:
    store, now = FakeLeases(), [1000.0]
    a = LeaderElector(store, NS, NAME, "a", lease_seconds=15, clock=lambda: now[0])
    b = LeaderElector(store, NS, NAME, "b", lease_seconds=15, clock=lambda: now[0])
    assert a.try_once() is True and b.try_once() is False
    now[0] += 10
    assert a.try_once() is True and b.try_once() is False  # renewed: b keeps waiting
    now[0] += 16  # a died without renewing
    assert b.try_once() is True and a.try_once() is False
    assert store.lease is not None and store.lease["spec"]["holderIdentity"] == "b"


def test_a_racing_write_with_a_stale_version_loses() -> None:
    store = FakeLeases()
    assert store.write_lease(NS, NAME, next_lease(None, "a", 1000.0, 15, NS, NAME) or {})
    stale = held_by("a", 900.0, version="0")
    assert store.write_lease(NS, NAME, next_lease(stale, "b", 1000.0, 15, NS, NAME) or {}) is False


def test_api_errors_are_reported_as_unknown_not_as_lost() -> None:
    store = FakeLeases()
    store.fail = True
    assert LeaderElector(store, NS, NAME, "a").try_once() is None
