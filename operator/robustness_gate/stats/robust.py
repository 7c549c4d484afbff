"""Count tests that stay valid when per-look counts vary more than binomial: overdispersion, bursts, blips.

The binomial likelihood ratio treats every request as an independent draw. Real per-look error rates
vary more than that (retries, one slow dependency, one pod's bad minute), independently on the two
sides, and that variation reads as evidence: the more traffic, the more it weighs. So every count test
here is a product over looks of one factor per look, each an e-value given the past:

    F_s = w_s · min(L_s, e^LOOK_CAP) + (1 − w_s) · B_s

* L_s is the look's increment of the binomial mixture likelihood ratio (stats.counts): the most powerful
  choice when the counts are binomial, capped so that one look moves the evidence by at most e^LOOK_CAP.
* B_s is the look's increment of a bet on the look's mid-p value under the null: u_s = P(X < x_s) +
  P(X = x_s)/2 for X ~ Binomial(n_s, θ_s), the bet 1 + λ(2u_s − 1), mixed over λ. Under the binomial null
  E[u_s] = 1/2 exactly, so the bet is a martingale; it is linear and bounded (one look changes it by a
  factor between 1 − λ and 1 + λ), so a burst counts as one look's worth of evidence however large it is,
  and it needs only that the look's mid-p is centred, not that its spread is binomial.
* w_s, the weight of the binomial part, is predictable: 1 while the looks so far are as dispersed as
  binomial counts, falling to 0 as their dispersion (Pearson's statistic per look, on both sides) grows.

Under the binomial null every part has conditional mean at most 1 and w_s is fixed before the look, so F_s
does too: the product is a nonnegative supermartingale and Ville's inequality bounds the chance that it
ever reaches 1/alpha by alpha, exactly as before. Beyond the binomial model the guarantee rests on the bet
(the binomial part is then weighted down and capped); docs/statistics.md says what that assumes.

The comparison of two rates adds a fast path. Its evidence at look s is

    D_s = log E_s              while every look so far, look s included, is as dispersed as binomial counts
    D_s = min(log E_s, log R_s) otherwise,

E_s the binomial mixture likelihood ratio (uncapped, stats.counts), R_s the product of the F_s above, and "as
dispersed as binomial" a test of Pearson's statistic over at least FAST_PATH_LOOKS looks on each side (both
sides' statistics pooled, p > FAST_PATH_P). D_s ≤ log E_s at every look, so under the binomial null it
reaches log(1/alpha) no more often than E_s does: at most alpha, as before. Where the counts are binomial it
decides as fast as E_s once the looks are enough to see their dispersion; where they are not (a burst, a
blip, rates that vary from look to look) the look that shows it shuts the fast path, and the rejection
needs R_s too.

One more rule keeps the verdict monotone: a look whose extra canary errors shut the fast path would
otherwise have weaker evidence than the same look with fewer errors. Such a look gets at least the binomial
evidence of the most harmful count that keeps the path open (found by bisection). That value is an E_s of
the same look with fewer errors, so it is at most E_s and the bound by alpha above still holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import bdtr, chdtrc

from robustness_gate.series import BoolArray, FloatArray, IntArray
from robustness_gate.stats import counts

# One look moves the binomial part of the evidence by at most this much (log): a burst on one side that
# lasts a look or two cannot decide alone (log(1/alpha) is 4.6 at alpha = 1%).
LOOK_CAP = 1.5
# Bet sizes mixed over, equally weighted; below 1 so that a look against the bet never loses everything.
BET_FRACTIONS: FloatArray = np.linspace(0.05, 0.95, 19)
# Dispersion (Pearson's statistic per look) at which the binomial part starts to lose weight, and where it
# has none; before two looks are known it has half.
BINOMIAL_UNTIL = 1.5
ROBUST_FROM = 3.0
UNKNOWN_WEIGHT = 0.5
# The comparison's fast path: open from this many looks with traffic on each side, while the looks so far are
# as dispersed as binomial counts at this p-value (Pearson's statistic of both sides pooled).
FAST_PATH_LOOKS = 5
FAST_PATH_P = 0.1
# Bisection steps to find the most harmful count a look could have had with the fast path open (of a count's
# width: 2^-30 of it).
ENVELOPE_STEPS = 30
# Bounds are shown, not decided on: found to within this much of log(ratio) or of the rate's log odds.
BOUND_TOLERANCE = 1e-4


def mid_p_scores(events: FloatArray, trials: FloatArray, probability: FloatArray, high: bool) -> FloatArray:
    """2u − 1 per look and column, u the mid-p value of the events under Binomial(trials, probability):
    positive when there are more events than expected (`high`), or fewer (not `high`); 0 without trials."""
    x = np.rint(np.asarray(events, dtype=float)).astype(np.int64)
    n = np.rint(np.asarray(trials, dtype=float)).astype(np.int64)
    p = np.clip(np.broadcast_to(np.asarray(probability, dtype=float), x.shape), 1e-12, 1 - 1e-12)
    x = np.clip(x, 0, n)
    below = np.where(x > 0, bdtr(np.maximum(x - 1, 0), n, p), 0.0)
    at_or_below = bdtr(x, n, p)
    u = 0.5 * (below + at_or_below)
    score = 2.0 * u - 1.0 if high else 1.0 - 2.0 * u
    return np.asarray(np.where(n > 0, score, 0.0), dtype=float)


def bet_log_increments(scores: FloatArray) -> FloatArray:
    """Per-look log increments of the bet mixed over BET_FRACTIONS (scores: looks x columns)."""
    s = np.asarray(scores, dtype=float)
    if s.shape[0] == 0:
        return np.zeros(s.shape)
    log_factors = np.log1p(BET_FRACTIONS[None, None, :] * s[:, :, None])  # looks x columns x fractions
    wealth = np.cumsum(log_factors, axis=0)
    flat = wealth.reshape(-1, len(BET_FRACTIONS)) - math.log(len(BET_FRACTIONS))
    log_e = counts.logsumexp_rows(flat).reshape(s.shape)
    return _increments(log_e)


def _increments(cumulative: FloatArray) -> FloatArray:
    return np.diff(cumulative, axis=0, prepend=np.zeros((1, cumulative.shape[1])))


def dispersion(events: FloatArray, trials: FloatArray) -> FloatArray:
    """Per look s and column: Pearson's statistic per degree of freedom of the looks before s against their
    pooled rate (about 1 for binomial counts, larger when rates vary from look to look); nan before two
    looks with trials. Cumulative sums keep it linear in the number of looks."""
    chi2, looks_seen = pearson(events, trials, include_current=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_df = chi2 / (looks_seen - 1.0)
    return np.asarray(np.where(looks_seen >= 2, per_df, np.nan), dtype=float)


def pearson(events: FloatArray, trials: FloatArray, include_current: bool) -> tuple[FloatArray, FloatArray]:
    """Per look and column: Pearson's statistic of the looks before it (or up to it, `include_current`)
    against their pooled rate, and how many of those looks had trials."""
    k = np.asarray(events, dtype=float)
    n = np.asarray(trials, dtype=float)
    n = np.broadcast_to(n[:, None] if n.ndim == 1 else n, k.shape)
    live = n > 0
    k_over_n = np.where(live, k**2 / np.where(live, n, 1.0), 0.0)

    def sums(values: FloatArray) -> FloatArray:
        running = np.cumsum(values, axis=0)
        if include_current:
            return np.asarray(running, dtype=float)
        return np.asarray(np.concatenate([np.zeros((1, *values.shape[1:])), running[:-1]], axis=0), dtype=float)

    sum_k, sum_n, sum_k2n = sums(k), sums(np.where(live, n, 0.0)), sums(k_over_n)
    looks_seen = sums(live.astype(float))
    rate = (sum_k + 0.5) / np.where(sum_n > 0, sum_n + 1.0, 1.0)
    # sum (k - n p)^2 / (n p (1 - p)) = (sum k^2/n - 2 p sum k + p^2 sum n) / (p (1 - p)): 1 per look on
    # average for binomial counts, whatever p is.
    chi2 = (sum_k2n - 2.0 * rate * sum_k + rate**2 * sum_n) / (rate * (1.0 - rate))
    return np.asarray(np.maximum(chi2, 0.0), dtype=float), looks_seen


def binomial_looking(
    canary_events: FloatArray, canary_total: FloatArray, baseline_events: FloatArray, baseline_total: FloatArray
) -> BoolArray:
    """Per look and column: whether the looks so far, this one included, are as dispersed as binomial counts
    on both sides (the fast path's condition; not predictable, and it need not be: see the module text)."""
    canary_chi2, canary_looks = pearson(canary_events, canary_total, include_current=True)
    baseline_chi2, baseline_looks = pearson(baseline_events, baseline_total, include_current=True)
    enough = np.minimum(canary_looks, baseline_looks) >= FAST_PATH_LOOKS
    df = np.maximum(canary_looks + baseline_looks - 2.0, 1.0)
    return np.asarray(enough & (chdtrc(df, canary_chi2 + baseline_chi2) > FAST_PATH_P), dtype=bool)


def binomial_weight(*dispersions: FloatArray) -> FloatArray:
    """The binomial part's weight from the largest dispersion seen on any side (predictable)."""
    worst = np.fmax.reduce(np.stack(dispersions), axis=0) if len(dispersions) > 1 else dispersions[0]
    weight = np.clip((ROBUST_FROM - worst) / (ROBUST_FROM - BINOMIAL_UNTIL), 0.0, 1.0)
    return np.asarray(np.where(np.isnan(worst), UNKNOWN_WEIGHT, weight), dtype=float)


def combine(binomial_log_e: FloatArray, bet_increments: FloatArray, weight: FloatArray) -> FloatArray:
    """Cumulative log e-values of F_s = w min(L_s, e^cap) + (1 − w) B_s from the binomial part's cumulative
    log e-values, the bet's log increments and the weights (all looks x columns)."""
    binomial = np.minimum(_increments(np.asarray(binomial_log_e, dtype=float)), LOOK_CAP)
    w = np.asarray(weight, dtype=float)
    with np.errstate(divide="ignore"):
        mixed = np.logaddexp(np.log(w) + binomial, np.log1p(-w) + bet_increments)
    return np.asarray(np.cumsum(mixed, axis=0), dtype=float)


# ---------------------------------------------------------------- two samples: the rate ratio


@dataclass(frozen=True)
class _BinomialRatio:
    """The binomial mixture e-process, kept per alternative so that a look can be re-scored with other counts."""

    log_e: FloatArray  # looks x columns
    by_alternative: FloatArray  # cumulative log likelihood ratios, looks x columns x G
    log_event: FloatArray  # one canary bad event's log likelihood ratio, looks x columns x G
    log_other: FloatArray  # one baseline bad event's

    def with_canary_events(
        self, look: IntArray, column: IntArray, canary: FloatArray, baseline: FloatArray
    ) -> FloatArray:
        """log E at (look, column) had the canary counted `canary` bad events in that look (`baseline` the baseline)."""
        before = np.where((look > 0)[:, None], self.by_alternative[np.maximum(look - 1, 0), column], 0.0)  # points x G
        increment = canary[:, None] * self.log_event[look, column] + baseline[:, None] * self.log_other[look, column]
        grid = self.by_alternative.shape[2]
        return np.asarray(counts.logsumexp_rows(before + increment) - math.log(grid), dtype=float)


def _binomial_ratio_columns(
    ce: FloatArray,
    rho: FloatArray,
    informative: BoolArray,
    be: FloatArray,
    r0: FloatArray,
    increase: bool,
    log_effects: FloatArray = counts.LOG_EFFECT_GRID,
) -> _BinomialRatio:
    """counts.ratio_log_evalue_columns with one r0 per column (what inverting the test needs)."""
    sign = 1.0 if increase else -1.0
    ratios = r0[:, None] * np.exp(sign * np.asarray(log_effects, dtype=float))[None, :]  # columns x G
    rho3 = rho[:, None, None]
    theta = rho3 * ratios[None] / (rho3 * ratios[None] + 1.0 - rho3)  # looks x columns x G
    theta0 = (rho[:, None] * r0[None, :] / (rho[:, None] * r0[None, :] + 1.0 - rho[:, None]))[:, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_event = np.log(theta) - np.log(theta0)
        log_other = np.log1p(-theta) - np.log1p(-theta0)
    live = informative[:, None, None]
    log_event, log_other = np.where(live, log_event, 0.0), np.where(live, log_other, 0.0)
    increments = ce[:, :, None] * log_event + be[:, :, None] * log_other
    cumulative = np.cumsum(increments, axis=0)
    grid = len(log_effects)
    flat = cumulative.reshape(-1, grid) - math.log(grid)
    log_e = counts.logsumexp_rows(flat).reshape(cumulative.shape[:2])
    return _BinomialRatio(
        log_e, cumulative, np.broadcast_to(log_event, cumulative.shape), np.broadcast_to(log_other, cumulative.shape)
    )


def ratio_log_evalue_columns(
    canary_events: FloatArray,
    canary_total: FloatArray,
    baseline_events: FloatArray,
    baseline_total: FloatArray,
    r0: float | FloatArray,
    increase: bool = True,
    weight: FloatArray | None = None,
    log_effects: FloatArray = counts.LOG_EFFECT_GRID,
) -> FloatArray:
    """counts.ratio_log_evalue_columns made robust: log E per look and column (looks x columns).

    The bet is on the canary's share of the look's bad events, against θ_s(r0) given their number; the fast
    path (module text) returns the binomial evidence while both sides look binomial. `r0` is
    one number or one per column; the weight (predictable, from both sides' dispersion) may be passed in
    when many r0 share the same data."""
    ce, be = np.asarray(canary_events, dtype=float), np.asarray(baseline_events, dtype=float)
    ct, bt = np.asarray(canary_total, dtype=float), np.asarray(baseline_total, dtype=float)
    looks, columns = ce.shape
    if looks == 0:
        return np.zeros(ce.shape)
    r0s = np.broadcast_to(np.asarray(r0, dtype=float), (columns,))
    fast = binomial_looking(ce, ct, be, bt)
    raw_ce, raw_be = ce, be  # what the fast path's test reads
    rho, informative = counts.shares(ct, bt)
    used = informative[:, None] & ((ce + be) > 0)
    ce, be = np.where(used, ce, 0.0), np.where(used, be, 0.0)
    binomial = _binomial_ratio_columns(ce, rho, informative, be, r0s, increase, log_effects)
    theta0 = rho[:, None] * r0s[None, :] / (rho[:, None] * r0s[None, :] + 1.0 - rho[:, None])
    scores = mid_p_scores(ce, ce + be, theta0, high=increase)
    if weight is None:
        weight = ratio_weight(ce, ct, be, bt)
    robust_log_e = combine(binomial.log_e, bet_log_increments(scores), weight)
    evidence = np.where(fast, binomial.log_e, np.minimum(binomial.log_e, robust_log_e))
    return _monotone(evidence, fast, binomial, raw_ce, ct, raw_be, bt, increase)


def _monotone(
    evidence: FloatArray,
    fast: BoolArray,
    binomial: _BinomialRatio,
    ce: FloatArray,
    ct: FloatArray,
    be: FloatArray,
    bt: FloatArray,
    increase: bool,
) -> FloatArray:
    """The evidence at each look made monotone in that look's canary bad events: never less than it would be
    with fewer of them (more, for a decrease), so more harm in a look never weakens the case against the canary.

    Only a look that shut the fast path by having more harm than the dispersion test accepts can be below
    that: it gets at least the binomial evidence it would have had with the most harmful count that keeps the
    path open, b. Since b is less harmful than the look's own count, that is at most the binomial evidence E_s
    itself, so the bound of the module text (D_s ≤ log E_s) still holds."""
    shut = ~fast & _enough_looks(ct, bt)[:, None] & (ct > 0)[:, None]
    if not bool(np.any(shut)):
        return evidence
    look, column = np.nonzero(shut)
    k, n = ce[look, column], ct[look]
    parts = _pearson_parts(ce, ct, be, bt, look, column)
    typical = n * (parts[0] + 0.5) / (parts[1] + 1.0)  # the canary count nearest its pooled rate
    harmful = k > typical if increase else k < typical
    candidate = harmful & _fast_path_open(typical, n, *parts)
    if not bool(np.any(candidate)):
        return evidence
    look, column, k, n, typical = look[candidate], column[candidate], k[candidate], n[candidate], typical[candidate]
    kept = tuple(part[candidate] for part in parts)
    near, far = typical, k
    for _ in range(ENVELOPE_STEPS):  # bisect between an open count (near) and the look's own, shut one (far)
        middle = 0.5 * (near + far)
        opened = _fast_path_open(middle, n, *kept)
        near, far = np.where(opened, middle, near), np.where(opened, far, middle)
    floor = binomial.with_canary_events(look, column, near, be[look, column])
    out = np.array(evidence, dtype=float)
    out[look, column] = np.maximum(out[look, column], floor)
    return out


def _fast_path_open(
    count: FloatArray,
    n: FloatArray,
    prior_k: FloatArray,
    prior_n: FloatArray,
    prior_k2n: FloatArray,
    baseline_chi2: FloatArray,
    df: FloatArray,
) -> BoolArray:
    """Would the fast path's dispersion test pass had the canary counted `count` bad events of `n` in the look?"""
    sum_k, sum_n, sum_k2n = prior_k + count, prior_n + n, prior_k2n + count**2 / n
    rate = (sum_k + 0.5) / (sum_n + 1.0)
    chi2 = np.maximum((sum_k2n - 2.0 * rate * sum_k + rate**2 * sum_n) / (rate * (1.0 - rate)), 0.0)
    return np.asarray(chdtrc(df, chi2 + baseline_chi2) > FAST_PATH_P, dtype=bool)


def _enough_looks(ct: FloatArray, bt: FloatArray) -> BoolArray:
    canary_looks = np.cumsum(np.asarray(ct) > 0)
    baseline_looks = np.cumsum(np.asarray(bt) > 0)
    return np.asarray(np.minimum(canary_looks, baseline_looks) >= FAST_PATH_LOOKS, dtype=bool)


def _pearson_parts(
    ce: FloatArray, ct: FloatArray, be: FloatArray, bt: FloatArray, look: IntArray, column: IntArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """For the fast path's test at (look, column): the canary's sums over earlier looks (bad events, trials,
    events²/trials), the baseline's Pearson statistic up to the look, and the test's degrees of freedom."""
    n = np.broadcast_to(np.asarray(ct, dtype=float)[:, None], ce.shape)
    live = n > 0
    k2n = np.where(live, ce**2 / np.where(live, n, 1.0), 0.0)

    def before(values: FloatArray) -> FloatArray:
        running = np.cumsum(values, axis=0)
        return np.asarray(running - values, dtype=float)[look, column]

    baseline_chi2, baseline_looks = pearson(be, bt, include_current=True)
    canary_looks = np.cumsum(live, axis=0)[look, column].astype(float)
    df = np.maximum(canary_looks + baseline_looks[look, column] - 2.0, 1.0)
    return before(ce), before(np.where(live, n, 0.0)), before(k2n), baseline_chi2[look, column], df


def ratio_weight(
    canary_events: FloatArray, canary_total: FloatArray, baseline_events: FloatArray, baseline_total: FloatArray
) -> FloatArray:
    """The binomial part's weight per look and column, from the dispersion of both sides' bad events."""
    return binomial_weight(dispersion(canary_events, canary_total), dispersion(baseline_events, baseline_total))


def ratio_log_evalues(
    canary_events: FloatArray,
    canary_total: FloatArray,
    baseline_events: FloatArray,
    baseline_total: FloatArray,
    r0: float,
    increase: bool = True,
) -> counts.RatioEvidence:
    log_e = ratio_log_evalue_columns(
        np.asarray(canary_events, dtype=float)[:, None],
        canary_total,
        np.asarray(baseline_events, dtype=float)[:, None],
        baseline_total,
        r0,
        increase,
    )
    return counts.RatioEvidence(log_evalues=np.asarray(log_e[:, 0], dtype=float), r0=r0, increase=increase)


def ratio_confidence_bounds(
    canary_events: FloatArray,
    canary_total: FloatArray,
    baseline_events: FloatArray,
    baseline_total: FloatArray,
    alpha: float,
) -> tuple[float, float]:
    """Bounds on the rate ratio now that invert the robust test (each side at alpha / 2), so that a bound
    beyond r0 and a rejection of r0 always go together."""
    ce = np.asarray(canary_events, dtype=float)
    be = np.asarray(baseline_events, dtype=float)
    ct, bt = np.asarray(canary_total, dtype=float), np.asarray(baseline_total, dtype=float)
    threshold = math.log(2.0 / alpha)
    weight1 = ratio_weight(ce[:, None], ct, be[:, None], bt)

    def excess(increase: bool) -> counts.VectorFunction:
        def f(log_r0: FloatArray) -> FloatArray:
            r0 = np.exp(np.asarray(log_r0, dtype=float))
            width = len(r0)
            log_e = ratio_log_evalue_columns(
                np.repeat(ce[:, None], width, axis=1),
                ct,
                np.repeat(be[:, None], width, axis=1),
                bt,
                r0,
                increase,
                np.repeat(weight1, width, axis=1),
            )
            return np.asarray(log_e[-1] - threshold, dtype=float)

        return f

    center, scale = counts.log_ratio_guess(ce, ct, be, bt)
    return counts.invert_ratio_bounds(excess(True), excess(False), center, scale, BOUND_TOLERANCE)


# ---------------------------------------------------------------- one sample: a rate against a bound


def rate_log_evalues(events: FloatArray, trials: FloatArray, bound: float | FloatArray, high: bool) -> FloatArray:
    """Robust e-process against "the rate is at most `bound`" (`high`) or "at least" (not `high`): log E per
    look, or per look and bound when `bound` is an array."""
    x1 = np.asarray(events, dtype=float)
    n1 = np.asarray(trials, dtype=float)
    bounds = np.atleast_1d(np.asarray(bound, dtype=float))
    if x1.shape[0] == 0:
        return np.zeros((0, len(bounds))) if np.ndim(bound) else np.zeros(0)
    x = np.repeat(x1[:, None], len(bounds), axis=1)
    n = np.repeat(n1[:, None], len(bounds), axis=1)
    binomial = counts.rate_log_evalue_columns(x, n, bounds, high)
    scores = mid_p_scores(x, n, np.broadcast_to(bounds[None, :], x.shape), high=high)
    weight = np.repeat(binomial_weight(dispersion(x1[:, None], n1)), len(bounds), axis=1)
    log_e = combine(binomial, bet_log_increments(scores), weight)
    return log_e if np.ndim(bound) else np.asarray(log_e[:, 0], dtype=float)


def rate_confidence_bounds(events: FloatArray, trials: FloatArray, alpha: float) -> counts.RateBounds:
    """Bounds on the rate now that invert rate_log_evalues (each side at alpha / 2)."""
    x, n = np.asarray(events, dtype=float), np.asarray(trials, dtype=float)
    total_events, total_trials = float(np.sum(x)), float(np.sum(n))
    if total_trials <= 0:
        return counts.RateBounds(estimate=math.nan, lower=0.0, upper=1.0)
    estimate = min(max(total_events / total_trials, 0.0), 1.0)
    threshold = math.log(2.0 / alpha)

    def excess(high: bool) -> counts.VectorFunction:
        def f(log_odds: FloatArray) -> FloatArray:
            rates = 1.0 / (1.0 + np.exp(-np.asarray(log_odds, dtype=float)))
            return np.asarray(rate_log_evalues(x, n, rates, high)[-1] - threshold, dtype=float)

        return f

    smoothed = (total_events + 0.5) / (total_trials + 1.0)
    center = math.log(smoothed) - math.log1p(-smoothed)
    scale = 1.0 / math.sqrt(total_trials * smoothed * (1.0 - smoothed))
    lower, upper = counts.invert_rate_bounds(excess(True), excess(False), center, scale, BOUND_TOLERANCE)
    return counts.RateBounds(estimate=estimate, lower=lower, upper=upper)
