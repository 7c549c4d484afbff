"""PURE: the answers to a metric's queries → the per-look series the judge reads, or a refusal.

Series are told apart by side (the split label, or the query's side), summed per look, and checked: data
that cannot be right (a numerator above its denominator, negative counts, buckets that are not cumulative, a
series both sides count) is refused, never judged. A metric with `features` is assembled feature by feature:
its series are grouped by the feature label and each group is assembled as a metric of its kind alone.
"""

from __future__ import annotations

import math

import numpy as np

from robustness_gate.api import MetricSpec
from robustness_gate.metrics.queries import BASELINE, BOTH, CANARY, OVERLAP, Query
from robustness_gate.metrics.refusals import (
    refuse_excess,
    refuse_negative,
    refuse_not_cumulative,
    refuse_overlap,
    refuse_shared_series,
)
from robustness_gate.metrics.source import (
    ErrorKind,
    MetricsError,
    RawSeries,
    Window,
)
from robustness_gate.metrics.templates import Sides
from robustness_gate.series import (
    BoolArray,
    CategorySeries,
    CountSeries,
    FeatureData,
    FloatArray,
    GroupedSeries,
    HistogramSeries,
    MetricData,
    ValueSeries,
)
from robustness_gate.stats.histograms import per_bucket


def _series_side(query: Query, labels: dict[str, str], sides: Sides) -> str | None:
    if query.side != BOTH:
        return query.side
    split = sides.split()
    assert split is not None and query.split_label is not None
    value = labels.get(query.split_label)
    if value == split.canary:
        return CANARY
    if value == split.baseline:
        return BASELINE
    return None


def _per_look(samples: list[tuple[float, float]], window: Window, where: str) -> FloatArray:
    values = np.full(window.looks, math.nan)
    for timestamp, value in samples:
        index = window.index(timestamp)
        if index is None:
            continue
        if math.isinf(value):
            raise MetricsError(f"{where} returned {value} at {timestamp:.0f}; check the query", ErrorKind.DATA)
        values[index] = value
    return values


def assemble(metric: MetricSpec, sides: Sides, window: Window, raw: dict[Query, RawSeries]) -> MetricData:
    """Turn the answers to metric_queries() into the series the judge reads."""
    refuse_shared_series(metric, sides, window, raw)
    refuse_overlap(metric, sides, window, raw)
    raw = {query: series for query, series in raw.items() if query.side != OVERLAP}
    if metric.features is not None:
        return _assemble_grouped(metric, sides, window, raw, metric.features.label)
    return _assemble_one(metric, sides, window, raw)


def _assemble_one(metric: MetricSpec, sides: Sides, window: Window, raw: dict[Query, RawSeries]) -> MetricData:
    if metric.drift is not None and metric.drift.categorical:
        return _assemble_categories(metric, sides, window, raw)
    if metric.kind in ("latency", "drift"):
        histogram = _assemble_histogram(metric, sides, window, raw)
        _check_reference(metric, histogram)
        return histogram
    per_role: dict[tuple[str, str], FloatArray] = {}
    for query, series_list in raw.items():
        found: dict[str, list[FloatArray]] = {CANARY: [], BASELINE: []}
        for labels, samples in series_list:
            side = _series_side(query, labels, sides)
            if side is None:
                continue
            found[side].append(_per_look(samples, window, f"metric {metric.name} ({query.role}, {side})"))
        for side, arrays in found.items():
            if query.side not in (side, BOTH):
                continue
            if metric.kind == "custom" and len(arrays) > 1:
                raise MetricsError(
                    f"metric {metric.name}: the query returned {len(arrays)} series for the {side}; "
                    "aggregate it to one value per side (e.g. with sum or avg)",
                    ErrorKind.DATA,
                )
            if metric.kind == "custom":
                per_role[(query.role, side)] = arrays[0] if arrays else np.full(window.looks, math.nan)
            else:
                # A missing sample in a counter increase means nothing was counted then.
                stacked = np.nan_to_num(np.array(arrays), nan=0.0) if arrays else np.zeros((1, window.looks))
                summed = stacked.sum(axis=0)
                refuse_negative(metric, query.role, side, window, summed)
                per_role[(query.role, side)] = np.clip(summed, 0.0, None)
    if metric.kind == "custom":
        return ValueSeries(canary=per_role[("value", CANARY)], baseline=per_role[("value", BASELINE)])
    canary_events, canary_total = per_role[("errors", CANARY)], per_role[("total", CANARY)]
    baseline_events, baseline_total = per_role[("errors", BASELINE)], per_role[("total", BASELINE)]
    refuse_excess(metric, CANARY, window, canary_events, canary_total)
    refuse_excess(metric, BASELINE, window, baseline_events, baseline_total)
    # Bad events cannot outnumber all events; within the slack above, scrape skew can make them.
    return CountSeries(
        canary_events=np.minimum(canary_events, canary_total),
        canary_total=canary_total,
        baseline_events=np.minimum(baseline_events, baseline_total),
        baseline_total=baseline_total,
    )


# The buckets of a histogram answer with no bucket series on either side (no traffic yet): all zeros.
EMPTY_BOUNDS = (1.0,)


def _assemble_histogram(
    metric: MetricSpec, sides: Sides, window: Window, raw: dict[Query, RawSeries]
) -> HistogramSeries:
    # Per side: each bucket bound's series, to be summed (a missing sample counts nothing).
    by_side: dict[str, dict[float, list[list[tuple[float, float]]]]] = {CANARY: {}, BASELINE: {}}
    le_text: dict[float, str] = {}
    for query, series_list in raw.items():
        for labels, samples in series_list:
            side = _series_side(query, labels, sides)
            if side is None:
                continue
            if "le" not in labels:
                raise MetricsError(f"metric {metric.name}: a bucket series has no le label", ErrorKind.DATA)
            try:
                bound = float(labels["le"])
            except ValueError:
                raise MetricsError(
                    f"metric {metric.name}: bucket le={labels['le']!r} is not a number", ErrorKind.DATA
                ) from None
            by_side[side].setdefault(bound, []).append(samples)
            le_text.setdefault(bound, labels["le"])
    union = sorted(set(by_side[CANARY]) | set(by_side[BASELINE]))
    summed = {side: _summed(metric, side, by_side[side], union, le_text, window) for side in (CANARY, BASELINE)}
    canary_bounds, baseline_bounds = (
        {bound for bound, column in zip(union, np.any(summed[side][1], axis=0).tolist(), strict=True) if column}
        for side in (CANARY, BASELINE)
    )
    if not canary_bounds and not baseline_bounds:
        empty = np.zeros((window.looks, 2))
        unseen = np.zeros((window.looks, 2), dtype=bool)
        return HistogramSeries(bounds=EMPTY_BOUNDS, canary=empty, baseline=empty.copy(), seen=(unseen, unseen.copy()))
    present = [bounds for bounds in (canary_bounds, baseline_bounds) if bounds]
    if len(present) == 2 and canary_bounds != baseline_bounds:
        raise MetricsError(
            f"metric {metric.name}: canary and baseline histograms have different buckets "
            f"({sorted(canary_bounds - baseline_bounds)} vs {sorted(baseline_bounds - canary_bounds)}); "
            "both versions must use the same bucket boundaries",
            ErrorKind.DATA,
        )
    all_bounds = sorted(present[0])
    if all_bounds[-1] != math.inf:
        raise MetricsError(f'metric {metric.name}: no le="+Inf" bucket; is it a classic histogram?', ErrorKind.DATA)
    finite = tuple(all_bounds[:-1])
    if not finite:
        raise MetricsError(f"metric {metric.name}: the histogram has only the +Inf bucket", ErrorKind.DATA)
    kept = [union.index(bound) for bound in all_bounds]
    (canary, canary_seen), (baseline, baseline_seen) = summed[CANARY], summed[BASELINE]
    refuse_not_cumulative(metric, CANARY, window, tuple(all_bounds), canary[:, kept], le_text)
    refuse_not_cumulative(metric, BASELINE, window, tuple(all_bounds), baseline[:, kept], le_text)
    return HistogramSeries(
        bounds=finite,
        canary=per_bucket(canary[:, kept]),
        baseline=per_bucket(baseline[:, kept]),
        seen=(canary_seen[:, kept], baseline_seen[:, kept]),
    )


def _summed(
    metric: MetricSpec,
    side: str,
    series: dict[float, list[list[tuple[float, float]]]],
    bounds: list[float],
    le_text: dict[float, str],
    window: Window,
) -> tuple[FloatArray, BoolArray]:
    """One side's cumulative counts per look and bound, and where it had a sample of each bound (even NaN).

    Filled sample by sample: a step brings a few looks of a few dozen series, where per-column numpy calls
    cost more than the additions. A series counts for the bucket check only where it has a sample in the
    window, so the check over all the looks is the union of the looks' (what metrics/cache.py relies on)."""
    rows = [[0.0] * len(bounds) for _ in range(window.looks)]
    seen = [[False] * len(bounds) for _ in range(window.looks)]
    for column, bound in enumerate(bounds):
        for samples in series.get(bound, ()):
            for timestamp, value in samples:
                index = window.index(timestamp)
                if index is None:  # outside the window
                    continue
                seen[index][column] = True
                if value != value:  # NaN: nothing counted
                    continue
                if math.isinf(value):
                    where = f"metric {metric.name} ({side}, le={le_text[bound]})"
                    raise MetricsError(f"{where} returned {value} at {timestamp:.0f}; check the query", ErrorKind.DATA)
                rows[index][column] += value
    shape = (window.looks, len(bounds))
    return np.array(rows, dtype=float).reshape(shape), np.array(seen, dtype=bool).reshape(shape)


def joined_buckets_agree(bounds: tuple[float, ...], seen: tuple[BoolArray, BoolArray]) -> bool:
    """Would one answer over these looks have exactly these buckets (`bounds` and +Inf)?

    For rows of the same buckets fetched at different times: each side saw every bucket or none, and
    some side saw something (else the answer is the empty one); otherwise the answer over all the
    looks has other buckets, or fails."""
    sides = [np.any(side, axis=0) for side in seen]
    if not any(bool(side.any()) for side in sides):
        return bounds == EMPTY_BOUNDS  # nothing seen: all rows are zeros, as in the empty answer
    return all(bool(side.all()) or not side.any() for side in sides)


def _assemble_grouped(
    metric: MetricSpec, sides: Sides, window: Window, raw: dict[Query, RawSeries], label: str
) -> GroupedSeries:
    """One series per value of the feature label (the label removed), each assembled alone; a feature that
    features.only names but the answer lacks gets an empty series (it shows as no data, not as passing)."""
    by_group: dict[str, dict[Query, RawSeries]] = {}
    for query, series_list in raw.items():
        for labels, samples in series_list:
            group = labels.get(label)
            if group is None:
                if _series_side(query, labels, sides) is None:
                    continue
                raise MetricsError(
                    f"metric {metric.name}: a series has no {label} label; features.label must name a label "
                    "every series of the metric carries",
                    ErrorKind.DATA,
                )
            rest = {key: value for key, value in labels.items() if key != label}
            by_group.setdefault(group, {q: [] for q in raw})[query].append((rest, samples))
    assert metric.features is not None
    wanted = metric.features.only
    groups = tuple(sorted(by_group)) if wanted is None else tuple(wanted)
    members: list[FeatureData] = []
    for group in groups:
        try:
            member = _assemble_one(metric, sides, window, by_group.get(group, {q: [] for q in raw}))
        except MetricsError as error:  # the same refusal, saying which feature's data it is
            prefix = f"metric {metric.name}"
            message = str(error).replace(prefix, f"{prefix}, {label}={group}", 1)
            raise MetricsError(message, error.kind, error.at) from None
        assert isinstance(member, CountSeries | HistogramSeries | CategorySeries)
        members.append(member)
    return GroupedSeries(label, groups, tuple(members), window.looks)


def _assemble_categories(
    metric: MetricSpec, sides: Sides, window: Window, raw: dict[Query, RawSeries]
) -> CategorySeries:
    """Counts per look and category on each side; the categories are those either side counted (a category one
    side never saw is a column of zeros there)."""
    assert metric.drift is not None and metric.drift.category is not None
    category = metric.drift.category
    by_side: dict[str, dict[str, FloatArray]] = {CANARY: {}, BASELINE: {}}
    for query, series_list in raw.items():
        for labels, samples in series_list:
            side = _series_side(query, labels, sides)
            if side is None:
                continue
            if category not in labels:
                raise MetricsError(
                    f"metric {metric.name}: a series of {metric.drift.counter} has no {category} label; "
                    "drift.category must name the label that holds the category",
                    ErrorKind.DATA,
                )
            where = f"metric {metric.name} ({side}, {category}={labels[category]})"
            values = np.nan_to_num(_per_look(samples, window, where), nan=0.0)
            column = by_side[side].setdefault(labels[category], np.zeros(window.looks))
            column += values
    categories = tuple(sorted(set(by_side[CANARY]) | set(by_side[BASELINE])))
    arrays = []
    for side in (CANARY, BASELINE):
        table = np.array([by_side[side].get(name, np.zeros(window.looks)) for name in categories]).T
        table = table.reshape(window.looks, len(categories))
        for index, name in enumerate(categories):
            refuse_negative(metric, f"category {name}", side, window, table[:, index])
        arrays.append(np.clip(table, 0.0, None))
    return CategorySeries(categories, arrays[0], arrays[1])


def _check_reference(metric: MetricSpec, histogram: HistogramSeries) -> None:
    """A drift reference must be for the histogram's own buckets (an empty histogram has none yet)."""
    reference = metric.drift.reference if metric.drift is not None else None
    if reference is None or histogram.bounds == EMPTY_BOUNDS:
        return
    given = reference.bounds()
    if len(given) == len(histogram.bounds) and all(
        math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(given, histogram.bounds, strict=True)
    ):
        return
    wanted = ", ".join([*(f"{bound:g}" for bound in histogram.bounds), "+Inf"])
    raise MetricsError(
        f"metric {metric.name}: drift.reference.le ({', '.join(reference.le or [])}) are not the histogram's "
        f"buckets ({wanted}); give the reference's shares for the histogram's own bucket bounds",
        ErrorKind.DATA,
    )
