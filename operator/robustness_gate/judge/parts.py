"""What every metric kind is built from: the parts of a verdict (an SLO check, a comparison), how they
combine, the traffic floor, and the evidence that a comparison is safe enough to pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robustness_gate.api import Direction, MetricSpec, Verdict
from robustness_gate.judge.results import JudgeSettings, MetricResult
from robustness_gate.judge.text import num
from robustness_gate.series import BoolArray, FloatArray
from robustness_gate.stats import counts, kayenta, robust

# A comparison passes only on evidence, not on the mere absence of harm: the canary must be shown to
# be less than PASS_FACTOR times worse than the tolerated ratio, with an e-value of 1 / PASS_BETA.
# Without it the gate keeps looking, so a regression too small to show by minDuration still has
# until maxDuration to show; a canary about PASS_FACTOR times worse is promoted early at most PASS_BETA
# of the time. With 10/90 req/s and 1% errors a healthy canary passes after a median of 4 minutes.
PASS_FACTOR = 1.5


PASS_BETA = 0.1


@dataclass(frozen=True)
class Part:
    """The outcome of one check inside a metric."""

    fail: bool
    confirmed: bool  # enough evidence that this check is fine
    text: str
    at: int | None = None  # a failure: the first look (1-based) that showed it


def combine(
    metric: MetricSpec,
    parts: list[Part],
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


def traffic(canary: float, baseline: float, settings: JudgeSettings, needs_baseline: bool) -> tuple[bool, str]:
    short = []
    if canary < settings.min_canary:
        short.append(f"canary {canary:.0f} of {settings.min_canary:.0f}")
    if needs_baseline and baseline < settings.min_baseline:
        short.append(f"baseline {baseline:.0f} of {settings.min_baseline:.0f}")
    return not short, "not enough traffic yet: " + ", ".join(short) if short else ""


def slo_evidence(
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


def bounds_agree(rates: counts.RateBounds, bound: float, above: BoolArray, below: BoolArray) -> counts.RateBounds:
    """The interval as its test reads at the last look: wholly above `bound` when the look shows the rate above
    it, wholly below when below. The interval inverts the same test, so this only corrects the root finder's
    tolerance, which could leave a bound a hair on the wrong side."""
    if len(above) and bool(above[-1]):
        return counts.RateBounds(rates.estimate, max(rates.lower, bound), rates.upper)
    if len(below) and bool(below[-1]):
        return counts.RateBounds(rates.estimate, rates.lower, min(rates.upper, bound))
    return rates


@dataclass(frozen=True)
class _Safety:
    confirmed: bool
    text: str


def _pass_ratio(r0: float, increase: bool) -> float:
    return r0 * PASS_FACTOR if increase else r0 / PASS_FACTOR


def shown_safe(
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
            True, f"no evidence of harm, shown {relation} {bound:g} ({side} bound {num(limit)} at {confidence})"
        )
    progress = f"e-value {math.exp(now):.2g} of {1 / PASS_BETA:g}"
    return _Safety(False, f"no evidence of harm yet, not yet shown {relation} {bound:g} ({progress})")


def null_ratio(metric: MetricSpec) -> tuple[bool, float]:
    """Which direction is harmful, and the largest tolerated canary/baseline ratio (smallest for Decrease)."""
    assert metric.compare is not None
    increase = metric.compare.direction is Direction.INCREASE
    return increase, 1 + metric.compare.tolerance if increase else 1 - metric.compare.tolerance


def kayenta_compare(canary: FloatArray, baseline: FloatArray, metric: MetricSpec, what: str) -> tuple[Part, float]:
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
        return Part(False, False, f"{what} Mann-Whitney (Kayenta) could not classify: {error}"), math.nan
    label = result.label
    text = f"{what} Mann-Whitney (Kayenta) {label.value}: {result.reason}"
    if label in (kayenta.KayentaLabel.High, kayenta.KayentaLabel.Low):
        return Part(True, False, text), result.effect_size
    if label in (kayenta.KayentaLabel.Nodata, kayenta.KayentaLabel.NodataFail):
        return Part(False, False, text), result.effect_size
    return Part(False, True, text), result.effect_size
