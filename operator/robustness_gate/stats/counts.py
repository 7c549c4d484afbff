"""Anytime-valid tests on event counts: canary-vs-baseline rate ratio and a rate against an SLO.

Rate ratio (two samples). Each side's bad events are a point process whose intensity is its
traffic times a per-request probability. Given that a bad event happened during look s, the
chance it came from the canary is theta_s(r) = rho_s r / (rho_s r + 1 - rho_s), where rho_s is the
canary's share of requests in that look and r the canary/baseline rate ratio. The unknown,
time-varying baseline rate cancels, so the test stays exact under diurnal traffic, bursts and
changing traffic splits (Lindon & Malek 2022). Mixing the likelihood ratio against theta_s(r0)
over a grid of r beyond r0 gives a nonnegative supermartingale under H0: r <= r0 (the Bernoulli
family has a monotone likelihood ratio), so by Ville's inequality rejecting when it reaches 1/alpha
at ANY look keeps the false-rollback rate at alpha however often we look.

Rate against a bound (one sample). A beta-binomial mixture martingale gives a confidence
sequence for the canary's rate (Robbins 1970; Howard et al. 2021): the set of p whose mixture
likelihood ratio is below 1/alpha. It is valid at all looks at once, so "the SLO is violated"
(bound entirely above the objective) and "the SLO is met" (entirely below) can be read at any look.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, expit

from robustness_gate.series import BoolArray, FloatArray
from robustness_gate.stats.roots import VectorFunction, monotone_root

__all__ = ["VectorFunction"]

# Alternatives mixed over: log(r / r0) from log(1.05) to log(10), equally weighted. A grid keeps
# the mixture valid for a different traffic share at every look (a conjugate prior would not).
# Simulated at 1%->1.5%, 1%->2% and 0.1%->0.5%, this range detected faster than ones reaching 50x.
LOG_EFFECT_GRID: FloatArray = np.linspace(math.log(1.05), math.log(10.0), 24)
# Prior concentration of the beta mixture for one-sample bounds: weak, centred on the objective.
BETA_CONCENTRATION = 10.0
# Confidence bounds are found to within RATIO_BOUND_TOLERANCE of log(ratio), and where the rate's log
# mixture is within RATE_BOUND_TOLERANCE of its threshold (rates nearer 0 or 1 than RATE_BOUND_EPS: 0 or 1).
RATIO_BOUND_TOLERANCE = 1e-6
RATE_BOUND_TOLERANCE = 1e-9
RATE_BOUND_EPS = 1e-12
# Anytime-valid bounds at these alphas lie a few standard errors from the estimate: the search starts there.
BOUND_GUESS_SCALES = 3.0


@dataclass(frozen=True)
class RatioEvidence:
    """Sequential evidence that the canary/baseline rate ratio is beyond r0."""

    log_evalues: FloatArray  # log E_t at each look
    r0: float
    increase: bool

    @functools.cached_property
    def max_log_evalue(self) -> float:
        return float(np.max(self.log_evalues)) if len(self.log_evalues) else 0.0

    @property
    def p_value(self) -> float:
        """Anytime-valid p-value: 1 / the largest e-value seen so far."""
        return float(min(1.0, math.exp(-self.max_log_evalue)))

    def rejected(self, alpha: float) -> bool:
        return self.max_log_evalue >= math.log(1.0 / alpha)

    def first_rejection(self, alpha: float) -> int | None:
        """Index of the first look at which H0 was rejected, if any."""
        hits = np.flatnonzero(self.log_evalues >= math.log(1.0 / alpha))
        return int(hits[0]) if len(hits) else None


def shares(canary_total: FloatArray, baseline_total: FloatArray) -> tuple[FloatArray, BoolArray]:
    total = canary_total + baseline_total
    informative = (canary_total > 0) & (baseline_total > 0)
    rho = np.where(informative, canary_total / np.where(total > 0, total, 1.0), 0.5)
    return rho, informative


def logsumexp_rows(values: FloatArray) -> FloatArray:
    """log(sum(exp(row))) of each row of a finite 2-D array. scipy.special.logsumexp gives the same numbers
    (a unit test checks it) but its per-call overhead dominated the judge's time on these small arrays."""
    peak = np.max(values, axis=1)
    return np.asarray(peak + np.log(np.sum(np.exp(values - peak[:, None]), axis=1)), dtype=float)


def ratio_log_evalues(
    canary_events: FloatArray,
    canary_total: FloatArray,
    baseline_events: FloatArray,
    baseline_total: FloatArray,
    r0: float,
    increase: bool = True,
    log_effects: FloatArray = LOG_EFFECT_GRID,
    final_only: bool = False,
) -> RatioEvidence:
    """Mixture e-process against H0: r <= r0 (increase) or H0: r >= r0 (decrease), one value per look
    (only the last look's with `final_only`, which is all a confidence bound needs)."""
    log_e = ratio_log_evalue_columns(
        np.asarray(canary_events, dtype=float)[:, None],
        canary_total,
        np.asarray(baseline_events, dtype=float)[:, None],
        baseline_total,
        r0,
        increase,
        log_effects,
        final_only,
    )
    return RatioEvidence(log_evalues=np.asarray(log_e[:, 0], dtype=float), r0=r0, increase=increase)


def ratio_log_evalue_columns(
    canary_events: FloatArray,
    canary_total: FloatArray,
    baseline_events: FloatArray,
    baseline_total: FloatArray,
    r0: float,
    increase: bool = True,
    log_effects: FloatArray = LOG_EFFECT_GRID,
    final_only: bool = False,
) -> FloatArray:
    """The e-process of ratio_log_evalues for several kinds of bad event at once (histogram buckets, slow
    requests at each boundary): events are looks x columns, totals one per look; returns log E, looks x columns."""
    ce, be = np.asarray(canary_events, dtype=float), np.asarray(baseline_events, dtype=float)
    ct, bt = np.asarray(canary_total, dtype=float), np.asarray(baseline_total, dtype=float)
    looks, columns = ce.shape
    if looks == 0:
        return np.zeros((0, columns))
    rho, informative = shares(ct, bt)
    sign = 1.0 if increase else -1.0
    ratios = r0 * np.exp(sign * np.asarray(log_effects))  # G alternatives
    rho_col = rho[:, None]
    theta = rho_col * ratios / (rho_col * ratios + 1.0 - rho_col)  # K x G
    theta0 = (rho * r0 / (rho * r0 + 1.0 - rho))[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_event = np.log(theta) - np.log(theta0)  # K x G: one canary event
        log_other = np.log1p(-theta) - np.log1p(-theta0)  # K x G: one baseline event
    used = informative[:, None] & ((ce + be) > 0)  # K x C
    ce, be = np.where(used, ce, 0.0), np.where(used, be, 0.0)
    log_event = np.where(informative[:, None], log_event, 0.0)
    log_other = np.where(informative[:, None], log_other, 0.0)
    increments = ce[:, :, None] * log_event[:, None, :] + be[:, :, None] * log_other[:, None, :]  # K x C x G
    cumulative = np.sum(increments, axis=0, keepdims=True) if final_only else np.cumsum(increments, axis=0)
    flat = cumulative.reshape(-1, len(ratios)) - math.log(len(ratios))
    return logsumexp_rows(flat).reshape(cumulative.shape[0], columns)


def rate_ratio_estimate(
    canary_events: float, canary_total: float, baseline_events: float, baseline_total: float
) -> float:
    """Point estimate of the canary/baseline rate ratio over the whole analysis (inf or nan if undefined)."""
    if canary_total <= 0 or baseline_total <= 0:
        return math.nan
    canary_rate = canary_events / canary_total
    baseline_rate = baseline_events / baseline_total
    if baseline_rate == 0:
        return math.inf if canary_rate > 0 else math.nan
    return canary_rate / baseline_rate


def ratio_confidence_bounds(
    canary_events: FloatArray,
    canary_total: FloatArray,
    baseline_events: FloatArray,
    baseline_total: FloatArray,
    alpha: float,
) -> tuple[float, float]:
    """Anytime-valid (1 - alpha) bounds on the rate ratio now, each side at alpha / 2.

    lower = the smallest r0 for which "r <= r0" is not rejected; upper likewise for "r >= r0".
    """
    threshold = math.log(2.0 / alpha)
    final = _FinalRatioEvidence(canary_events, canary_total, baseline_events, baseline_total)
    center, scale = log_ratio_guess(canary_events, canary_total, baseline_events, baseline_total)
    return invert_ratio_bounds(
        lambda x: final.log_evalues(x, True) - threshold,
        lambda x: final.log_evalues(x, False) - threshold,
        center,
        scale,
        RATIO_BOUND_TOLERANCE,
    )


def invert_ratio_bounds(
    lower_excess: VectorFunction, upper_excess: VectorFunction, center: float, scale: float, tolerance: float
) -> tuple[float, float]:
    """Bounds on the ratio from two tests' log e-values minus their threshold, as functions of log r0: the
    lower bound is where "r <= r0" stops being rejected, the upper where "r >= r0" starts to be."""
    low, high = -12.0, 12.0
    # Where to look first: a few standard errors of the log ratio either side of its estimate.
    lower = monotone_root(lower_excess, low, high, tolerance, guess=(center - BOUND_GUESS_SCALES * scale, scale))
    upper = monotone_root(upper_excess, low, high, tolerance, guess=(center + BOUND_GUESS_SCALES * scale, scale))
    # Nothing rejected even at the far end: the bound is open there.
    return (0.0 if lower <= low else math.exp(lower)), (math.inf if upper >= high else math.exp(upper))


def log_ratio_guess(
    canary_events: FloatArray, canary_total: FloatArray, baseline_events: FloatArray, baseline_total: FloatArray
) -> tuple[float, float]:
    """The log rate ratio and its standard error, with half an event added to each side (never infinite)."""
    ce, ct = float(np.sum(canary_events)) + 0.5, float(np.sum(canary_total))
    be, bt = float(np.sum(baseline_events)) + 0.5, float(np.sum(baseline_total))
    if ct <= 0 or bt <= 0:
        return 0.0, 1.0
    return math.log(ce / ct) - math.log(be / bt), math.sqrt(1.0 / ce + 1.0 / be)


class _FinalRatioEvidence:
    """The last look's log e-value of ratio_log_evalues for many r0 at once (what confidence bounds invert).

    In log-odds, z = logit(rho) + log r, one bad event is the canary's with log-probability z - softplus(z)
    and the baseline's with -softplus(z); so a look's log likelihood ratio against r0 is
    canary events * log(r / r0) + all its bad events * (softplus(z0) - softplus(z)).
    """

    def __init__(
        self,
        canary_events: FloatArray,
        canary_total: FloatArray,
        baseline_events: FloatArray,
        baseline_total: FloatArray,
    ) -> None:
        ce, be = np.asarray(canary_events, dtype=float), np.asarray(baseline_events, dtype=float)
        rho, informative = shares(np.asarray(canary_total, dtype=float), np.asarray(baseline_total, dtype=float))
        used = informative & ((ce + be) > 0)
        self.canary_events = float(np.sum(ce[used]))
        self.bad_events = (ce + be)[used]
        self.logit = np.log(rho[used]) - np.log1p(-rho[used])

    def log_evalues(self, log_r0: FloatArray, increase: bool) -> FloatArray:
        log_r0 = np.asarray(log_r0, dtype=float)
        if not len(self.bad_events):
            return np.zeros(len(log_r0))
        shifts = (1.0 if increase else -1.0) * LOG_EFFECT_GRID  # log(r / r0) of each alternative
        # softplus(z) = log1p(e^z); |z| stays far below exp's overflow (|log r0| <= 12 here, shifts <= log 10).
        odds0 = np.exp(self.logit[:, None] + log_r0[None, :])  # looks x r0
        softplus0 = self.bad_events @ np.log1p(odds0)  # r0
        alternatives = np.log1p(odds0[:, :, None] * np.exp(shifts))  # looks x r0 x G
        softplus = (self.bad_events @ alternatives.reshape(len(self.bad_events), -1)).reshape(len(log_r0), -1)
        log_lr = self.canary_events * shifts[None, :] + softplus0[:, None] - softplus
        return logsumexp_rows(log_lr) - math.log(len(shifts))


# ---------------------------------------------------------------- one sample: rate vs a bound


def _beta_prior(center: float, concentration: float = BETA_CONCENTRATION) -> tuple[float, float]:
    center = min(max(center, 1e-9), 1 - 1e-9)
    return concentration * center, concentration * (1.0 - center)


def binomial_log_mixture(events: FloatArray | float, trials: FloatArray | float, p: float, center: float) -> FloatArray:
    """log of the beta-binomial mixture likelihood ratio against "the rate is p", per look."""
    s = np.asarray(events, dtype=float)
    n = np.asarray(trials, dtype=float)
    a, b = _beta_prior(center)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_m = (
            betaln(a + s, b + n - s)
            - betaln(a, b)
            - np.where(s > 0, s * np.log(p), 0.0)
            - np.where(n - s > 0, (n - s) * np.log1p(-p), 0.0)
        )
    return np.asarray(log_m, dtype=float)


@dataclass(frozen=True)
class RateBounds:
    estimate: float
    lower: float
    upper: float


def binomial_confidence_sequence(events: float, trials: float, alpha: float, center: float) -> RateBounds:
    """Anytime-valid (1 - alpha) interval for a rate after `events` out of `trials`."""
    if trials <= 0:
        return RateBounds(estimate=math.nan, lower=0.0, upper=1.0)
    events = min(max(events, 0.0), trials)
    estimate = events / trials
    threshold = math.log(1.0 / alpha)

    a, b = _beta_prior(center)
    marginal = float(betaln(a + events, b + trials - events) - betaln(a, b)) - threshold

    def excess(log_odds: FloatArray) -> FloatArray:
        # binomial_log_mixture in log-odds x: log p = -softplus(-x), log(1 - p) = -softplus(x).
        return np.asarray(
            marginal + events * np.logaddexp(0.0, -log_odds) + (trials - events) * np.logaddexp(0.0, log_odds),
            dtype=float,
        )

    # Searched in log-odds, where the log mixture is smooth and near-quadratic.
    edge = math.log(RATE_BOUND_EPS) - math.log1p(-RATE_BOUND_EPS)
    clipped = min(max(estimate, RATE_BOUND_EPS), 1 - RATE_BOUND_EPS)
    middle = math.log(clipped) - math.log1p(-clipped)

    # Where to look first: a few standard errors of the log odds either side of the estimate.
    smoothed = (events + 0.5) / (trials + 1.0)
    scale = 1.0 / math.sqrt(trials * smoothed * (1.0 - smoothed))

    def rate_where_crossed(low: float, high: float, guess: float) -> float:
        root = monotone_root(excess, low, high, 1e-12, value_tolerance=RATE_BOUND_TOLERANCE, guess=(guess, scale))
        return float(expit(root))

    # A bound exists on a side only if even the most extreme rate there is rejected.
    ends = excess(np.array([edge, -edge]))
    below, above = middle - BOUND_GUESS_SCALES * scale, middle + BOUND_GUESS_SCALES * scale
    lower = rate_where_crossed(edge, middle, below) if estimate > RATE_BOUND_EPS and ends[0] >= 0 else 0.0
    upper = rate_where_crossed(middle, -edge, above) if estimate < 1 - RATE_BOUND_EPS and ends[1] >= 0 else 1.0
    return RateBounds(estimate=estimate, lower=lower, upper=upper)


def bound_crossings(
    cumulative_events: FloatArray, cumulative_trials: FloatArray, bound: float, alpha: float
) -> tuple[BoolArray, BoolArray]:
    """Per look: is the rate confidently above `bound`, and confidently below it?

    The confidence sequence excludes `bound` exactly when the mixture likelihood ratio at `bound`
    reaches 1/alpha; the side is the side of the point estimate.
    """
    s = np.asarray(cumulative_events, dtype=float)
    n = np.asarray(cumulative_trials, dtype=float)
    log_m = binomial_log_mixture(s, n, bound, bound)
    excluded = (log_m >= math.log(1.0 / alpha)) & (n > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = np.where(n > 0, s / np.where(n > 0, n, 1.0), bound)
    return excluded & (estimate > bound), excluded & (estimate < bound)


def rate_log_evalue_columns(events: FloatArray, trials: FloatArray, bounds: FloatArray, high: bool) -> FloatArray:
    """Mixture e-process per look (cumulative log E, looks x columns) against "the rate is at most the
    column's bound" (`high`) or "at least" (not `high`): binomial likelihood ratios of alternatives whose
    odds are the bound's times exp(±LOG_EFFECT_GRID), equally weighted; valid for the composite null by the
    Bernoulli family's monotone likelihood ratio, as the rate-ratio test is."""
    x, n = np.asarray(events, dtype=float), np.asarray(trials, dtype=float)
    m = np.clip(np.asarray(bounds, dtype=float), RATE_BOUND_EPS, 1 - RATE_BOUND_EPS)
    sign = 1.0 if high else -1.0
    odds = (m / (1.0 - m))[:, None] * np.exp(sign * LOG_EFFECT_GRID)[None, :]  # columns x G
    alternative = odds / (1.0 + odds)
    log_event = np.log(alternative) - np.log(m)[:, None]
    log_other = np.log1p(-alternative) - np.log1p(-m)[:, None]
    increments = x[:, :, None] * log_event[None] + (n - x)[:, :, None] * log_other[None]
    cumulative = np.cumsum(increments, axis=0)
    flat = cumulative.reshape(-1, len(LOG_EFFECT_GRID)) - math.log(len(LOG_EFFECT_GRID))
    return logsumexp_rows(flat).reshape(cumulative.shape[:2])


def invert_rate_bounds(
    lower_excess: VectorFunction, upper_excess: VectorFunction, center: float, scale: float, tolerance: float
) -> tuple[float, float]:
    """Bounds on a rate from two tests' log e-values minus their threshold, as functions of the log odds."""
    edge = math.log(RATE_BOUND_EPS) - math.log1p(-RATE_BOUND_EPS)
    ends_low, ends_high = lower_excess(np.array([edge])), upper_excess(np.array([-edge]))
    lower = upper = math.nan
    if float(ends_low[0]) >= 0:
        lower = monotone_root(lower_excess, edge, -edge, tolerance, guess=(center - BOUND_GUESS_SCALES * scale, scale))
    if float(ends_high[0]) >= 0:
        upper = monotone_root(upper_excess, edge, -edge, tolerance, guess=(center + BOUND_GUESS_SCALES * scale, scale))
    return (0.0 if math.isnan(lower) else float(expit(lower))), (1.0 if math.isnan(upper) else float(expit(upper)))
