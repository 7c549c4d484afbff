"""One metric source per gate, kept across its steps: one HTTP session and one look cache per gate.

A gate's source is replaced when its spec.prometheus or its resolved credentials change, dropped
when the gate is deleted or goes unstepped for a few intervals, and closed on operator stop. The
fingerprint that tells a change is a hash: credentials live only inside the source they configure.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from robustness_gate.api import PrometheusSpec
from robustness_gate.metrics.cache import CachedSource
from robustness_gate.metrics.prometheus import Credentials
from robustness_gate.metrics.source import MetricSource

SourceFactory = Callable[[PrometheusSpec, Credentials], MetricSource]

# A gate not stepped for this many of its intervals (and at least MIN_IDLE_SECONDS) has ended or moved
# on: its connection and cached looks are dropped, and a later step starts from Prometheus again.
IDLE_INTERVALS = 3
MIN_IDLE_SECONDS = 60.0
SWEEP_SECONDS = 10.0  # how often idle gates are looked for


class GateKey(NamedTuple):
    namespace: str
    name: str
    uid: str  # a gate deleted and created again under the same name starts afresh


def fingerprint(spec: PrometheusSpec, credentials: Credentials) -> str:
    fields = [spec.model_dump_json(), credentials.bearer_token, credentials.username, credentials.password]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


@dataclass
class _Held:
    fingerprint: str
    source: CachedSource
    idle_after: float
    last_used: float
    in_use: bool = False


def _close(source: CachedSource) -> None:
    with contextlib.suppress(Exception):  # a failing close must not stop a step or the operator
        source.close()


class GateSources:
    """Thread-safe; each gate's source is used by that gate's worker only."""

    def __init__(self, factory: SourceFactory, clock: Callable[[], float]) -> None:
        self.factory = factory
        self.clock = clock
        self._held: dict[GateKey, _Held] = {}
        self._lock = threading.Lock()
        self._last_sweep = clock()

    @contextlib.contextmanager
    def lease(
        self, gate: GateKey, spec: PrometheusSpec, credentials: Credentials, interval_seconds: float
    ) -> Iterator[CachedSource]:
        """The gate's source for one step; a new one (and the old one closed) if its Prometheus changed."""
        now = self.clock()
        wanted = fingerprint(spec, credentials)
        idle_after = max(IDLE_INTERVALS * interval_seconds, MIN_IDLE_SECONDS)
        retired: list[CachedSource] = []
        with self._lock:
            held = self._held.get(gate)
            if held is not None and held.fingerprint != wanted:
                retired.append(self._held.pop(gate).source)
                held = None
            if held is not None:
                held.in_use, held.last_used, held.idle_after = True, now, idle_after  # safe from the sweep below
            retired += self._idle(now)
        for source in retired:
            _close(source)
        if held is None:
            # Outside the lock: building a source concerns this gate only, and its worker is the only caller.
            held = _Held(wanted, CachedSource(self.factory(spec, credentials)), idle_after, now, in_use=True)
            with self._lock:
                self._held[gate] = held
        try:
            yield held.source
        finally:
            held.in_use, held.last_used = False, self.clock()

    def forget(self, gate: GateKey) -> None:
        """Close and drop the gate's source (deleted gate, stopped worker)."""
        with self._lock:
            held = self._held.pop(gate, None)
        if held is not None:
            _close(held.source)

    def close(self) -> None:
        with self._lock:
            held, self._held = list(self._held.values()), {}
        for entry in held:
            _close(entry.source)

    def count(self) -> int:
        with self._lock:
            return len(self._held)

    def _idle(self, now: float) -> list[CachedSource]:
        """Under the lock: take out the gates unstepped for too long (at most every SWEEP_SECONDS)."""
        if now - self._last_sweep < SWEEP_SECONDS:
            return []
        self._last_sweep = now
        idle = [key for key, held in self._held.items() if not held.in_use and now - held.last_used > held.idle_after]
        return [self._held.pop(key).source for key in idle]

    def __repr__(self) -> str:
        return f"GateSources({self.count()} gates)"
