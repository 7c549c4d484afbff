"""What the judge needs from a metric store, and how raw query results become per-look series."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from robustness_gate.api import MetricSpec
from robustness_gate.metrics.queries import PART_LABEL, Query
from robustness_gate.metrics.templates import Sides
from robustness_gate.series import MetricData

# One series: its labels and its (unix time, value) samples.
RawSeries = list[tuple[dict[str, str], list[tuple[float, float]]]]


class ErrorKind(StrEnum):
    """Why a metric store's answer could not be judged (the label of robustness_gate_prometheus_errors_total)."""

    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    HTTP = "http"
    PROMQL = "promql"
    MALFORMED = "malformed"
    AUTH = "auth"
    # The answer is well-formed but unusable for one metric (e.g. different buckets on the two sides).
    DATA = "data"
    # Data that cannot be right: an error that names the metric and the fix, never a verdict.
    REFUSED = "refused"
    ERROR = "error"


class MetricsError(Exception):
    """The metric store could not answer usefully; never grounds for a promotion."""

    def __init__(self, message: str, kind: ErrorKind | str = ErrorKind.ERROR, at: float | None = None) -> None:
        super().__init__(message)
        self.kind = ErrorKind(kind)  # an unknown kind is a bug: ValueError
        # For REFUSED: `at` is the time of the first look that shows it.
        self.at = at


REFUSED = ErrorKind.REFUSED
# Kept per metric, so the other metrics' answers are not lost.
PER_METRIC_KINDS = (ErrorKind.DATA, ErrorKind.REFUSED)

# How far a look's counts may stray before they are refused rather than judged. Bad events of a look may
# exceed its requests by scrape skew or `increase()` extrapolation between two series (a factor up to
# about 2 at two scrapes per look, a couple of events at low traffic), never more; swapped numerator and
# denominator at an error rate below 50% do. A histogram's bucket may count less than the one below it by
# extrapolation of series that start within a look, never by more than a tenth of the look's observations.
EVENT_EXCESS_FACTOR = 2.0
COUNT_SLACK = 2.0
BUCKET_DROP_SHARE = 0.1
# A negative count further below zero than float rounding of a sum of increments.
NEGATIVE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Window:
    """Looks at start + step, start + 2·step, ...; each look covers the step before it."""

    start: float
    step: float
    looks: int

    @classmethod
    def between(cls, start: float, end: float, step: float) -> Window:
        return cls(start=start, step=step, looks=max(0, math.floor((end - start) / step + 1e-9)))

    @property
    def first(self) -> float:
        return self.start + self.step

    @property
    def last(self) -> float:
        return self.start + self.looks * self.step

    def index(self, timestamp: float) -> int | None:
        position = round((timestamp - self.first) / self.step)
        return position if 0 <= position < self.looks else None


class MetricSource(Protocol):
    def fetch(self, metric: MetricSpec, sides: Sides, window: Window) -> MetricData: ...


# A metric's data, or why its answer could not be read (a MetricsError of kind "data").
Fetched = dict[str, "MetricData | MetricsError"]


@runtime_checkable
class BatchSource(MetricSource, Protocol):
    """A source that answers several metrics in one request (PrometheusSource, the look cache)."""

    def fetch_many(self, metrics: Sequence[MetricSpec], sides: Sides, window: Window) -> Fetched: ...


def fetch_many(source: MetricSource, metrics: Sequence[MetricSpec], sides: Sides, window: Window) -> Fetched:
    """Every metric at once: by the source's own `fetch_many` (one request) where it has one, else metric by
    metric. Faults of the store raise; a metric whose answer cannot be read gets its MetricsError in place of
    its data, so the others' data is not lost."""
    if isinstance(source, BatchSource):
        return source.fetch_many(metrics, sides, window)
    return fetch_each(source, metrics, sides, window)


def fetch_each(source: MetricSource, metrics: Sequence[MetricSpec], sides: Sides, window: Window) -> Fetched:
    """Every metric by its own fetch; an unreadable answer ("data") takes the metric's place, other faults raise."""
    results: Fetched = {}
    for metric in metrics:
        try:
            results[metric.name] = source.fetch(metric, sides, window)
        except MetricsError as error:
            if error.kind not in PER_METRIC_KINDS:
                raise
            results[metric.name] = error
    return results


def fetch_all(
    source: MetricSource, metrics: Sequence[MetricSpec], sides: Sides, window: Window
) -> dict[str, MetricData]:
    """Each metric's data, in one request where the source can; the first metric that failed raises."""
    fetched = fetch_many(source, metrics, sides, window)
    data: dict[str, MetricData] = {}
    for metric in metrics:
        result = fetched[metric.name]
        if isinstance(result, MetricsError):
            raise result
        data[metric.name] = result
    return data


def split_parts(queries: list[Query], answer: RawSeries) -> dict[Query, RawSeries] | None:
    """The answer to `combine(queries)` as the answers to each query, without the part label.

    None when a series carries no known part label (a store that drops it): ask part by part then.
    """
    if len(queries) == 1:
        return {queries[0]: answer}
    by_tag = split_tagged([query.part for query in queries], answer)
    return None if by_tag is None else {query: by_tag[query.part] for query in queries}


def split_tagged(tags: list[str], answer: RawSeries) -> dict[str, RawSeries] | None:
    """The answer to `combine_tagged` per tag, without the part label; None if a series has no known tag."""
    by_tag: dict[str, RawSeries] = {tag: [] for tag in tags}
    for labels, samples in answer:
        tag = labels.get(PART_LABEL)
        if tag is None or tag not in by_tag:
            return None
        by_tag[tag].append(({k: v for k, v in labels.items() if k != PART_LABEL}, samples))
    return by_tag
