"""Prediction drift from histograms: the sequential bucket-label test and PSI, Jensen-Shannon or Wasserstein."""

from __future__ import annotations

import itertools
import math

import numpy as np

from robustness_gate.api import DriftEffect, MetricSpec
from robustness_gate.judge.parts import Part, combine, traffic
from robustness_gate.judge.results import JudgeSettings, MetricResult
from robustness_gate.judge.text import nan_none, num
from robustness_gate.series import FloatArray, HistogramSeries
from robustness_gate.stats import histograms

# A drift with PSI at drift.max is shown absent when PSI's upper bound at this confidence is below it;
# re-checked at every look on growing data, so stricter than 1 - PASS_BETA.
DRIFT_PASS_CONFIDENCE = 0.99


def judge_drift(metric: MetricSpec, data: HistogramSeries, settings: JudgeSettings) -> MetricResult:
    assert metric.drift is not None
    canary_counts, baseline_counts = data.canary.sum(axis=0), data.baseline.sum(axis=0)
    canary_total, baseline_total = float(canary_counts.sum()), float(baseline_counts.sum())
    effect_name = metric.drift.effect
    if canary_total > 0 and baseline_total > 0:
        if effect_name is DriftEffect.PSI:
            effect = histograms.psi(canary_counts, baseline_counts)
        elif effect_name is DriftEffect.JENSEN_SHANNON:
            effect = histograms.jensen_shannon(canary_counts, baseline_counts)
        else:
            effect = histograms.wasserstein(data.bounds, canary_counts, baseline_counts)
    else:
        effect = math.nan
    log_e = histograms.drift_log_evalues(data.canary, data.baseline)
    max_log_e = float(np.max(log_e)) if len(log_e) else 0.0
    p_value = min(1.0, math.exp(-max_log_e))
    significant = max_log_e >= math.log(1 / settings.alpha)
    large = not math.isnan(effect) and effect >= metric.drift.max
    text = f"{effect_name.value} {num(effect)} (fails at {metric.drift.max:g}), same-distribution test p={p_value:.2g}"
    # A small estimate is not yet evidence: PSI's upper bound must be below drift.max too.
    upper = (
        histograms.psi_upper_bound(canary_counts, baseline_counts, DRIFT_PASS_CONFIDENCE)
        if effect_name is DriftEffect.PSI
        else effect
    )
    shown_small = not math.isnan(upper) and upper < metric.drift.max
    bound_text = f", upper bound {num(upper)}" if effect_name is DriftEffect.PSI else ""
    if significant and large:
        part = Part(True, False, f"prediction drift: {text}, shown at look {data.looks}", at=data.looks)
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
        f"bucket label test (sequential) + {effect_name.value}",
        data.looks,
        canary=nan_none(float(np.dot(histograms.shares(canary_counts), _midpoints(data.bounds))))
        if canary_total > 0
        else None,
        baseline=nan_none(float(np.dot(histograms.shares(baseline_counts), _midpoints(data.bounds))))
        if baseline_total > 0
        else None,
        p_value=p_value,
        effect=nan_none(effect),
        canary_traffic=canary_total,
        baseline_traffic=baseline_total,
    )


def _midpoints(bounds: tuple[float, ...]) -> FloatArray:
    """Bucket midpoints for an approximate mean (the +Inf bucket counts at the top bound)."""
    edges = [min(0.0, bounds[0]), *bounds]
    mids = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    return np.array([*mids, bounds[-1]])
