"""Per-look series kept between the steps of one gate, so a step fetches only the looks it has not seen.

A look's row in the assembled series (CountSeries, HistogramSeries, ValueSeries) depends only on the
samples of that look's own interval: a narrower range query gives the same rows for the looks it
covers. So a step asks the wrapped source for the new looks, plus the last `REFETCH_LOOKS` cached
ones (Prometheus may still ingest late samples for them), and puts the answer after the rows it
keeps. The cache key holds everything that changes the data (analysis start, interval, the metric
spec, the sides and the PromQL sent); any change fetches every look again. Nothing depends on the
cache for correctness: an empty one, as in a restarted operator, fetches everything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from robustness_gate.api import MetricSpec
from robustness_gate.metrics.assembly import joined_buckets_agree
from robustness_gate.metrics.queries import QueryMemo
from robustness_gate.metrics.source import (
    Fetched,
    MetricsError,
    MetricSource,
    Window,
    fetch_many,
)
from robustness_gate.metrics.templates import Sides
from robustness_gate.series import (
    BoolArray,
    CategorySeries,
    CountSeries,
    FloatArray,
    GroupedSeries,
    HistogramSeries,
    MetricData,
    ValueSeries,
)

# Looks at the end of the cache that are fetched again: the samples of the latest scrapes can land
# after the step that first read them.
REFETCH_LOOKS = 2


@dataclass(frozen=True)
class LookKey:
    """Everything a metric's per-look rows depend on besides the looks themselves."""

    start: float
    step: float
    metric: str
    sides: Sides
    promql: tuple[str, ...]

    @classmethod
    def of(cls, metric: MetricSpec, sides: Sides, window: Window, memo: QueryMemo | None = None) -> LookKey:
        memo = memo or QueryMemo()
        queries = memo.queries(metric, sides, window.step)
        spec = memo.spec_json(metric, sides, window.step)
        return cls(window.start, window.step, spec, sides, tuple(q.promql for q in queries))


@dataclass(frozen=True)
class CachedLooks:
    key: LookKey
    data: MetricData

    @property
    def looks(self) -> int:
        return self.data.looks

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in _arrays(self.data))


def _arrays(data: MetricData) -> list[FloatArray | BoolArray]:
    if isinstance(data, CountSeries):
        return [data.canary_events, data.canary_total, data.baseline_events, data.baseline_total]
    if isinstance(data, HistogramSeries) and data.seen is not None:
        return [data.canary, data.baseline, *data.seen]
    if isinstance(data, GroupedSeries):
        return [array for member in data.members for array in _arrays(member)]
    return [data.canary, data.baseline]


def _frozen(data: MetricData) -> MetricData:
    """Read-only arrays: the judge gets the cached rows themselves, and must not change them."""
    for array in _arrays(data):
        array.flags.writeable = False
    return data


def _joined(head: FloatArray, tail: FloatArray) -> FloatArray:
    return np.concatenate([head, tail]).astype(np.float64, copy=False)


def splice(cached: MetricData, keep: int, tail: MetricData) -> MetricData | None:
    """The first `keep` rows of `cached` followed by `tail`; None when their shapes cannot be joined.

    Histograms only join with the same buckets, and when the bucket series each side returned in the
    kept looks and in the tail (`seen`) pass the check one answer over all the looks would have to:
    its buckets are those seen in any look, and the two sides must have seen the same ones.
    """
    if isinstance(cached, CountSeries) and isinstance(tail, CountSeries):
        return CountSeries(
            canary_events=_joined(cached.canary_events[:keep], tail.canary_events),
            canary_total=_joined(cached.canary_total[:keep], tail.canary_total),
            baseline_events=_joined(cached.baseline_events[:keep], tail.baseline_events),
            baseline_total=_joined(cached.baseline_total[:keep], tail.baseline_total),
        )
    if isinstance(cached, HistogramSeries) and isinstance(tail, HistogramSeries):
        if cached.bounds != tail.bounds or cached.seen is None or tail.seen is None:
            return None
        seen = (
            np.concatenate([cached.seen[0][:keep], tail.seen[0]]),
            np.concatenate([cached.seen[1][:keep], tail.seen[1]]),
        )
        if not joined_buckets_agree(cached.bounds, seen):
            return None
        return HistogramSeries(
            bounds=cached.bounds,
            canary=_joined(cached.canary[:keep], tail.canary),
            baseline=_joined(cached.baseline[:keep], tail.baseline),
            seen=seen,
        )
    if isinstance(cached, CategorySeries) and isinstance(tail, CategorySeries):
        if cached.categories != tail.categories:
            return None  # a category new in the tail: fetch every look again
        return CategorySeries(
            cached.categories,
            _joined(cached.canary[:keep], tail.canary),
            _joined(cached.baseline[:keep], tail.baseline),
        )
    if isinstance(cached, GroupedSeries) and isinstance(tail, GroupedSeries):
        if cached.label != tail.label or cached.groups != tail.groups:
            return None
        members = [splice(old, keep, new) for old, new in zip(cached.members, tail.members, strict=True)]
        if not all(isinstance(m, CountSeries | HistogramSeries | CategorySeries) for m in members):
            return None
        return GroupedSeries(cached.label, cached.groups, tuple(members), keep + tail.looks)  # type: ignore[arg-type]
    if isinstance(cached, ValueSeries) and isinstance(tail, ValueSeries):
        return ValueSeries(
            canary=_joined(cached.canary[:keep], tail.canary), baseline=_joined(cached.baseline[:keep], tail.baseline)
        )
    return None


class CachedSource:
    """A MetricSource for one gate that remembers each metric's rows between steps.

    Used by one worker thread at a time. One fetch of the wrapped source per step for all metrics whose new
    looks are the same (usually all of them); a second one, of every look of one metric, only when its new
    looks cannot be joined to the kept ones: a histogram whose buckets changed, or a check across series
    that failed on the new looks alone.
    """

    def __init__(self, inner: MetricSource) -> None:
        self.inner = inner
        self._entries: dict[str, CachedLooks] = {}
        self._queries = QueryMemo()

    def fetch(self, metric: MetricSpec, sides: Sides, window: Window) -> MetricData:
        result = self.fetch_many([metric], sides, window)[metric.name]
        if isinstance(result, MetricsError):
            raise result
        return result

    def fetch_many(self, metrics: Sequence[MetricSpec], sides: Sides, window: Window) -> Fetched:
        """Each metric's new looks, metrics with the same new looks asked together where the inner source can."""
        keys = {metric.name: LookKey.of(metric, sides, window, self._queries) for metric in metrics}
        if any(entry.key.start != window.start for entry in self._entries.values()):
            # Another analysis: rows of the old one are of no further use.
            self._entries = {name: e for name, e in self._entries.items() if e.key.start == window.start}
        by_keep: dict[int, list[MetricSpec]] = {}
        for metric in metrics:
            entry = self._entries.get(metric.name)
            if entry is not None and entry.key == keys[metric.name]:
                keep = max(0, min(entry.looks, window.looks) - REFETCH_LOOKS)
            else:
                keep = 0
            by_keep.setdefault(keep, []).append(metric)
        results: Fetched = {}
        for keep, group in by_keep.items():
            if keep == 0:
                results.update(fetch_many(self.inner, group, sides, window))
                continue
            tail = Window(window.start + keep * window.step, window.step, window.looks - keep)
            answers = fetch_many(self.inner, group, sides, tail)
            for metric in group:
                answer = answers[metric.name]
                cached = self._entries[metric.name].data
                joined = None if isinstance(answer, MetricsError) else splice(cached, keep, answer)
                # Checks across series (one series per side, the same buckets on both sides) can fail on a
                # few looks and pass on all of them, or the other way round: all the looks decide, as uncached.
                results[metric.name] = (
                    joined if joined is not None else fetch_many(self.inner, [metric], sides, window)[metric.name]
                )
        for metric in metrics:
            result = results[metric.name]
            if isinstance(result, MetricsError):
                self._entries.pop(metric.name, None)
            else:
                self._entries[metric.name] = CachedLooks(keys[metric.name], _frozen(result))
        return {metric.name: results[metric.name] for metric in metrics}

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def close(self) -> None:
        self._entries.clear()
        closer: Any = getattr(self.inner, "close", None)
        if callable(closer):
            closer()
