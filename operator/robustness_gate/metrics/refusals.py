"""PURE: what makes an answer refused rather than judged: counts below zero, bad events above all events,
buckets that are not cumulative, and series both sides' selectors match (each message names the metric, the
side and the first look that shows it)."""

from __future__ import annotations

import math

import numpy as np

from robustness_gate.api import MetricSpec
from robustness_gate.metrics.queries import OVERLAP, Query
from robustness_gate.metrics.source import (
    BUCKET_DROP_SHARE,
    COUNT_SLACK,
    EVENT_EXCESS_FACTOR,
    NEGATIVE_TOLERANCE,
    REFUSED,
    MetricsError,
    RawSeries,
    Window,
)
from robustness_gate.metrics.templates import Sides
from robustness_gate.series import FloatArray


def look_time(window: Window, index: int) -> float:
    return window.start + (index + 1) * window.step


def refuse_negative(metric: MetricSpec, role: str, side: str, window: Window, values: FloatArray) -> None:
    bad = np.flatnonzero(values < -NEGATIVE_TOLERANCE)
    if bad.size:
        look = int(bad[0])
        part = role if metric.kind == "errorRate" else {"errors": "numerator", "total": "denominator"}[role]
        raise MetricsError(
            f"metric {metric.name}: the {side}'s {part} query counted {values[look]:.6g} at look {look + 1}; counts "
            "cannot be negative: count with increase() of a counter, not delta() or a difference of gauges",
            REFUSED,
            look_time(window, look),
        )


def refuse_excess(metric: MetricSpec, side: str, window: Window, events: FloatArray, total: FloatArray) -> None:
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
            look_time(window, look),
        )


def refuse_not_cumulative(
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
            look_time(window, look),
        )


def refuse_overlap(metric: MetricSpec, sides: Sides, window: Window, raw: dict[Query, RawSeries]) -> None:
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
                look_time(window, look),
            )


def refuse_shared_series(metric: MetricSpec, sides: Sides, window: Window, raw: dict[Query, RawSeries]) -> None:
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
                look_time(window, indices[0]),
            )
