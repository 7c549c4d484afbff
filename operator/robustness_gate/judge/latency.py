"""Latency from histograms: the share of requests slower than the SLO, and slow-request ratios per bucket."""

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
from robustness_gate.judge.text import bound_text, nan_none, num, pct, quantile_name
from robustness_gate.series import FloatArray, HistogramSeries
from robustness_gate.stats import counts, histograms, robust

DEFAULT_LATENCY_QUANTILE = 0.99


def judge_latency(metric: MetricSpec, data: HistogramSeries, settings: JudgeSettings) -> MetricResult:
    quantile = metric.slo.quantile if metric.slo is not None and metric.slo.quantile else DEFAULT_LATENCY_QUANTILE
    canary_counts, baseline_counts = data.canary.sum(axis=0), data.baseline.sum(axis=0)
    canary_total, baseline_total = float(canary_counts.sum()), float(baseline_counts.sum())
    numbers: dict[str, float | bool | None] = {
        "canary": nan_none(histograms.interpolated_quantile(data.bounds, canary_counts, quantile)),
        "baseline": nan_none(histograms.interpolated_quantile(data.bounds, baseline_counts, quantile)),
        "canary_traffic": canary_total,
        "baseline_traffic": baseline_total,
    }
    parts: list[Part] = []
    tests = []
    q_text = f"p{quantile_name(quantile)}"
    if metric.slo is not None and metric.slo.max is not None:
        part, rates = _latency_slo(data, metric.slo.max, quantile, settings.alpha, q_text, settings.robust)
        parts.append(part)
        numbers.update(slo_met=part.confirmed if not part.fail else False)
        if rates is not None:
            numbers.update(lower=rates.lower, upper=rates.upper)
        tests.append("share above SLO bucket (confidence sequence)")
    if metric.compare is not None:
        if metric.compare.test is CompareTest.MANN_WHITNEY:
            canary_series = np.array(
                [histograms.interpolated_quantile(data.bounds, row, quantile) for row in data.canary]
            )
            baseline_series = np.array(
                [histograms.interpolated_quantile(data.bounds, row, quantile) for row in data.baseline]
            )
            part, effect = kayenta_compare(canary_series, baseline_series, metric, f"{q_text} per look")
            numbers.update(effect=effect)
            tests.append("Mann-Whitney per look (Kayenta)")
        else:
            part, p_value, effect = _latency_compare(data, metric, settings.alpha, quantile, settings.robust)
            numbers.update(p_value=p_value, effect=effect)
            tests.append("slow-request ratio per bucket (sequential)")
        parts.append(part)
    traffic_ok, traffic_text = traffic(canary_total, baseline_total, settings, metric.compare is not None)
    return combine(metric, parts, traffic_ok, traffic_text, " + ".join(tests), data.looks, **numbers)


def _latency_slo(
    data: HistogramSeries, threshold: float, quantile: float, alpha: float, q_text: str, robust_tests: bool
) -> tuple[Part, counts.RateBounds | None]:
    """p_q <= T  ⇔  the share of requests slower than T is at most 1 - q: a binomial question."""
    budget = 1 - quantile
    match = histograms.locate_threshold(data.bounds, threshold)
    hint = ""
    if match.exact is None:
        hint = (
            f" (no bucket boundary at {threshold:g}s: add one for an exact check; using "
            f"{bound_text(data.bounds, match.below)} to confirm and {bound_text(data.bounds, match.above)}"
            " to reject)"
        )
    total_per_look = data.canary.sum(axis=1)

    def slow_per_look(index: int) -> FloatArray:
        return np.asarray(data.canary[:, index + 1 :].sum(axis=1), dtype=float)

    violated_at: int | None = None
    if match.above is not None:
        above, _, _ = slo_evidence(slow_per_look(match.above), total_per_look, budget, alpha, robust_tests)
        if bool(np.any(above)):
            violated_at = int(np.flatnonzero(above)[0]) + 1
    rates: counts.RateBounds | None = None
    confirmed = False
    index = match.above if violated_at is not None else match.below
    if index is not None:
        above, below, rates = slo_evidence(slow_per_look(index), total_per_look, budget, alpha, robust_tests)
        rates = bounds_agree(rates, budget, above, below)
        if violated_at is None and match.below is not None:
            confirmed = bool(below[-1]) if len(below) else False
    share = (
        f"share slower than {threshold:g}s {pct(rates.estimate)} [{pct(rates.lower)}, {pct(rates.upper)}]"
        if rates is not None
        else f"share slower than {threshold:g}s unknown"
    )
    objective = f"{q_text} < {threshold:g}s needs at most {pct(budget)}"
    if violated_at is not None:
        text = f"canary {share}: {objective}, violated at look {violated_at}{hint}"
        return Part(True, False, text, at=violated_at), rates
    if confirmed:
        return Part(False, True, f"canary {share}: {objective}, met{hint}"), rates
    return Part(False, False, f"canary {share}: {objective}, not yet confirmed{hint}"), rates


def _latency_compare(
    data: HistogramSeries, metric: MetricSpec, alpha: float, quantile: float, robust_tests: bool
) -> tuple[Part, float, float]:
    """Slow-request ratio at every finite bucket boundary, Bonferroni over boundaries."""
    increase, r0 = null_ratio(metric)
    boundaries = len(data.bounds)
    alpha_each = alpha / max(1, boundaries)
    canary_total, baseline_total = data.canary.sum(axis=1), data.baseline.sum(axis=1)
    # With no evidence anywhere, report the boundary at the baseline's quantile: the one users read.
    baseline_q = histograms.interpolated_quantile(data.bounds, data.baseline.sum(axis=0), quantile)
    reported = next((i for i, b in enumerate(data.bounds) if b >= baseline_q), boundaries - 1)
    best: tuple[float, int, counts.RatioEvidence] | None = None
    canary_slow, baseline_slow = _slower_than_each_boundary(data.canary), _slower_than_each_boundary(data.baseline)
    tests = robust if robust_tests else counts
    log_e = tests.ratio_log_evalue_columns(canary_slow, canary_total, baseline_slow, baseline_total, r0, increase)
    for index in range(boundaries):
        evidence = counts.RatioEvidence(log_evalues=log_e[:, index], r0=r0, increase=increase)
        stronger = best is None or evidence.max_log_evalue > best[0]
        tie_at_reported = best is not None and evidence.max_log_evalue == best[0] and index == reported
        if stronger or tie_at_reported:
            best = (evidence.max_log_evalue, index, evidence)
    if best is None:
        return Part(False, False, "no finite buckets to compare"), 1.0, math.nan
    _, index, evidence = best
    bound = data.bounds[index]
    canary_slow_share = _share(data.canary, index)
    baseline_slow_share = _share(data.baseline, index)
    ratio = counts.rate_ratio_estimate(
        canary_slow_share[0], canary_slow_share[1], baseline_slow_share[0], baseline_slow_share[1]
    )
    p_value = min(1.0, evidence.p_value * boundaries)
    relation = ">" if increase else "<"
    text = (
        f"requests slower than {bound:g}s: canary {pct(_ratio(canary_slow_share))} vs baseline "
        f"{pct(_ratio(baseline_slow_share))} (ratio {num(ratio)}, p={p_value:.2g} for ratio {relation} {r0:g})"
    )
    if evidence.rejected(alpha_each):
        # The first look at which any boundary showed it (the boundary reported is the strongest by now).
        look = int(np.flatnonzero(np.any(log_e >= math.log(1.0 / alpha_each), axis=1))[0]) + 1
        return Part(True, False, f"{text}: canary slower, shown at look {look}", at=look), p_value, ratio
    # Passing needs evidence in the tail users read: at the last boundary at or below the baseline's quantile,
    # where at least 1 - q of the baseline's requests are slower (the one above may see no slow request at all).
    at_or_below = [i for i, b in enumerate(data.bounds) if b <= baseline_q]
    tail = at_or_below[-1] if at_or_below else 0
    safe = shown_safe(
        canary_slow[:, tail], canary_total, baseline_slow[:, tail], baseline_total, r0, increase, robust_tests
    )
    safe_text = safe.text.replace("harm", "a slowdown")
    if tail != index:
        safe_text += f" (requests slower than {data.bounds[tail]:g}s)"
    return Part(False, safe.confirmed, f"{text}: {safe_text}"), p_value, ratio


def _slower_than_each_boundary(counts_per_look: FloatArray) -> FloatArray:
    """Per look and finite boundary b: observations above b (all later buckets, +Inf included)."""
    above = np.cumsum(counts_per_look[:, ::-1], axis=1)[:, ::-1]
    return np.asarray(above[:, 1:], dtype=float)


def _share(counts_per_look: FloatArray, index: int) -> tuple[float, float]:
    return histograms.share_above(counts_per_look.sum(axis=0), index)


def _ratio(pair: tuple[float, float]) -> float:
    return pair[0] / pair[1] if pair[1] > 0 else math.nan
