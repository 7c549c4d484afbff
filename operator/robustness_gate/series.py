"""Per-look data handed from a metric source to the judge. Pure containers, no I/O.

Every array has one entry per look (analysis interval), in time order. Counts are the
increments observed during that look's interval, not running totals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class CountSeries:
    """Bad events and all events per look, for canary and baseline."""

    canary_events: FloatArray
    canary_total: FloatArray
    baseline_events: FloatArray
    baseline_total: FloatArray

    @property
    def looks(self) -> int:
        return len(self.canary_total)


@dataclass(frozen=True)
class HistogramSeries:
    """Per-bucket observation counts per look (not cumulative); the last column is the +Inf bucket."""

    bounds: tuple[float, ...]
    canary: FloatArray
    baseline: FloatArray
    # Where known (a source that assembles raw series): which bucket series each side returned at each look,
    # looks x len(bounds) + 1, canary then baseline. The bucket check reads it, so rows fetched at different
    # times can be joined and checked as one answer over all the looks would be (metrics/cache.py).
    seen: tuple[BoolArray, BoolArray] | None = field(default=None, compare=False)

    @property
    def looks(self) -> int:
        return int(self.canary.shape[0])


@dataclass(frozen=True)
class ValueSeries:
    """One value per look and side; NaN where the query returned nothing."""

    canary: FloatArray
    baseline: FloatArray

    @property
    def looks(self) -> int:
        return len(self.canary)


@dataclass(frozen=True)
class CategorySeries:
    """Per-category observation counts per look (not cumulative): one column per category, in `categories`
    order (a counter with one series per category, e.g. predicted classes)."""

    categories: tuple[str, ...]
    canary: FloatArray
    baseline: FloatArray

    @property
    def looks(self) -> int:
        return int(self.canary.shape[0])


# What one feature of a metric with many can hold.
FeatureData = CountSeries | HistogramSeries | CategorySeries


@dataclass(frozen=True)
class GroupedSeries:
    """One metric's series per feature: `groups` are the values of its features label, in order, and each
    member is the series of the metric's kind for that feature alone."""

    label: str
    groups: tuple[str, ...]
    members: tuple[FeatureData, ...]
    window_looks: int

    @property
    def looks(self) -> int:
        return self.window_looks


MetricData = CountSeries | HistogramSeries | ValueSeries | CategorySeries | GroupedSeries


def first_looks(data: MetricData, looks: int) -> MetricData:
    """The same data cut to its first `looks` looks: what an analysis saw at that look."""
    if isinstance(data, CountSeries):
        return CountSeries(
            canary_events=data.canary_events[:looks],
            canary_total=data.canary_total[:looks],
            baseline_events=data.baseline_events[:looks],
            baseline_total=data.baseline_total[:looks],
        )
    if isinstance(data, HistogramSeries):
        seen = None if data.seen is None else (data.seen[0][:looks], data.seen[1][:looks])
        return HistogramSeries(
            bounds=data.bounds, canary=data.canary[:looks], baseline=data.baseline[:looks], seen=seen
        )
    if isinstance(data, CategorySeries):
        return CategorySeries(categories=data.categories, canary=data.canary[:looks], baseline=data.baseline[:looks])
    if isinstance(data, GroupedSeries):
        members = tuple(_first_feature_looks(member, looks) for member in data.members)
        return GroupedSeries(data.label, data.groups, members, min(looks, data.window_looks))
    return ValueSeries(canary=data.canary[:looks], baseline=data.baseline[:looks])


def _first_feature_looks(data: FeatureData, looks: int) -> FeatureData:
    cut = first_looks(data, looks)
    assert isinstance(cut, CountSeries | HistogramSeries | CategorySeries)
    return cut
