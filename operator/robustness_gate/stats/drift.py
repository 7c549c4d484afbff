"""The sequential test that canary and baseline share one distribution over buckets (or categories).

Binomial form. Given which bucket an observation fell in, under "same distribution" its side is a coin with
the canary's traffic share ρ_s of that look, whatever the distribution. Each bucket gets a two-sided
rate-ratio mixture (half the weight on more, half on fewer canary observations); buckets are independent
given the counts, so the product over buckets is an e-process, valid at every look and for any traffic.

That independence is the binomial model's: it fails when a side's bucket shares vary from look to look
more than sampling does (one pod serves another mix of users for a while, a batch client sends its own
inputs), independently of the other side. Then every bucket's count is overdispersed and, worse, the
buckets' deviations are tied together (shares sum to one), so the product over buckets multiplies
evidence that is not there: simulated A/A runs with Dirichlet shares redrawn every minute fail far more
often than alpha, and more so the more traffic there is.

Robust form: one factor per look, F_s = w_s · min(L_s, e^LOOK_CAP) + (1 − w_s) · B_s, as stats.robust does
for counts, with
* L_s the look's increment of the binomial form above (capped, so a look moves it by at most e^LOOK_CAP);
* B_s a single bet per look, mixed over its size λ: 1 + λ x_s, where x_s = Σ_j d_j (2u_sj − 1), u_sj the
  mid-p value of bucket j's canary count under Binomial(its total, ρ_s), and d a direction fixed before
  the look (the buckets' standardised deviations so far, scaled so that Σ|d_j| ≤ 1). |x_s| ≤ 1 and, under
  the binomial null, E[x_s | past, counts] = 0 whatever the dependence between buckets, because the bet is
  linear in the scores: one bet per look, not one per bucket;
* w_s, the binomial part's weight, 1 while the looks so far are as dispersed as binomial on every bucket
  and both sides, falling to 0 as they get more dispersed (predictable).
While every bucket's looks so far, the current one included, pass the dispersion test of stats.robust's fast
path, the evidence is the binomial form's; otherwise it is the smaller of the two. It is never above the
binomial form, so under the binomial null it rejects no more often than alpha; beyond that model the
guarantee rests on the bet's scores being centred, as docs/statistics.md says.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import chdtrc

from robustness_gate.series import BoolArray, FloatArray
from robustness_gate.stats import counts, robust

# Per-bucket share ratios mixed over by the binomial form: 1.05 to 3. A shift near the usual PSI
# thresholds (0.1 to 0.5 on decile buckets) moves bucket shares by factors of about 1.2 to 3, and a
# grid reaching 10 (the error-rate test's) spends most of its weight where no drift of that size is:
# simulated at PSI 0.25 (1 and 9 predictions/s), the median time to detect fell from 3 to 2 looks of
# a minute. Larger shifts carry so much evidence that they are detected quickly anyway.
DRIFT_EFFECT_GRID: FloatArray = np.linspace(math.log(1.05), math.log(3.0), 16)
# The binomial form decides alone from this many looks with data on each side, while both sides' looks so far
# pass the homogeneity test at stats.robust.FAST_PATH_P. Fewer looks than the count tests' fast path need: each
# look adds (buckets - 1) degrees of freedom to the test, not one.
FAST_PATH_LOOKS = 3


def binomial_log_evalues(canary: FloatArray, baseline: FloatArray) -> FloatArray:
    """The binomial form: log E per look from per-look bucket counts (looks x buckets) of each side."""
    canary, baseline = np.asarray(canary, dtype=float), np.asarray(baseline, dtype=float)
    canary_total, baseline_total = canary.sum(axis=1), baseline.sum(axis=1)
    # All buckets at once; a bucket that never saw an observation contributes log 1 = 0.
    up, down = (
        counts.ratio_log_evalue_columns(
            canary, canary_total, baseline, baseline_total, 1.0, increase, DRIFT_EFFECT_GRID
        )
        for increase in (True, False)
    )
    return np.asarray(np.sum(np.logaddexp(up, down) - math.log(2.0), axis=1), dtype=float)


def robust_log_evalues(canary: FloatArray, baseline: FloatArray) -> FloatArray:
    """The robust form (module text): log E per look from per-look bucket counts of each side."""
    canary, baseline = np.asarray(canary, dtype=float), np.asarray(baseline, dtype=float)
    looks = canary.shape[0]
    binomial = binomial_log_evalues(canary, baseline)
    if looks == 0:
        return binomial
    canary_total, baseline_total = canary.sum(axis=1), baseline.sum(axis=1)
    rho, informative = counts.shares(canary_total, baseline_total)
    in_bucket = canary + baseline
    scores = robust.mid_p_scores(canary, in_bucket, rho[:, None], high=True)
    scores = np.where(informative[:, None], scores, 0.0)
    bets = robust.bet_log_increments(_directed(scores, canary, in_bucket, rho, informative)[:, None])
    canary_before, canary_now = _homogeneity(canary), _homogeneity(canary, include_current=True)
    baseline_before, baseline_now = _homogeneity(baseline), _homogeneity(baseline, include_current=True)
    weight = robust.binomial_weight(_per_df(*canary_before), _per_df(*baseline_before))
    mixed = robust.combine(binomial[:, None], bets, weight[:, None])[:, 0]
    looks_seen = np.minimum(np.cumsum(canary_total > 0), np.cumsum(baseline_total > 0))
    chi2, df = canary_now[0] + baseline_now[0], canary_now[1] + baseline_now[1]
    fast = (looks_seen >= FAST_PATH_LOOKS) & (df > 0) & (chdtrc(np.maximum(df, 1.0), chi2) > robust.FAST_PATH_P)
    return np.asarray(np.where(fast, binomial, np.minimum(binomial, mixed)), dtype=float)


def _homogeneity(counts_: FloatArray, include_current: bool = False) -> tuple[FloatArray, FloatArray]:
    """Per look s: Pearson's statistic that one side's looks before s (or up to s) share one bucket distribution,
    and its degrees of freedom ((buckets seen - 1) x (looks with data - 1)). About 1 per degree of freedom when
    the looks are multinomial samples of one distribution, larger when the shares vary from look to look."""
    c = np.asarray(counts_, dtype=float)
    n = c.sum(axis=1)
    live = n > 0
    c_over_n = np.where(live[:, None], c**2 / np.where(live, n, 1.0)[:, None], 0.0)

    def sums(values: FloatArray) -> FloatArray:
        running = np.cumsum(values, axis=0)
        return np.asarray(running if include_current else running - values, dtype=float)

    pooled, total, squares = sums(c), sums(n), sums(c_over_n)
    looks = sums(live.astype(float))
    seen = pooled > 0
    share = np.where(seen, pooled / np.where(total > 0, total, 1.0)[:, None], 1.0)
    # sum over looks and buckets of (c - n p)^2 / (n p) = sum_j (sum_s c^2 / n) / p_j - N
    chi2 = np.sum(np.where(seen, squares / share, 0.0), axis=1) - total
    df = np.maximum(np.sum(seen, axis=1) - 1.0, 0.0) * np.maximum(looks - 1.0, 0.0)
    return np.asarray(np.maximum(chi2, 0.0), dtype=float), np.asarray(df, dtype=float)


def _per_df(chi2: FloatArray, df: FloatArray) -> FloatArray:
    """Dispersion: Pearson's statistic per degree of freedom, nan while there is none."""
    return np.asarray(np.where(df > 0, chi2 / np.where(df > 0, df, 1.0), np.nan), dtype=float)


def _directed(
    scores: FloatArray, canary: FloatArray, in_bucket: FloatArray, rho: FloatArray, informative: BoolArray
) -> FloatArray:
    """x_s = Σ_j d_j scores_sj with d from the looks before s: each bucket's canary surplus over its
    expectation, standardised, over the sum of their sizes (so Σ|d_j| is at most 1; 0 before any data)."""
    live = informative[:, None]
    expected = np.where(live, in_bucket * rho[:, None], 0.0)
    spread = np.where(live, in_bucket * rho[:, None] * (1.0 - rho[:, None]), 0.0)
    surplus = np.where(live, canary, 0.0) - expected

    def before(values: FloatArray) -> FloatArray:
        running = np.cumsum(values, axis=0)
        return np.asarray(running - values, dtype=float)

    past_surplus, past_spread = before(surplus), before(spread)
    z = np.where(past_spread > 0, past_surplus / np.sqrt(np.where(past_spread > 0, past_spread, 1.0)), 0.0)
    size = np.sum(np.abs(z), axis=1, keepdims=True)
    direction = np.where(size > 0, z / np.where(size > 0, size, 1.0), 0.0)
    return np.asarray(np.sum(direction * scores, axis=1), dtype=float)
