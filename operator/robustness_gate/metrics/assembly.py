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
from robustness_gate.metrics.source import (
    BUCKET_DROP_SHARE,
    COUNT_SLACK,
    EVENT_EXCESS_FACTOR,
    NEGATIVE_TOLERANCE,
    REFUSED,
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
    _refuse_shared_series(metric, sides, window, raw)
    _refuse_overlap(metric, sides, window, raw)
    raw = {query: series for query, series in raw.items() if query.side != OVERLAP}
    if metric.features is not None:
        return _assemble_grouped(metric, sides, window, raw, metric.features.label)
    return _assemble_one(metric, sides, window, raw)


def _assemble_one(metric: MetricSpec, sides: Sides, window: Window, raw: dict[Query, RawSeries]) -> MetricData:
    if metric.drift is not None and metric.drift.categorical:
        return _assemble_categories(metric, sides, window, raw)
    if metric.kind in ("latency", "drift"):
        return _assemble_histogram(metric, sides, window, raw)
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
                _refuse_negative(metric, query.role, side, window, summed)
                per_role[(query.role, side)] = np.clip(summed, 0.0, None)
    if metric.kind == "custom":
        return ValueSeries(canary=per_role[("value", CANARY)], baseline=per_role[("value", BASELINE)])
    canary_events, canary_total = per_role[("errors", CANARY)], per_role[("total", CANARY)]
    baseline_events, baseline_total = per_role[("errors", BASELINE)], per_role[("total", BASELINE)]
    _refuse_excess(metric, CANARY, window, canary_events, canary_total)
    _refuse_excess(metric, BASELINE, window, baseline_events, baseline_total)
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
    _refuse_not_cumulative(metric, CANARY, window, tuple(all_bounds), canary[:, kept], le_text)
    _refuse_not_cumulative(metric, BASELINE, window, tuple(all_bounds), baseline[:, kept], le_text)
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


def _look_time(window: Window, index: int) -> float:
    return window.start + (index + 1) * window.step


def _refuse_negative(metric: MetricSpec, role: str, side: str, window: Window, values: FloatArray) -> None:
    bad = np.flatnonzero(values < -NEGATIVE_TOLERANCE)
    if bad.size:
        look = int(bad[0])
        part = role if metric.kind == "errorRate" else {"errors": "numerator", "total": "denominator"}[role]
        raise MetricsError(
            f"metric {metric.name}: the {side}'s {part} query counted {values[look]:.6g} at look {look + 1}; counts "
            "cannot be negative: count with increase() of a counter, not delta() or a difference of gauges",
            REFUSED,
            _look_time(window, look),
        )


def _refuse_excess(metric: MetricSpec, side: str, window: Window, events: FloatArray, total: FloatArray) -> None:
    """Bad events far above all events in a look: the numerator and denominator are swapped or unrelated."""
    bad = np.flatnonzero(events > EVENT_EXCESS_FACTOR * total + COUNT_SLACK)
    if bad.size:
        look = int(bad[0])
        numerator, denominator = ("errors", "total") if metric.kind == "errorRate" else ("numerator", "denominator")
        raise MetricsError(
            f"metric {metric.name}: the {side} counted {events[look]:.6g} {numerator} but only {total[look]:.6g} "
            f"{denominator} at look {look + 1}; the {numerator} must count a subset of the {denominator}: check "
            "that the two queries are not swapped and select the same requests",
            REFUSED,
            _look_time(window, look),
        )


def _refuse_not_cumulative(
    metric: MetricSpec,
    side: str,
    window: Window,
    bounds: tuple[float, ...],
    cumulative: FloatArray,
    le_text: dict[float, str],
) -> None:
    """A bucket that counts clearly fewer observations than the bucket below it: not `le` buckets."""
    if cumulative.shape[1] < 2 or cumulative.shape[0] == 0:
        return
    drops = cumulative[:, :-1] - cumulative[:, 1:]  # how much each bucket counts less than the next one up
    allowed = np.maximum(COUNT_SLACK, BUCKET_DROP_SHARE * cumulative[:, -1:])
    bad = np.argwhere(drops > allowed)
    if bad.size:
        look, column = int(bad[0][0]), int(bad[0][1])
        lower, upper = le_text[bounds[column]], le_text[bounds[column + 1]]
        raise MetricsError(
            f"metric {metric.name}: the {side}'s bucket le={lower} counted {cumulative[look, column]:.6g} but "
            f"le={upper} only {cumulative[look, column + 1]:.6g} at look {look + 1}; histogram buckets must be "
            "cumulative (each counts the observations at or below its bound): query a classic histogram's "
            "_bucket series, not per-bucket counts",
            REFUSED,
            _look_time(window, look),
        )


def _refuse_overlap(metric: MetricSpec, sides: Sides, window: Window, raw: dict[Query, RawSeries]) -> None:
    """Anything counted by the series both selectors match (the OVERLAP query): those requests would be on
    both sides. Also found where the metric's own queries aggregate the telling labels away."""
    for query, series_list in raw.items():
        if query.side != OVERLAP:
            continue
        for _, samples in series_list:
            # Custom values are not counts: any value at all is a series of both sides.
            looks = [(i, value) for i, value in ((window.index(t), v) for t, v in samples) if i is not None]
            counted = (lambda v: not math.isnan(v)) if query.role == "value" else (lambda v: v > COUNT_SLACK)
            shown = [(i, value) for i, value in looks if counted(value)]
            if not shown:
                continue
            look, value = min(shown)
            both = ",".join(matcher.render() for matcher in dict.fromkeys((*sides.canary, *sides.baseline)))
            raise MetricsError(
                f"metric {metric.name}: series that both the canary and the baseline selector match ({{{both}}}) "
                f"counted {value:.6g} ({query.role}) at look {look + 1}; give each side a label value the other "
                "cannot match",
                REFUSED,
                _look_time(window, look),
            )


def _refuse_shared_series(metric: MetricSpec, sides: Sides, window: Window, raw: dict[Query, RawSeries]) -> None:
    """A series that both sides' selectors match: the canary would be compared with itself. Only series that
    still carry every label the selectors name can show it (aggregation may have removed them)."""
    if sides.disjoint():  # the usual case, checked once per Sides: no series to look through
        return
    matchers = (*sides.canary, *sides.baseline)
    for query, series_list in raw.items():
        for labels, samples in series_list:
            if not all(matcher.name in labels and matcher.matches(labels[matcher.name]) for matcher in matchers):
                continue
            indices = sorted(i for i in (window.index(t) for t, _ in samples) if i is not None)
            if not indices:
                continue
            shown = ",".join(f'{name}="{value}"' for name, value in sorted(labels.items()))
            raise MetricsError(
                f"metric {metric.name}: the series {{{shown}}} matches both the canary and the baseline selector "
                f"({query.role}); give each side a label value the other cannot match",
                REFUSED,
                _look_time(window, indices[0]),
            )


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
            _refuse_negative(metric, f"category {name}", side, window, table[:, index])
        arrays.append(np.clip(table, 0.0, None))
    return CategorySeries(categories, arrays[0], arrays[1])
