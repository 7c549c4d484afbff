"""What the operator's parts record about themselves, as an interface: `telemetry.Telemetry` records it
with prometheus_client, `NullTelemetry` drops it.

No prometheus_client here: `Kube` and `PrometheusSource` default to `NULL_TELEMETRY`, and `analyze` uses
them without loading the exposition library.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Protocol


class SettableGauge(Protocol):
    def set(self, value: float) -> None: ...


class IncrementableCounter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class LabelledGauge(Protocol):
    def labels(self, *values: str) -> SettableGauge: ...


class LabelledCounter(Protocol):
    def labels(self, *values: str) -> IncrementableCounter: ...


class Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class TelemetrySink(Protocol):
    # Read-only properties, so that Telemetry's prometheus_client metrics (plain attributes) match them.
    @property
    def decisions(self) -> LabelledCounter: ...

    @property
    def prometheus_errors(self) -> LabelledCounter: ...

    @property
    def score(self) -> LabelledGauge: ...

    @property
    def looks(self) -> LabelledGauge: ...

    @property
    def step_seconds(self) -> Observer: ...

    @property
    def step_lateness(self) -> Observer: ...

    def api_request(self, verb: str, kind: str) -> None: ...

    def watched_read(self, kind: str, hit: bool) -> None: ...

    def prometheus_query(self) -> None: ...

    def step_part(self, part: str) -> contextlib.AbstractContextManager[None]: ...

    def watch_phases(self, phases: Callable[[], Iterable[str]]) -> None: ...

    def forget(self, namespace: str, gate: str) -> None: ...


class _NullMetric:
    """Any metric of NullTelemetry, labelled or not: takes every value and keeps none."""

    def labels(self, *values: str) -> _NullMetric:
        return self

    def set(self, value: float) -> None:
        pass

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


_NULL_METRIC = _NullMetric()
_NO_PART = contextlib.nullcontext()  # reusable and reentrant: it holds no state


class NullTelemetry:
    """Records nothing and registers nothing: what a part records to when no one reads its metrics."""

    decisions = prometheus_errors = score = looks = step_seconds = step_lateness = _NULL_METRIC

    def api_request(self, verb: str, kind: str) -> None:
        pass

    def watched_read(self, kind: str, hit: bool) -> None:
        pass

    def prometheus_query(self) -> None:
        pass

    def step_part(self, part: str) -> contextlib.AbstractContextManager[None]:
        return _NO_PART

    def watch_phases(self, phases: Callable[[], Iterable[str]]) -> None:
        pass

    def forget(self, namespace: str, gate: str) -> None:
        pass

    def __repr__(self) -> str:
        return "NullTelemetry()"


# One shared instance (it has no state): dataclasses holding it as their default still compare equal.
NULL_TELEMETRY = NullTelemetry()
