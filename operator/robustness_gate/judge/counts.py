"""Error rates and ratios: the SLO's confidence sequence and the sequential rate-ratio test."""

from __future__ import annotations

import math

import numpy as np

from robustness_gate.api import CompareTest, MetricSpec
from robustness_gate.judge.parts import (
    Part,
    bounds_agree,
    combine,
    kayenta_compare,
    null_ratio,
    shown_safe,
    slo_evidence,
    traffic,
)
from robustness_gate.judge.results import JudgeSettings, MetricResult
from robustness_gate.judge.text import num, pct
from robustness_gate.series import CountSeries, FloatArray
from robustness_gate.stats import counts, robust


def _rate_slo(
    events: FloatArray, trials: FloatArray, bound: float, alpha: float, what: str, robust_tests: bool
) -> tuple[Part, counts.RateBounds]:
    above, below, rates = slo_evidence(events, trials, bound, alpha, robust_tests)
    rates = bounds_agree(rates, bound, above, below)
    interval = f"{pct(rates.estimate)} [{pct(rates.lower)}, {pct(rates.upper)}]"
    if bool(np.any(above)):
        look = int(np.flatnonzero(above)[0]) + 1
        text = f"{what} {interval} is above the SLO {pct(bound)} (shown at look {look})"
        return Part(True, False, text, at=look), rates
    if len(below) and bool(below[-1]):
        return Part(False, True, f"{what} {interval} is within the SLO {pct(bound)}"), rates
    return Part(False, False, f"{what} {interval} not yet confirmed within the SLO {pct(bound)}"), rates


def _ratio_compare(
    canary_events: FloatArray,
    canary_total: FloatArray,
    baseline_events: FloatArray,
    baseline_total: FloatArray,
    metric: MetricSpec,
    alpha: float,
    what: str,
    robust_tests: bool,
) -> tuple[Part, counts.RatioEvidence, float, tuple[float, float]]:
    increase, r0 = null_ratio(metric)
    tests = robust if robust_tests else counts
    evidence = tests.ratio_log_evalues(canary_events, canary_total, baseline_events, baseline_total, r0, increase)
    estimate = counts.rate_ratio_estimate(
        float(canary_events.sum()),
        float(canary_total.sum()),
        float(baseline_events.sum()),
        float(baseline_total.sum()),
    )
    # One-sided at alpha each, so a bound lies beyond r0 exactly when the last look rejects r0.
    bounds_of = robust.ratio_confidence_bounds if robust_tests else counts.ratio_confidence_bounds
    bounds = bounds_of(canary_events, canary_total, baseline_events, baseline_total, 2.0 * alpha)
    if len(evidence.log_evalues) and evidence.log_evalues[-1] >= math.log(1.0 / alpha):
        bounds = (max(bounds[0], r0), bounds[1]) if increase else (bounds[0], min(bounds[1], r0))
    relation = ">" if increase else "<"
    text = (
        f"{what} ratio canary/baseline {num(estimate)} [{num(bounds[0])}, {num(bounds[1])}], "
        f"p={evidence.p_value:.2g} for ratio {relation} {r0:g}"
    )
    if evidence.rejected(alpha):
        look = evidence.first_rejection(alpha)
        assert look is not None
        return Part(True, False, f"{text}: harm shown at look {look + 1}", at=look + 1), evidence, estimate, bounds
    safe = shown_safe(canary_events, canary_total, baseline_events, baseline_total, r0, increase, robust_tests)
    return Part(False, safe.confirmed, f"{text}: {safe.text}"), evidence, estimate, bounds


def judge_counts(metric: MetricSpec, data: CountSeries, settings: JudgeSettings) -> MetricResult:
    what = "error rate" if metric.kind == "errorRate" else "ratio"
    canary_events, canary_total = float(data.canary_events.sum()), float(data.canary_total.sum())
    baseline_events, baseline_total = float(data.baseline_events.sum()), float(data.baseline_total.sum())
    canary_rate = canary_events / canary_total if canary_total > 0 else None
    baseline_rate = baseline_events / baseline_total if baseline_total > 0 else None
    parts: list[Part] = []
    numbers: dict[str, float | bool | None] = {
        "canary": canary_rate,
        "baseline": baseline_rate,
        "canary_traffic": canary_total,
        "baseline_traffic": baseline_total,
    }
    tests = []
    if metric.slo is not None and metric.slo.max is not None:
        part, rates = _rate_slo(
            data.canary_events, data.canary_total, metric.slo.max, settings.alpha, f"canary {what}", settings.robust
        )
        parts.append(part)
        numbers.update(lower=rates.lower, upper=rates.upper, slo_met=part.confirmed if not part.fail else False)
        tests.append("rate vs SLO (confidence sequence)")
    if metric.compare is not None:
        if metric.compare.test is CompareTest.MANN_WHITNEY:
            canary_series = _per_look_rate(data.canary_events, data.canary_total)
            baseline_series = _per_look_rate(data.baseline_events, data.baseline_total)
            part, effect = kayenta_compare(canary_series, baseline_series, metric, what)
            numbers.update(effect=effect)
            tests.append("Mann-Whitney per look (Kayenta)")
        else:
            part, evidence, estimate, bounds = _ratio_compare(
                data.canary_events,
                data.canary_total,
                data.baseline_events,
                data.baseline_total,
                metric,
                settings.alpha,
                what,
                settings.robust,
            )
            numbers.update(p_value=evidence.p_value, effect=estimate)
            if metric.slo is None:
                numbers.update(lower=bounds[0], upper=bounds[1])
            tests.append("rate ratio (sequential)")
        parts.append(part)
    traffic_ok, traffic_text = traffic(canary_total, baseline_total, settings, metric.compare is not None)
    return combine(metric, parts, traffic_ok, traffic_text, " + ".join(tests), data.looks, **numbers)


def _per_look_rate(events: FloatArray, total: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, events / np.where(total > 0, total, 1.0), math.nan)
