"""PURE: per-look metric data + a metric's spec → a verdict with its numbers and a one-line reason.

Every metric ends Pass, Marginal (enough data, not yet confirmed), Fail (harm shown with the
gate's false-rollback budget) or NoData (too little traffic: "not yet", never a failure).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from robustness_gate.api import (
    CompareTest,
    Direction,
    DriftEffect,
    MetricSpec,
    MetricStatus,
    RobustnessGateSpec,
    Verdict,
)
from robustness_gate.series import (
    BoolArray,
    CountSeries,
    FloatArray,
    HistogramSeries,
    MetricData,
    ValueSeries,
    first_looks,
)
from robustness_gate.stats import counts, histograms, kayenta, robust

DEFAULT_LATENCY_QUANTILE = 0.99
# A comparison passes only on evidence, not on the mere absence of harm: the canary must be shown to
# be less than PASS_FACTOR times worse than the tolerated ratio, with an e-value of 1 / PASS_BETA.
# Without it the gate keeps looking, so a regression too small to show by minDuration still has
# until maxDuration to show; a canary about PASS_FACTOR times worse is promoted early at most PASS_BETA
# of the time. With 10/90 req/s and 1% errors a healthy canary passes after a median of 4 minutes.
PASS_FACTOR = 1.5
PASS_BETA = 0.1
# A drift with PSI at drift.max is shown absent when PSI's upper bound at this confidence is below it;
# re-checked at every look on growing data, so stricter than 1 - PASS_BETA.
DRIFT_PASS_CONFIDENCE = 0.99


@dataclass(frozen=True)
class MetricResult:
    name: str
    kind: str
    verdict: Verdict
    test: str
    message: str
    canary: float | None = None
    baseline: float | None = None
    lower: float | None = None
    upper: float | None = None
    p_value: float | None = None
    effect: float | None = None
    slo_met: bool | None = None
    canary_traffic: float | None = None
    baseline_traffic: float | None = None
    weight: float = 1.0
    critical: bool = False
    dry_run: bool = False
    look: int | None = None  # the look whose data gave every number here: the first that showed a failure

    def to_status(self) -> MetricStatus:
        return MetricStatus(
            name=self.name,
            verdict=self.verdict,
            canary=_finite(self.canary),
            baseline=_finite(self.baseline),
            lower=_finite(self.lower),
            upper=_finite(self.upper),
            p_value=_finite(self.p_value),
            effect=_finite(self.effect),
            slo_met=self.slo_met,
            dry_run=self.dry_run,
            look=self.look,
            message=self.message,
        )


@dataclass(frozen=True)
class GateVerdict:
    verdict: Verdict
    score: float
    reason: str
    metrics: list[MetricResult] = field(default_factory=list)


@dataclass(frozen=True)
class JudgeSettings:
    alpha: float  # false-rollback budget of ONE test (the gate's budget split across its tests)
    min_canary: float
    min_baseline: float
    # Count tests robust to overdispersed and bursty counts (stats.robust); False: the binomial model alone.
    robust: bool = True


def budgeted_tests(metric: MetricSpec) -> int:
    """How many tests of this metric can roll back, each getting a share of the gate's budget."""
    if metric.dry_run:
        return 0
    if metric.kind == "drift":
        return 1
    if metric.kind == "custom":
        return 0  # plain thresholds and Kayenta's fixed 98% interval do not spend our budget
    sequential = metric.compare is not None and metric.compare.test is CompareTest.SEQUENTIAL
    return int(metric.slo is not None) + int(sequential)


def settings_for(spec: RobustnessGateSpec, robust: bool = True) -> JudgeSettings:
    budget = max(1, sum(budgeted_tests(metric) for metric in spec.metrics))
    return JudgeSettings(
        alpha=spec.analysis.false_positive_rate / budget,
        min_canary=spec.analysis.min_traffic.canary,
        min_baseline=spec.analysis.min_traffic.baseline,
        robust=robust,
    )


# ---------------------------------------------------------------- one metric


def judge_metric(metric: MetricSpec, data: MetricData, settings: JudgeSettings) -> MetricResult:
    """The metric's verdict now. A failure shown at an earlier look is reported with that look's numbers: the
    estimate, bounds, p-value and effect of the look that showed it, judged on the data up to that look."""
    result = _judge_metric_now(metric, data, settings)
    if result.verdict is Verdict.FAIL and result.look is not None and result.look < data.looks:
        earlier = _judge_metric_now(metric, first_looks(data, result.look), settings)
        if earlier.verdict is Verdict.FAIL:
            result = earlier
    return result


def _judge_metric_now(metric: MetricSpec, data: MetricData, settings: JudgeSettings) -> MetricResult:
    if metric.kind in ("errorRate", "ratio"):
        if not isinstance(data, CountSeries):
            raise TypeError(f"metric {metric.name}: expected counts, got {type(data).__name__}")
        result = _judge_counts(metric, data, settings)
    elif metric.kind == "latency":
        if not isinstance(data, HistogramSeries):
            raise TypeError(f"metric {metric.name}: expected a histogram, got {type(data).__name__}")
        result = _judge_latency(metric, data, settings)
    elif metric.kind == "drift":
        if not isinstance(data, HistogramSeries):
            raise TypeError(f"metric {metric.name}: expected a histogram, got {type(data).__name__}")
        result = _judge_drift(metric, data, settings)
    else:
        if not isinstance(data, ValueSeries):
            raise TypeError(f"metric {metric.name}: expected values, got {type(data).__name__}")
        result = _judge_custom(metric, data)
    return MetricResult(
        **{**result.__dict__, "weight": metric.weight, "critical": metric.critical, "dry_run": metric.dry_run}
    )


@dataclass(frozen=True)
class _Part:
    """The outcome of one check inside a metric."""

    fail: bool
    confirmed: bool  # enough evidence that this check is fine
    text: str
    at: int | None = None  # a failure: the first look (1-based) that showed it


def _combine(
    metric: MetricSpec,
    parts: list[_Part],
    traffic_ok: bool,
    traffic_text: str,
    test: str,
    looks: int,
    **numbers: float | bool | None,
) -> MetricResult:
    failed = [part for part in parts if part.fail]
    look = looks
    if failed:
        verdict, message = Verdict.FAIL, "; ".join(part.text for part in failed)
        look = min((part.at for part in failed if part.at is not None), default=looks)
    elif not traffic_ok:
        verdict, message = Verdict.NO_DATA, traffic_text
    elif all(part.confirmed for part in parts):
        verdict, message = Verdict.PASS, "; ".join(part.text for part in parts)
    else:
        verdict = Verdict.MARGINAL
        message = "; ".join(part.text for part in parts if not part.confirmed)
    return MetricResult(
        name=metric.name,
        kind=metric.kind,
        verdict=verdict,
        test=test,
        message=message,
        look=look,
        **numbers,  # type: ignore[arg-type]
    )


def _traffic(canary: float, baseline: float, settings: JudgeSettings, needs_baseline: bool) -> tuple[bool, str]:
    short = []
    if canary < settings.min_canary:
        short.append(f"canary {canary:.0f} of {settings.min_canary:.0f}")
    if needs_baseline and baseline < settings.min_baseline:
        short.append(f"baseline {baseline:.0f} of {settings.min_baseline:.0f}")
    return not short, "not enough traffic yet: " + ", ".join(short) if short else ""


def _slo_evidence(
    events: FloatArray, trials: FloatArray, bound: float, alpha: float, robust_tests: bool
) -> tuple[BoolArray, BoolArray, counts.RateBounds]:
    """Per look: is the rate shown above `bound`, and below it; and the interval to show now.

    The robust interval inverts the same one-sided tests at alpha each, so it lies above (below) the bound
    exactly when the last look shows the rate above (below) it."""
    if robust_tests:
        threshold = math.log(1.0 / alpha)
        above = robust.rate_log_evalues(events, trials, bound, high=True) >= threshold
        below = robust.rate_log_evalues(events, trials, bound, high=False) >= threshold
        return above, below, robust.rate_confidence_bounds(events, trials, 2.0 * alpha)
    cumulative_events, cumulative_trials = np.cumsum(events), np.cumsum(trials)
    above, below = counts.bound_crossings(cumulative_events, cumulative_trials, bound, alpha)
    rates = counts.binomial_confidence_sequence(
        float(cumulative_events[-1]) if len(events) else 0.0,
        float(cumulative_trials[-1]) if len(trials) else 0.0,
        alpha,
        center=bound,
    )
    return above, below, rates


def _bounds_agree(rates: counts.RateBounds, bound: float, above: BoolArray, below: BoolArray) -> counts.RateBounds:
    """The interval as its test reads at the last look: wholly above `bound` when the look shows the rate above
    it, wholly below when below. The interval inverts the same test, so this only corrects the root finder's
    tolerance, which could leave a bound a hair on the wrong side."""
    if len(above) and bool(above[-1]):
        return counts.RateBounds(rates.estimate, max(rates.lower, bound), rates.upper)
    if len(below) and bool(below[-1]):
        return counts.RateBounds(rates.estimate, rates.lower, min(rates.upper, bound))
    return rates


def _rate_slo(
    events: FloatArray, trials: FloatArray, bound: float, alpha: float, what: str, robust_tests: bool
) -> tuple[_Part, counts.RateBounds]:
    above, below, rates = _slo_evidence(events, trials, bound, alpha, robust_tests)
    rates = _bounds_agree(rates, bound, above, below)
    interval = f"{_pct(rates.estimate)} [{_pct(rates.lower)}, {_pct(rates.upper)}]"
    if bool(np.any(above)):
        look = int(np.flatnonzero(above)[0]) + 1
        text = f"{what} {interval} is above the SLO {_pct(bound)} (shown at look {look})"
        return _Part(True, False, text, at=look), rates
    if len(below) and bool(below[-1]):
        return _Part(False, True, f"{what} {interval} is within the SLO {_pct(bound)}"), rates
    return _Part(False, False, f"{what} {interval} not yet confirmed within the SLO {_pct(bound)}"), rates


def _ratio_compare(
    canary_events: FloatArray,
    canary_total: FloatArray,
    baseline_events: FloatArray,
    baseline_total: FloatArray,
    metric: MetricSpec,
    alpha: float,
    what: str,
    robust_tests: bool,
) -> tuple[_Part, counts.RatioEvidence, float, tuple[float, float]]:
    increase, r0 = _null_ratio(metric)
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
        f"{what} ratio canary/baseline {_num(estimate)} [{_num(bounds[0])}, {_num(bounds[1])}], "
        f"p={evidence.p_value:.2g} for ratio {relation} {r0:g}"
    )
    if evidence.rejected(alpha):
        look = evidence.first_rejection(alpha)
        assert look is not None
        return _Part(True, False, f"{text}: harm shown at look {look + 1}", at=look + 1), evidence, estimate, bounds
    safe = _shown_safe(canary_events, canary_total, baseline_events, baseline_total, r0, increase, robust_tests)
    return _Part(False, safe.confirmed, f"{text}: {safe.text}"), evidence, estimate, bounds


@dataclass(frozen=True)
class _Safety:
    confirmed: bool
    text: str


def _pass_ratio(r0: float, increase: bool) -> float:
    return r0 * PASS_FACTOR if increase else r0 / PASS_FACTOR


def _shown_safe(
    canary_events: FloatArray,
    canary_total: FloatArray,
    baseline_events: FloatArray,
    baseline_total: FloatArray,
    r0: float,
    increase: bool,
    robust_tests: bool,
) -> _Safety:
    """No harm shown; does this look show that the canary is not much worse (ratio beyond PASS_FACTOR × r0)?

    Read at the last look, never at an earlier best one, so that the bound shown with it (at the same
    confidence, inverting the same test) always lies on the safe side of the limit."""
    bound = _pass_ratio(r0, increase)
    tests = robust if robust_tests else counts
    evidence = tests.ratio_log_evalues(
        canary_events, canary_total, baseline_events, baseline_total, bound, increase=not increase
    )
    relation = "below" if increase else "above"
    now = float(evidence.log_evalues[-1]) if len(evidence.log_evalues) else 0.0
    if now >= math.log(1.0 / PASS_BETA):
        bounds_of = robust.ratio_confidence_bounds if robust_tests else counts.ratio_confidence_bounds
        lower, upper = bounds_of(canary_events, canary_total, baseline_events, baseline_total, 2.0 * PASS_BETA)
        limit = min(upper, bound) if increase else max(lower, bound)
        side = "upper" if increase else "lower"
        confidence = f"{100 * (1 - PASS_BETA):g}%"
        return _Safety(
            True, f"no evidence of harm, shown {relation} {bound:g} ({side} bound {_num(limit)} at {confidence})"
        )
    progress = f"e-value {math.exp(now):.2g} of {1 / PASS_BETA:g}"
    return _Safety(False, f"no evidence of harm yet, not yet shown {relation} {bound:g} ({progress})")


def _null_ratio(metric: MetricSpec) -> tuple[bool, float]:
    """Which direction is harmful, and the largest tolerated canary/baseline ratio (smallest for Decrease)."""
    assert metric.compare is not None
    increase = metric.compare.direction is Direction.INCREASE
    return increase, 1 + metric.compare.tolerance if increase else 1 - metric.compare.tolerance


def _kayenta_compare(canary: FloatArray, baseline: FloatArray, metric: MetricSpec, what: str) -> tuple[_Part, float]:
    """Kayenta's classification of the per-look series; returns the check and its effect size."""
    assert metric.compare is not None
    increase = metric.compare.direction is Direction.INCREASE
    try:
        result = kayenta.classify(
            [float(x) for x in baseline],
            [float(x) for x in canary],
            direction=kayenta.KayentaDirection.increase if increase else kayenta.KayentaDirection.decrease,
            allowed_increase=1 + metric.compare.tolerance,
            allowed_decrease=1 - metric.compare.tolerance if not increase else 1.0,
        )
    except ValueError as error:  # Kayenta's "Error" classification: it never counts either way
        return _Part(False, False, f"{what} Mann-Whitney (Kayenta) could not classify: {error}"), math.nan
    label = result.label
    text = f"{what} Mann-Whitney (Kayenta) {label.value}: {result.reason}"
    if label in (kayenta.KayentaLabel.High, kayenta.KayentaLabel.Low):
        return _Part(True, False, text), result.effect_size
    if label in (kayenta.KayentaLabel.Nodata, kayenta.KayentaLabel.NodataFail):
        return _Part(False, False, text), result.effect_size
    return _Part(False, True, text), result.effect_size


def _judge_counts(metric: MetricSpec, data: CountSeries, settings: JudgeSettings) -> MetricResult:
    what = "error rate" if metric.kind == "errorRate" else "ratio"
    canary_events, canary_total = float(data.canary_events.sum()), float(data.canary_total.sum())
    baseline_events, baseline_total = float(data.baseline_events.sum()), float(data.baseline_total.sum())
    canary_rate = canary_events / canary_total if canary_total > 0 else None
    baseline_rate = baseline_events / baseline_total if baseline_total > 0 else None
    parts: list[_Part] = []
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
            part, effect = _kayenta_compare(canary_series, baseline_series, metric, what)
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
    traffic_ok, traffic_text = _traffic(canary_total, baseline_total, settings, metric.compare is not None)
    return _combine(metric, parts, traffic_ok, traffic_text, " + ".join(tests), data.looks, **numbers)


def _per_look_rate(events: FloatArray, total: FloatArray) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, events / np.where(total > 0, total, 1.0), math.nan)


def _judge_latency(metric: MetricSpec, data: HistogramSeries, settings: JudgeSettings) -> MetricResult:
    quantile = metric.slo.quantile if metric.slo is not None and metric.slo.quantile else DEFAULT_LATENCY_QUANTILE
    canary_counts, baseline_counts = data.canary.sum(axis=0), data.baseline.sum(axis=0)
    canary_total, baseline_total = float(canary_counts.sum()), float(baseline_counts.sum())
    numbers: dict[str, float | bool | None] = {
        "canary": _nan_none(histograms.interpolated_quantile(data.bounds, canary_counts, quantile)),
        "baseline": _nan_none(histograms.interpolated_quantile(data.bounds, baseline_counts, quantile)),
        "canary_traffic": canary_total,
        "baseline_traffic": baseline_total,
    }
    parts: list[_Part] = []
    tests = []
    q_text = f"p{_quantile_name(quantile)}"
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
            part, effect = _kayenta_compare(canary_series, baseline_series, metric, f"{q_text} per look")
            numbers.update(effect=effect)
            tests.append("Mann-Whitney per look (Kayenta)")
        else:
            part, p_value, effect = _latency_compare(data, metric, settings.alpha, quantile, settings.robust)
            numbers.update(p_value=p_value, effect=effect)
            tests.append("slow-request ratio per bucket (sequential)")
        parts.append(part)
    traffic_ok, traffic_text = _traffic(canary_total, baseline_total, settings, metric.compare is not None)
    return _combine(metric, parts, traffic_ok, traffic_text, " + ".join(tests), data.looks, **numbers)


def _latency_slo(
    data: HistogramSeries, threshold: float, quantile: float, alpha: float, q_text: str, robust_tests: bool
) -> tuple[_Part, counts.RateBounds | None]:
    """p_q <= T  ⇔  the share of requests slower than T is at most 1 - q: a binomial question."""
    budget = 1 - quantile
    match = histograms.locate_threshold(data.bounds, threshold)
    hint = ""
    if match.exact is None:
        hint = (
            f" (no bucket boundary at {threshold:g}s: add one for an exact check; using "
            f"{_bound_text(data.bounds, match.below)} to confirm and {_bound_text(data.bounds, match.above)}"
            " to reject)"
        )
    total_per_look = data.canary.sum(axis=1)

    def slow_per_look(index: int) -> FloatArray:
        return np.asarray(data.canary[:, index + 1 :].sum(axis=1), dtype=float)

    violated_at: int | None = None
    if match.above is not None:
        above, _, _ = _slo_evidence(slow_per_look(match.above), total_per_look, budget, alpha, robust_tests)
        if bool(np.any(above)):
            violated_at = int(np.flatnonzero(above)[0]) + 1
    rates: counts.RateBounds | None = None
    confirmed = False
    index = match.above if violated_at is not None else match.below
    if index is not None:
        above, below, rates = _slo_evidence(slow_per_look(index), total_per_look, budget, alpha, robust_tests)
        rates = _bounds_agree(rates, budget, above, below)
        if violated_at is None and match.below is not None:
            confirmed = bool(below[-1]) if len(below) else False
    share = (
        f"share slower than {threshold:g}s {_pct(rates.estimate)} [{_pct(rates.lower)}, {_pct(rates.upper)}]"
        if rates is not None
        else f"share slower than {threshold:g}s unknown"
    )
    objective = f"{q_text} < {threshold:g}s needs at most {_pct(budget)}"
    if violated_at is not None:
        text = f"canary {share}: {objective}, violated at look {violated_at}{hint}"
        return _Part(True, False, text, at=violated_at), rates
    if confirmed:
        return _Part(False, True, f"canary {share}: {objective}, met{hint}"), rates
    return _Part(False, False, f"canary {share}: {objective}, not yet confirmed{hint}"), rates


def _latency_compare(
    data: HistogramSeries, metric: MetricSpec, alpha: float, quantile: float, robust_tests: bool
) -> tuple[_Part, float, float]:
    """Slow-request ratio at every finite bucket boundary, Bonferroni over boundaries."""
    increase, r0 = _null_ratio(metric)
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
        return _Part(False, False, "no finite buckets to compare"), 1.0, math.nan
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
        f"requests slower than {bound:g}s: canary {_pct(_ratio(canary_slow_share))} vs baseline "
        f"{_pct(_ratio(baseline_slow_share))} (ratio {_num(ratio)}, p={p_value:.2g} for ratio {relation} {r0:g})"
    )
    if evidence.rejected(alpha_each):
        # The first look at which any boundary showed it (the boundary reported is the strongest by now).
        look = int(np.flatnonzero(np.any(log_e >= math.log(1.0 / alpha_each), axis=1))[0]) + 1
        return _Part(True, False, f"{text}: canary slower, shown at look {look}", at=look), p_value, ratio
    # Passing needs evidence in the tail users read: at the last boundary at or below the baseline's quantile,
    # where at least 1 - q of the baseline's requests are slower (the one above may see no slow request at all).
    at_or_below = [i for i, b in enumerate(data.bounds) if b <= baseline_q]
    tail = at_or_below[-1] if at_or_below else 0
    safe = _shown_safe(
        canary_slow[:, tail], canary_total, baseline_slow[:, tail], baseline_total, r0, increase, robust_tests
    )
    safe_text = safe.text.replace("harm", "a slowdown")
    if tail != index:
        safe_text += f" (requests slower than {data.bounds[tail]:g}s)"
    return _Part(False, safe.confirmed, f"{text}: {safe_text}"), p_value, ratio


def _slower_than_each_boundary(counts_per_look: FloatArray) -> FloatArray:
    """Per look and finite boundary b: observations above b (all later buckets, +Inf included)."""
    above = np.cumsum(counts_per_look[:, ::-1], axis=1)[:, ::-1]
    return np.asarray(above[:, 1:], dtype=float)


def _share(counts_per_look: FloatArray, index: int) -> tuple[float, float]:
    return histograms.share_above(counts_per_look.sum(axis=0), index)


def _ratio(pair: tuple[float, float]) -> float:
    return pair[0] / pair[1] if pair[1] > 0 else math.nan


def _judge_drift(metric: MetricSpec, data: HistogramSeries, settings: JudgeSettings) -> MetricResult:
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
    text = f"{effect_name.value} {_num(effect)} (fails at {metric.drift.max:g}), same-distribution test p={p_value:.2g}"
    # A small estimate is not yet evidence: PSI's upper bound must be below drift.max too.
    upper = (
        histograms.psi_upper_bound(canary_counts, baseline_counts, DRIFT_PASS_CONFIDENCE)
        if effect_name is DriftEffect.PSI
        else effect
    )
    shown_small = not math.isnan(upper) and upper < metric.drift.max
    bound_text = f", upper bound {_num(upper)}" if effect_name is DriftEffect.PSI else ""
    if significant and large:
        part = _Part(True, False, f"prediction drift: {text}, shown at look {data.looks}", at=data.looks)
    elif large:
        part = _Part(False, False, f"{text}: large but not yet significant")
    elif not shown_small:
        part = _Part(False, False, f"{text}{bound_text}: not yet shown below {metric.drift.max:g}")
    elif significant:
        part = _Part(False, True, f"{text}{bound_text}: a real but small shift")
    else:
        part = _Part(False, True, f"{text}{bound_text}: no drift")
    traffic_ok, traffic_text = _traffic(canary_total, baseline_total, settings, True)
    return _combine(
        metric,
        [part],
        traffic_ok,
        traffic_text,
        f"bucket label test (sequential) + {effect_name.value}",
        data.looks,
        canary=_nan_none(float(np.dot(histograms.shares(canary_counts), _midpoints(data.bounds))))
        if canary_total > 0
        else None,
        baseline=_nan_none(float(np.dot(histograms.shares(baseline_counts), _midpoints(data.bounds))))
        if baseline_total > 0
        else None,
        p_value=p_value,
        effect=_nan_none(effect),
        canary_traffic=canary_total,
        baseline_traffic=baseline_total,
    )


def _midpoints(bounds: tuple[float, ...]) -> FloatArray:
    """Bucket midpoints for an approximate mean (the +Inf bucket counts at the top bound)."""
    edges = [min(0.0, bounds[0]), *bounds]
    mids = [(a + b) / 2 for a, b in itertools.pairwise(edges)]
    return np.array([*mids, bounds[-1]])


def _judge_custom(metric: MetricSpec, data: ValueSeries) -> MetricResult:
    assert metric.custom is not None
    canary_values = np.asarray(data.canary, dtype=float)
    valid = canary_values[~np.isnan(canary_values)]
    latest = float(valid[-1]) if len(valid) else None
    baseline_valid = data.baseline[~np.isnan(data.baseline)]
    numbers: dict[str, float | bool | None] = {
        "canary": latest,
        "baseline": float(baseline_valid[-1]) if len(baseline_valid) else None,
        "canary_traffic": float(len(valid)),
        "baseline_traffic": float(len(baseline_valid)),
    }
    parts: list[_Part] = []
    tests = []
    if metric.slo is not None:
        low = -math.inf if metric.slo.min is None else metric.slo.min
        high = math.inf if metric.slo.max is None else metric.slo.max
        outside = (valid < low) | (valid > high)
        needed = metric.custom.consecutive
        run = _longest_run(outside)
        bounds_text = f"[{_num(low)}, {_num(high)}]"
        if run >= needed:
            at = _run_reached(outside, needed)
            text = f"value outside {bounds_text} for {run} looks in a row (limit {needed}), from look {at - needed + 1}"
            parts.append(_Part(True, False, text, at=at))
        elif latest is not None and not outside[-1]:
            parts.append(_Part(False, True, f"value {_num(latest)} within {bounds_text}"))
        else:
            parts.append(_Part(False, False, f"value {_num(latest)} outside {bounds_text} for {run} look(s)"))
        numbers.update(slo_met=bool(parts[-1].confirmed))
        tests.append("threshold")
    if metric.compare is not None:
        part, effect = _kayenta_compare(canary_values, np.asarray(data.baseline, dtype=float), metric, "value")
        parts.append(part)
        numbers.update(effect=effect)
        tests.append("Mann-Whitney per look (Kayenta)")
    traffic_ok = len(valid) > 0
    return _combine(metric, parts, traffic_ok, "no values yet", " + ".join(tests), data.looks, **numbers)


def _run_reached(flags: BoolArray, needed: int) -> int:
    """The first look (1-based) that ends `needed` flagged looks in a row."""
    current = 0
    for index, flag in enumerate(flags):
        current = current + 1 if flag else 0
        if current >= needed:
            return index + 1
    return len(flags)


def _longest_run(flags: FloatArray) -> int:
    best = current = 0
    for flag in flags:
        current = current + 1 if flag else 0
        best = max(best, current)
    return best


# ---------------------------------------------------------------- the gate


def judge_gate(spec: RobustnessGateSpec, data: dict[str, MetricData], robust: bool = True) -> GateVerdict:
    """The gate's verdict on all its metrics; `robust=False` judges counts with the binomial model alone."""
    settings = settings_for(spec, robust)
    results = [judge_metric(metric, data[metric.name], settings) for metric in spec.metrics]
    return score_gate(spec, results)


def score_gate(spec: RobustnessGateSpec, results: list[MetricResult]) -> GateVerdict:
    """Weighted score 0-100 over live metrics; a critical failure fails the gate whatever the score."""
    live = [r for r in results if not r.dry_run]
    total_weight = sum(r.weight for r in live)
    passed = sum(r.weight for r in live if r.verdict is Verdict.PASS)
    score = round(100.0 * passed / total_weight, 2) if total_weight else 0.0
    with_data = [r for r in live if r.verdict is not Verdict.NO_DATA]
    failed = [r for r in live if r.verdict is Verdict.FAIL]
    critical_failed = [r for r in failed if r.critical]
    if critical_failed:
        first = critical_failed[0]
        return GateVerdict(Verdict.FAIL, score, f"critical metric {first.name} failed: {first.message}", results)
    if failed:
        data_weight = sum(r.weight for r in with_data)
        surviving = 100.0 * (data_weight - sum(r.weight for r in failed)) / data_weight
        if surviving < spec.scoring.marginal:
            names = ", ".join(r.name for r in failed)
            return GateVerdict(
                Verdict.FAIL,
                score,
                f"{names} failed, leaving {surviving:.0f} < marginal {spec.scoring.marginal}: {failed[0].message}",
                results,
            )
    if not with_data:
        return GateVerdict(Verdict.NO_DATA, score, f"no metric has enough data yet: {live[0].message}", results)
    blocking = [r for r in live if r.critical and r.verdict is not Verdict.PASS]
    if score >= spec.scoring.pass_ and not blocking:
        return GateVerdict(Verdict.PASS, score, f"score {score:g} ≥ pass {spec.scoring.pass_}", results)
    pending = [r for r in live if r.verdict is not Verdict.PASS]
    detail = f"{pending[0].name}: {pending[0].message}" if pending else ""
    return GateVerdict(Verdict.MARGINAL, score, f"score {score:g} < pass {spec.scoring.pass_}; {detail}", results)


# ---------------------------------------------------------------- formatting


def _pct(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if value == 0:
        return "0%"
    if abs(value) >= 0.01:
        return f"{100 * value:.2f}%"
    return f"{100 * value:.3g}%"


def _num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}"


def _nan_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _quantile_name(quantile: float) -> str:
    return f"{100 * quantile:g}".replace(".", "")


def _bound_text(bounds: tuple[float, ...], index: int | None) -> str:
    return "none" if index is None else f"le={bounds[index]:g}"
