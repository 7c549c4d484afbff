"""Prediction drift from histograms: the sequential bucket-label test and PSI, Jensen-Shannon, Wasserstein or
Kolmogorov-Smirnov."""

from __future__ import annotations

import itertools
import math

import numpy as np

from robustness_gate.api import DriftEffect, MetricSpec, Reference
from robustness_gate.judge.parts import Part, combine, traffic
from robustness_gate.judge.results import JudgeSettings, MetricResult
from robustness_gate.judge.text import nan_none, num
from robustness_gate.series import CategorySeries, FloatArray, HistogramSeries
from robustness_gate.stats import drift, histograms

# A drift with PSI at drift.max is shown absent when PSI's upper bound at this confidence is below it;
# re-checked at every look on growing data, so stricter than 1 - PASS_BETA.
DRIFT_PASS_CONFIDENCE = 0.99
# The effects with a confidence bound; for the others the estimate itself must be below drift.max.
BOUNDED = (DriftEffect.PSI, DriftEffect.KOLMOGOROV_SMIRNOV)
# Names listed in a reason before "and N more".
MAX_NAMED = 5


def judge_drift(metric: MetricSpec, data: HistogramSeries | CategorySeries, settings: JudgeSettings) -> MetricResult:
    """A drift of a histogram's buckets or of a counter's categories: the same test, the effect over columns."""
    assert metric.drift is not None
    canary_counts, baseline_counts = data.canary.sum(axis=0), data.baseline.sum(axis=0)
    canary_total, baseline_total = float(canary_counts.sum()), float(baseline_counts.sum())
    effect_name = metric.drift.effect
    effect = _effect(effect_name, data, canary_counts, baseline_counts)
    log_e = (drift.robust_log_evalues if settings.robust else drift.binomial_log_evalues)(data.canary, data.baseline)
    max_log_e = float(np.max(log_e)) if len(log_e) else 0.0
    p_value = min(1.0, math.exp(-max_log_e))
    significant = max_log_e >= math.log(1 / settings.alpha)
    large = not math.isnan(effect) and effect >= metric.drift.max
    text = f"{effect_name.value} {num(effect)} (fails at {metric.drift.max:g}), same-distribution test p={p_value:.2g}"
    # A small estimate is not yet evidence: PSI's (or KS's) upper bound must be below drift.max too.
    upper = _upper_bound(effect_name, canary_counts, baseline_counts, effect)
    shown_small = not math.isnan(upper) and upper < metric.drift.max
    bound_text = f", upper bound {num(upper)}" if effect_name in BOUNDED else ""
    what = "category drift" if isinstance(data, CategorySeries) else "prediction drift"
    if isinstance(data, CategorySeries):
        unseen = [
            name for name, c, b in zip(data.categories, canary_counts, baseline_counts, strict=True) if c > 0 >= b
        ]
        if unseen:
            shown = ", ".join(unseen[:MAX_NAMED]) + (
                f" and {len(unseen) - MAX_NAMED} more" if len(unseen) > MAX_NAMED else ""
            )
            text += f"; categories the baseline never had: {shown}"
    against = _against_reference(metric.drift.reference, data, canary_counts, baseline_counts, effect_name)
    if against is not None:
        text += f"; from the reference: canary {effect_name.value} {num(against[0])}, baseline {num(against[1])}"
        both_far = all(not math.isnan(value) and value >= metric.drift.max for value in against)
        if both_far and not (significant and large):
            text += " (input drift, not a canary regression)"
    if significant and large:
        part = Part(True, False, f"{what}: {text}, shown at look {data.looks}", at=data.looks)
    elif large:
        part = Part(False, False, f"{text}: large but not yet significant")
    elif not shown_small:
        part = Part(False, False, f"{text}{bound_text}: not yet shown below {metric.drift.max:g}")
    elif significant:
        part = Part(False, True, f"{text}{bound_text}: a real but small shift")
    else:
        part = Part(False, True, f"{text}{bound_text}: no drift")
    traffic_ok, traffic_text = traffic(canary_total, baseline_total, settings, True)
    return combine(
        metric,
        [part],
        traffic_ok,
        traffic_text,
        f"{'category' if isinstance(data, CategorySeries) else 'bucket'} label test (sequential) + {effect_name.value}",
        data.looks,
        canary=_mean(data, canary_counts),
        baseline=_mean(data, baseline_counts),
        p_value=p_value,
        effect=nan_none(effect),
        canary_traffic=canary_total,
        baseline_traffic=baseline_total,
        reference_canary=nan_none(against[0]) if against else None,
        reference_baseline=nan_none(against[1]) if against else None,
    )


def _effect(
    effect_name: DriftEffect, data: HistogramSeries | CategorySeries, actual: FloatArray, expected: FloatArray
) -> float:
    if float(actual.sum()) <= 0 or float(expected.sum()) <= 0:
        return math.nan
    if effect_name is DriftEffect.PSI:
        return histograms.psi(actual, expected)
    if effect_name is DriftEffect.JENSEN_SHANNON:
        return histograms.jensen_shannon(actual, expected)
    assert isinstance(data, HistogramSeries)
    if effect_name is DriftEffect.KOLMOGOROV_SMIRNOV:
        return histograms.kolmogorov_smirnov(actual, expected)
    return histograms.wasserstein(data.bounds, actual, expected)


def _against_reference(
    reference: Reference | None,
    data: HistogramSeries | CategorySeries,
    canary: FloatArray,
    baseline: FloatArray,
    effect_name: DriftEffect,
) -> tuple[float, float] | None:
    """(canary, baseline) effect from the reference; None without one. Categories only the reference has count as
    columns the two sides never saw."""
    if reference is None:
        return None
    if isinstance(data, CategorySeries):
        assert reference.categories is not None
        extra = [name for name in reference.categories if name not in data.categories]
        names = [*data.categories, *extra]
        expected = np.array([reference.categories.get(name, 0.0) for name in names], dtype=float)
        canary, baseline = (np.concatenate([side, np.zeros(len(extra))]) for side in (canary, baseline))
    else:
        assert reference.shares is not None
        expected = np.asarray(reference.shares, dtype=float)
        if len(expected) != len(canary):
            return None  # the assembly refuses other buckets; an empty histogram has none yet
    return (_effect(effect_name, data, canary, expected), _effect(effect_name, data, baseline, expected))


def _upper_bound(effect_name: DriftEffect, canary: FloatArray, baseline: FloatArray, effect: float) -> float:
    if effect_name is DriftEffect.PSI:
        return histograms.psi_upper_bound(canary, baseline, DRIFT_PASS_CONFIDENCE)
    if effect_name is DriftEffect.KOLMOGOROV_SMIRNOV:
        return histograms.ks_upper_bound(canary, baseline, DRIFT_PASS_CONFIDENCE)
    return effect


def _mean(data: HistogramSeries | CategorySeries, counts: FloatArray) -> float | None:
    """A histogram's approximate mean (categories have none)."""
    if isinstance(data, CategorySeries) or float(counts.sum()) <= 0:
        return None
    return nan_none(float(np.dot(histograms.shares(counts), _midpoints(data.bounds))))


def _midpoints(bounds: tuple[float, ...]) -> FloatArray:
    """Bucket midpoints for an approximate mean (the +Inf bucket counts at the top bound)."""
    edges = [min(0.0, bounds[0]), *bounds]
    mids = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    return np.array([*mids, bounds[-1]])
