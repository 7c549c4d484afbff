"""The robust count tests checked against scipy and closed forms, and their error rates by seeded simulation
under the binomial model and beyond it (overdispersed looks, one-side blips)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from robustness_gate.series import FloatArray
from robustness_gate.stats import counts, robust

LOOKS = 30
CANARY_PER_LOOK, BASELINE_PER_LOOK = 600.0, 5400.0  # 10 and 90 requests a second, one-minute looks


def _aa_streams(
    rng: np.random.Generator, runs: int, rate: float, concentration: float | None
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Bad events per look (looks x runs) on both sides at the same mean rate; with a concentration, each
    look's rate is drawn from Beta(rate κ, (1 − rate) κ) independently per side."""
    ct, bt = np.full(LOOKS, CANARY_PER_LOOK), np.full(LOOKS, BASELINE_PER_LOOK)

    def side(n: FloatArray) -> FloatArray:
        if concentration is None:
            p = np.full((LOOKS, runs), rate)
        else:
            p = rng.beta(rate * concentration, (1 - rate) * concentration, size=(LOOKS, runs))
        return np.asarray(rng.binomial(n[:, None].astype(np.int64), p), dtype=float)

    return side(ct), ct, side(bt), bt


def _rejected(log_e: FloatArray, alpha: float) -> FloatArray:
    return np.asarray(np.max(log_e, axis=0) >= math.log(1 / alpha), dtype=float)


def test_mid_p_scores_match_scipy() -> None:
    x, n, p = np.array([0.0, 3.0, 7.0, 20.0]), np.array([10.0, 50.0, 50.0, 20.0]), np.array([0.1, 0.05, 0.2, 0.5])
    u = stats.binom.cdf(x - 1, n, p) + 0.5 * stats.binom.pmf(x, n, p)
    assert robust.mid_p_scores(x, n, p, high=True) == pytest.approx(2 * u - 1, abs=1e-12)
    assert robust.mid_p_scores(x, n, p, high=False) == pytest.approx(1 - 2 * u, abs=1e-12)
    assert robust.mid_p_scores(np.array([0.0]), np.array([0.0]), np.array([0.3]), high=True)[0] == 0.0


@pytest.mark.parametrize(("n", "p"), [(1, 0.3), (12, 0.01), (200, 0.07), (5000, 0.001)])
def test_the_mid_p_score_is_centred_under_the_binomial_null(n: int, p: float) -> None:
    # E[2u − 1] = 0 exactly: summed over the whole binomial distribution, not sampled.
    x = np.arange(n + 1, dtype=float)
    scores = robust.mid_p_scores(x, np.full(n + 1, float(n)), np.full(n + 1, p), high=True)
    assert float(np.sum(stats.binom.pmf(x, n, p) * scores)) == pytest.approx(0.0, abs=1e-12)


def test_a_look_moves_the_bet_by_a_bounded_factor() -> None:
    scores = np.array([[1.0], [-1.0], [1.0], [0.3], [-0.7], [1.0]])
    increments = robust.bet_log_increments(scores)[:, 0]
    largest = float(robust.BET_FRACTIONS.max())
    assert np.all(increments <= math.log1p(largest) + 1e-12) and np.all(increments >= math.log1p(-largest) - 1e-12)
    # The mixture is the grid average of the products of 1 + λ s over looks.
    products = np.prod(1 + robust.BET_FRACTIONS[None, :] * scores, axis=0)
    assert math.exp(float(np.sum(increments))) == pytest.approx(float(np.mean(products)), rel=1e-10)


def test_dispersion_is_about_one_for_binomial_counts_and_large_for_overdispersed_ones() -> None:
    rng = np.random.default_rng(7)
    ce, ct, _, _ = _aa_streams(rng, 400, 0.01, None)
    assert float(np.nanmean(robust.dispersion(ce, ct)[-1])) == pytest.approx(1.0, abs=0.1)
    ce, ct, _, _ = _aa_streams(rng, 400, 0.01, 50.0)
    # Beta-binomial: 1 + (n − 1) / (κ + 1) = 12.7 at n = 600, κ = 50.
    assert float(np.nanmedian(robust.dispersion(ce, ct)[-1])) > 6.0
    # Predictable: nothing known before two looks, and look s never sees look s.
    d = robust.dispersion(ce, ct)
    assert np.all(np.isnan(d[:2]))
    changed = ce.copy()
    changed[10] += 50
    assert np.array_equal(robust.dispersion(changed, ct)[:11], d[:11], equal_nan=True)


def test_the_binomial_part_loses_weight_as_dispersion_grows() -> None:
    weights = robust.binomial_weight(np.array([math.nan, 0.8, 1.5, 2.25, 3.0, 40.0]))
    assert weights.tolist() == [robust.UNKNOWN_WEIGHT, 1.0, 1.0, 0.5, 0.0, 0.0]
    # The worst side decides.
    assert robust.binomial_weight(np.array([1.0]), np.array([5.0])).tolist() == [0.0]


def test_one_look_cannot_decide_alone() -> None:
    # Every canary request fails and no baseline request does: overwhelming evidence, capped per look until
    # the looks are enough to see whether the counts vary like binomial ones.
    looks = 8
    ce, ct = np.full(looks, 600.0), np.full(looks, 600.0)
    be, bt = np.zeros(looks), np.full(looks, 5400.0)
    log_e = robust.ratio_log_evalues(ce, ct, be, bt, 1.2).log_evalues
    early = robust.FAST_PATH_LOOKS - 1
    assert early >= 3 and np.all(np.diff(log_e, prepend=0.0)[:early] <= robust.LOOK_CAP + 1e-9)
    first = int(np.flatnonzero(log_e >= math.log(100))[0]) + 1
    assert first == math.ceil(math.log(100) / robust.LOOK_CAP) == 4


def test_the_fast_path_is_the_binomial_test_while_the_looks_look_binomial() -> None:
    rng = np.random.default_rng(3)
    runs = 2000
    ct, bt = np.full(LOOKS, CANARY_PER_LOOK), np.full(LOOKS, BASELINE_PER_LOOK)
    ce = rng.binomial(ct[:, None].astype(np.int64), 0.02, size=(LOOKS, runs)).astype(float)
    be = rng.binomial(bt[:, None].astype(np.int64), 0.01, size=(LOOKS, runs)).astype(float)
    fast = robust.binomial_looking(ce, ct, be, bt)
    assert not fast[: robust.FAST_PATH_LOOKS - 1].any()
    # On binomial counts the dispersion test passes at its level: open 1 − FAST_PATH_P of the time.
    open_share = fast[robust.FAST_PATH_LOOKS - 1 :].mean(axis=1)
    assert np.all(np.abs(open_share - (1 - robust.FAST_PATH_P)) < 0.03)
    robust_e = robust.ratio_log_evalue_columns(ce, ct, be, bt, 1.1)
    binomial_e = counts.ratio_log_evalue_columns(ce, ct, be, bt, 1.1)
    assert robust_e[fast] == pytest.approx(binomial_e[fast], rel=1e-9)
    assert np.all(robust_e <= binomial_e + 1e-9)  # never more evidence than the binomial test: same alpha


def test_the_look_that_bursts_shuts_the_fast_path() -> None:
    ce, ct = np.full(11, 6.0), np.full(11, 600.0)
    be, bt = np.full(11, 54.0), np.full(11, 5400.0)
    ce[-1] = 60.0  # 10% errors on the canary for one look
    fast = robust.binomial_looking(ce[:, None], ct, be[:, None], bt)[:, 0]
    assert fast[robust.FAST_PATH_LOOKS - 1 : -1].all() and not fast[-1]


def test_pearson_matches_scipy_chisquare() -> None:
    k, n = np.array([3.0, 9.0, 5.0, 0.0, 7.0]), np.array([400.0, 500.0, 450.0, 0.0, 600.0])
    chi2, looks = robust.pearson(k[:, None], n, include_current=True)
    live = n > 0
    rate = (k.sum() + 0.5) / (n.sum() + 1.0)
    observed = np.stack([k[live], n[live] - k[live]])
    expected = np.stack([n[live] * rate, n[live] * (1 - rate)])
    reference = stats.chisquare(observed.ravel(), expected.ravel(), sum_check=False).statistic
    assert float(chi2[-1, 0]) == pytest.approx(float(reference), rel=1e-9)
    assert looks[:, 0].tolist() == [1, 2, 3, 3, 4]


def test_a_doubled_error_rate_is_found_about_as_fast_as_by_the_binomial_test() -> None:
    rng = np.random.default_rng(9)
    runs = 400
    ct, bt = np.full(LOOKS, CANARY_PER_LOOK), np.full(LOOKS, BASELINE_PER_LOOK)
    ce = rng.binomial(ct[:, None].astype(np.int64), 0.02, size=(LOOKS, runs)).astype(float)
    be = rng.binomial(bt[:, None].astype(np.int64), 0.01, size=(LOOKS, runs)).astype(float)
    threshold = math.log(100)

    def median_look(log_e: FloatArray) -> float:
        crossed = log_e >= threshold
        return float(np.median(np.where(crossed.any(axis=0), np.argmax(crossed, axis=0) + 1, LOOKS + 1)))

    fast = median_look(robust.ratio_log_evalue_columns(ce, ct, be, bt, 1.1))
    binomial = median_look(counts.ratio_log_evalue_columns(ce, ct, be, bt, 1.1))
    assert fast <= 1.25 * binomial


def test_a_single_burst_cannot_decide_and_is_discounted_later() -> None:
    # Ten quiet looks at 1%, then one look where the canary serves 30% errors: not a rollback at α = 1%.
    ce, ct = np.full(11, 6.0), np.full(11, 600.0)
    be, bt = np.full(11, 54.0), np.full(11, 5400.0)
    ce[-1] = 180.0
    robust_e = robust.ratio_log_evalues(ce, ct, be, bt, 1.2).log_evalues
    binomial_e = counts.ratio_log_evalues(ce, ct, be, bt, 1.2).log_evalues
    assert robust_e[-1] < math.log(100) < binomial_e[-1]


@pytest.mark.parametrize("concentration", [None, 50.0, 200.0])
def test_aa_false_rejections_stay_within_alpha(concentration: float | None) -> None:
    # The guarantee: over 30 looks, however often one looks, "canary worse than baseline × 1.2"... is
    # rejected at most α of the time when both sides have the same rate, also when rates vary per look.
    rng = np.random.default_rng(2024 if concentration is None else int(concentration))
    runs, alpha = 2000, 0.05
    ce, ct, be, bt = _aa_streams(rng, runs, 0.01, concentration)
    rate = float(np.mean(_rejected(robust.ratio_log_evalue_columns(ce, ct, be, bt, 1.0), alpha)))
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
    if concentration == 50.0:  # the binomial model alone does not hold here: the robust test earns its keep
        plain = float(np.mean(_rejected(counts.ratio_log_evalue_columns(ce, ct, be, bt, 1.0), alpha)))
        assert plain > 3 * alpha


def test_aa_one_side_blips_stay_within_alpha() -> None:
    # 1% errors, and one look in ten (at random, either side) at 10%: the blips of the table.
    rng = np.random.default_rng(11)
    runs, alpha = 2000, 0.05
    ct, bt = np.full(LOOKS, CANARY_PER_LOOK), np.full(LOOKS, BASELINE_PER_LOOK)
    blip = rng.random((LOOKS, runs)) < 0.1
    on_canary = rng.random((LOOKS, runs)) < 0.5
    pc = np.where(blip & on_canary, 0.10, 0.01)
    pb = np.where(blip & ~on_canary, 0.10, 0.01)
    ce = rng.binomial(ct[:, None].astype(np.int64), pc).astype(float)
    be = rng.binomial(bt[:, None].astype(np.int64), pb).astype(float)
    rate = float(np.mean(_rejected(robust.ratio_log_evalue_columns(ce, ct, be, bt, 1.0), alpha)))
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_a_doubled_error_rate_is_still_found() -> None:
    rng = np.random.default_rng(5)
    runs = 400
    ct, bt = np.full(LOOKS, CANARY_PER_LOOK), np.full(LOOKS, BASELINE_PER_LOOK)
    ce = rng.binomial(ct[:, None].astype(np.int64), 0.02, size=(LOOKS, runs)).astype(float)
    be = rng.binomial(bt[:, None].astype(np.int64), 0.01, size=(LOOKS, runs)).astype(float)
    found = _rejected(robust.ratio_log_evalue_columns(ce, ct, be, bt, 1.1), 0.01)
    assert float(np.mean(found)) >= 0.9


@pytest.mark.parametrize("concentration", [None, 200.0])
def test_aa_slo_false_rejections_stay_within_alpha(concentration: float | None) -> None:
    # A canary at exactly its SLO (1% errors) is shown above it at most α of the time.
    rng = np.random.default_rng(99)
    runs, alpha = 300, 0.05
    ce, ct, _, _ = _aa_streams(rng, runs, 0.01, concentration)
    hits = [robust.rate_log_evalues(ce[:, i], ct, 0.01, high=True).max() >= math.log(1 / alpha) for i in range(runs)]
    rate = float(np.mean(hits))
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_rate_evidence_is_the_binomial_mixture_while_counts_look_binomial() -> None:
    # With weight 1 (no dispersion) and small looks (no cap reached), the robust SLO test is the mixture.
    x, n = np.array([1.0, 0.0, 2.0, 1.0, 0.0]), np.array([100.0, 100.0, 100.0, 100.0, 100.0])
    binomial = counts.rate_log_evalue_columns(x[:, None], n[:, None], np.array([0.01]), True)[:, 0]
    weight = robust.binomial_weight(robust.dispersion(x[:, None], n))[:, 0]
    assert weight[2:].tolist() == [1.0, 1.0, 1.0]
    combined = robust.rate_log_evalues(x, n, 0.01, high=True)
    assert np.diff(combined, prepend=0.0)[2:] == pytest.approx(np.diff(binomial, prepend=0.0)[2:], abs=1e-12)


def test_ratio_bounds_agree_with_the_test() -> None:
    # A lower bound above r0 exactly when the last look rejects "ratio <= r0" (each side at alpha / 2).
    rng = np.random.default_rng(3)
    alpha = 0.02
    for _ in range(5):
        looks = int(rng.integers(5, 20))
        ct, bt = np.full(looks, 600.0), np.full(looks, 5400.0)
        ce = rng.binomial(600, 0.03, size=looks).astype(float)
        be = rng.binomial(5400, 0.01, size=looks).astype(float)
        lower, upper = robust.ratio_confidence_bounds(ce, ct, be, bt, alpha)
        assert 0 < lower < upper
        threshold = math.log(2 / alpha)
        for r0, rejected in ((lower * 0.99, True), (lower * 1.01, False)):
            log_e = robust.ratio_log_evalues(ce, ct, be, bt, r0, increase=True).log_evalues[-1]
            assert bool(log_e >= threshold) is rejected
        if math.isfinite(upper):
            for r0, rejected in ((upper * 1.01, True), (upper * 0.99, False)):
                log_e = robust.ratio_log_evalues(ce, ct, be, bt, r0, increase=False).log_evalues[-1]
                assert bool(log_e >= threshold) is rejected


def test_rate_bounds_agree_with_the_test() -> None:
    x, n = np.array([3.0, 9.0, 5.0, 7.0, 4.0, 6.0]), np.full(6, 400.0)
    alpha = 0.02
    bounds = robust.rate_confidence_bounds(x, n, alpha)
    assert bounds.lower < bounds.estimate < bounds.upper
    threshold = math.log(2 / alpha)
    assert robust.rate_log_evalues(x, n, bounds.lower * 0.99, high=True)[-1] >= threshold
    assert robust.rate_log_evalues(x, n, bounds.lower * 1.01, high=True)[-1] < threshold
    assert robust.rate_log_evalues(x, n, bounds.upper * 1.01, high=False)[-1] >= threshold
    assert robust.rate_log_evalues(x, n, bounds.upper * 0.99, high=False)[-1] < threshold
