"""Leader election on a coordination.k8s.io Lease, so that of several replicas only one acts.

The replica holding an unexpired Lease is the leader; it renews every `renew_seconds`. Another
replica takes the Lease over only when it has not been renewed for `lease_seconds`. Writes carry
the Lease's resourceVersion, so two replicas racing for it cannot both win (the loser gets 409).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger("robustness_gate.leader")


class LeaseApi(Protocol):
    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def write_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> bool:
        """Create (no resourceVersion) or replace (with one); False when someone else wrote first."""
        ...


def _micro(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_micro(text: str | None) -> float | None:
    if not text:
        return None
    for pattern in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(text, pattern).replace(tzinfo=dt.UTC).timestamp()
        except ValueError:
            continue
    return None


def next_lease(
    current: dict[str, Any] | None, identity: str, now: float, lease_seconds: int, namespace: str, name: str
) -> dict[str, Any] | None:
    """PURE: the Lease to write to hold leadership now, or None when another holder's lease is still valid."""
    spec = (current or {}).get("spec") or {}
    holder = spec.get("holderIdentity")
    renewed = _parse_micro(spec.get("renewTime"))
    duration = int(spec.get("leaseDurationSeconds") or lease_seconds)
    if current is not None and holder and holder != identity and renewed is not None and now < renewed + duration:
        return None
    transitions = int(spec.get("leaseTransitions") or 0) + (1 if holder and holder != identity else 0)
    acquired = spec.get("acquireTime") if holder == identity else _micro(now)
    lease: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": lease_seconds,
            "acquireTime": acquired or _micro(now),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        },
    }
    if current is not None:
        lease["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    return lease


@dataclass
class LeaderElector:
    api: LeaseApi
    namespace: str
    name: str
    identity: str
    lease_seconds: int = 15
    renew_seconds: float = 2.0
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.leading = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)

    def start(self) -> LeaderElector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.leading.clear()

    def try_once(self) -> bool | None:
        """One acquire-or-renew attempt: True won, False another replica leads, None the API failed."""
        try:
            current = self.api.read_lease(self.namespace, self.name)
            wanted = next_lease(current, self.identity, self.clock(), self.lease_seconds, self.namespace, self.name)
            return wanted is not None and self.api.write_lease(self.namespace, self.name, wanted)
        except Exception as error:  # KubeError or a transport error; the caller decides how long leadership lasts
            log.warning("leader election: %s", error)
            return None

    def _run(self) -> None:
        renewed = float("-inf")
        while not self._stop.is_set():
            result = self.try_once()
            now = self.clock()
            if result:
                renewed = now
            # Stop acting a renew period before the lease could expire, so two replicas never act at once.
            leading = now - renewed < self.lease_seconds - self.renew_seconds
            if leading and not self.leading.is_set():
                log.info("leader election: %s now leads (Lease %s/%s)", self.identity, self.namespace, self.name)
                self.leading.set()
            elif not leading and self.leading.is_set():
                log.warning(
                    "leader election: %s no longer leads (Lease %s/%s)", self.identity, self.namespace, self.name
                )
                self.leading.clear()
            self._stop.wait(self.renew_seconds)
