"""Count tests checked against scipy and closed forms, and their error rates by seeded simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.optimize import brentq

from robustness_gate.stats import counts


def test_one_look_evalue_is_the_binomial_likelihood_ratio_mixture() -> None:
    # With one look, the e-value is the grid average of Bin(k, theta_r) / Bin(k, theta_r0) at x_c.
    ce, ct, be, bt = 7.0, 1000.0, 20.0, 9000.0
    rho = ct / (ct + bt)
    r0 = 1.2
    evidence = counts.ratio_log_evalues(np.array([ce]), np.array([ct]), np.array([be]), np.array([bt]), r0)
    k = int(ce + be)

    def theta(r: float) -> float:
        return rho * r / (rho * r + 1 - rho)

    ratios = r0 * np.exp(counts.LOG_EFFECT_GRID)
    expected = np.mean([stats.binom.pmf(int(ce), k, theta(r)) / stats.binom.pmf(int(ce), k, theta(r0)) for r in ratios])
    assert math.exp(evidence.log_evalues[0]) == pytest.approx(expected, rel=1e-10)


def test_looks_multiply_likelihood_ratios() -> None:
    ce, ct = np.array([3.0, 0.0, 5.0]), np.array([100.0, 50.0, 400.0])
    be, bt = np.array([2.0, 1.0, 4.0]), np.array([300.0, 50.0, 100.0])
    evidence = counts.ratio_log_evalues(ce, ct, be, bt, 1.0)
    ratios = np.exp(counts.LOG_EFFECT_GRID)
    products = np.ones_like(ratios)
    running = []
    for c1, n1, c2, n2 in zip(ce, ct, be, bt, strict=True):
        rho = n1 / (n1 + n2)
        th = rho * ratios / (rho * ratios + 1 - rho)
        products *= stats.binom.pmf(c1, c1 + c2, th) / stats.binom.pmf(c1, c1 + c2, rho)
        running.append(np.mean(products))
    assert np.exp(evidence.log_evalues) == pytest.approx(running, rel=1e-10)


def test_no_bad_events_gives_no_evidence() -> None:
    zeros = np.zeros(30)
    evidence = counts.ratio_log_evalues(zeros, np.full(30, 100.0), zeros, np.full(30, 900.0), 1.0)
    assert np.all(evidence.log_evalues == 0) and evidence.p_value == 1.0


def test_decrease_direction_mirrors_increase() -> None:
    # Swapping the sides turns "canary higher" into "baseline higher": same evidence, ratio inverted.
    ce, ct, be, bt = np.array([30.0]), np.array([1000.0]), np.array([10.0]), np.array([1000.0])
    up = counts.ratio_log_evalues(ce, ct, be, bt, 1.0, increase=True)
    down = counts.ratio_log_evalues(be, bt, ce, ct, 1.0, increase=False)
    assert up.log_evalues == pytest.approx(down.log_evalues)


def test_beta_binomial_mixture_matches_numerical_integration() -> None:
    s, n, p, center = 4.0, 250.0, 0.01, 0.01
    a, b = 10 * center, 10 * (1 - center)
    marginal, _ = integrate.quad(
        lambda q: stats.beta.pdf(q, a, b) * q**s * (1 - q) ** (n - s),
        0,
        1,
        points=[0.01, 0.05],
        limit=500,
        epsabs=0,
        epsrel=1e-11,
    )
    expected = marginal / (p**s * (1 - p) ** (n - s))
    assert math.exp(float(counts.binomial_log_mixture(s, n, p, center))) == pytest.approx(expected, rel=1e-6)


def test_confidence_sequence_bounds_sit_on_the_threshold() -> None:
    bounds = counts.binomial_confidence_sequence(12, 2000, 0.01, center=0.005)
    for edge in (bounds.lower, bounds.upper):
        assert float(counts.binomial_log_mixture(12, 2000, edge, 0.005)) == pytest.approx(math.log(100), abs=1e-6)
    assert bounds.lower < 12 / 2000 < bounds.upper
    # Wider than the fixed-n Clopper-Pearson interval at the same level: the price of looking anytime.
    cp = stats.binomtest(12, 2000).proportion_ci(confidence_level=0.99, method="exact")
    assert bounds.lower < cp.low and bounds.upper > cp.high


def test_zero_events_bound_shrinks_like_the_closed_form() -> None:
    # With no events the upper bound must fall below p0 once (1 - p0)^-n outweighs the prior: n ~ log(1/α)/p0.
    small = counts.binomial_confidence_sequence(0, 200, 0.01, center=0.01)
    large = counts.binomial_confidence_sequence(0, 5000, 0.01, center=0.01)
    assert small.lower == 0 and small.upper > 0.01 and large.upper < 0.01


def test_bound_crossings_agree_with_the_interval() -> None:
    s = np.array([0.0, 5.0, 40.0, 90.0])
    n = np.array([100.0, 1000.0, 2000.0, 3000.0])
    above, below = counts.bound_crossings(s, n, 0.01, 0.01)
    for i in range(4):
        interval = counts.binomial_confidence_sequence(s[i], n[i], 0.01, center=0.01)
        assert bool(above[i]) == (interval.lower > 0.01)
        assert bool(below[i]) == (interval.upper < 0.01)
    assert bool(above[-1]) and not bool(below[-1])


def test_confidence_sequence_covers_at_every_look() -> None:
    rng = np.random.default_rng(7)
    runs, looks, p = 400, 40, 0.02
    misses = 0
    for _ in range(runs):
        s = np.cumsum(rng.binomial(100, p, looks)).astype(float)
        n = (np.arange(1, looks + 1) * 100.0).astype(np.float64)
        above, below = counts.bound_crossings(s, n, p, 0.05)
        misses += bool(np.any(above | below))
    assert misses / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)


@pytest.mark.parametrize("seed", range(8))
def test_ratio_bounds_are_where_the_last_looks_evalue_crosses_the_threshold(seed: int) -> None:
    # Inverting the test one r0 at a time with scipy's brentq gives the same bounds.
    rng = np.random.default_rng(seed)
    looks = int(rng.integers(1, 80))
    ct = rng.poisson(rng.uniform(5, 400), looks).astype(float)
    bt = rng.poisson(rng.uniform(5, 4000), looks).astype(float)
    p = rng.uniform(0.001, 0.1)
    ce = rng.binomial(ct.astype(np.int64), min(1.0, p * rng.uniform(0.5, 3.0))).astype(float)
    be = rng.binomial(bt.astype(np.int64), p).astype(float)
    threshold = math.log(2 / 0.01)

    def excess(log_r0: float, increase: bool) -> float:
        evidence = counts.ratio_log_evalues(ce, ct, be, bt, math.exp(log_r0), increase, final_only=True)
        return float(evidence.log_evalues[-1]) - threshold

    lower, upper = counts.ratio_confidence_bounds(ce, ct, be, bt, 0.01)
    if excess(-12, True) < 0:
        assert lower == 0.0
    else:
        assert math.log(lower) == pytest.approx(brentq(excess, -12, 12, args=(True,), xtol=1e-12), abs=1e-5)
    if excess(12, False) < 0:
        assert upper == math.inf
    else:
        assert math.log(upper) == pytest.approx(brentq(excess, -12, 12, args=(False,), xtol=1e-12), abs=1e-5)


def test_ratio_bounds_bracket_the_truth() -> None:
    ce, ct = np.full(20, 30.0), np.full(20, 1000.0)
    be, bt = np.full(20, 10.0), np.full(20, 1000.0)
    lower, upper = counts.ratio_confidence_bounds(ce, ct, be, bt, 0.01)
    assert 1.5 < lower < 3.0 < upper < 6.0


def _simulate(
    rng: np.random.Generator,
    runs: int,
    looks: int,
    canary_rps: float,
    baseline_rps: float,
    canary_p: float,
    baseline_p: float,
    step: float = 30.0,
) -> tuple[np.ndarray, ...]:
    ct = rng.poisson(canary_rps * step, (runs, looks)).astype(float)
    bt = rng.poisson(baseline_rps * step, (runs, looks)).astype(float)
    ce = rng.binomial(ct.astype(np.int64), canary_p).astype(float)
    be = rng.binomial(bt.astype(np.int64), baseline_p).astype(float)
    return ce, ct, be, bt


@pytest.mark.parametrize(
    ("canary_rps", "baseline_rps", "p"), [(20.0, 180.0, 0.01), (0.2, 1.8, 0.01), (10.0, 10.0, 0.001)]
)
def test_aa_false_rejections_stay_below_alpha(canary_rps: float, baseline_rps: float, p: float) -> None:
    rng = np.random.default_rng(20261122)
    runs, looks, alpha = 2000, 24, 0.01
    ce, ct, be, bt = _simulate(rng, runs, looks, canary_rps, baseline_rps, p, p)
    rejected = sum(counts.ratio_log_evalues(ce[i], ct[i], be[i], bt[i], 1.0).rejected(alpha) for i in range(runs))
    assert rejected / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_ab_regressions_are_detected() -> None:
    rng = np.random.default_rng(5)
    runs, looks = 300, 40
    ce, ct, be, bt = _simulate(rng, runs, looks, 10.0, 90.0, 0.02, 0.01)
    detected = [counts.ratio_log_evalues(ce[i], ct[i], be[i], bt[i], 1.0).first_rejection(0.01) for i in range(runs)]
    hits = [d for d in detected if d is not None]
    assert len(hits) / runs >= 0.95
    assert np.median(hits) <= 15  # looks of 30 s: a doubled error rate is shown within ~7 minutes


def test_logsumexp_rows_matches_scipy() -> None:
    from scipy.special import logsumexp

    from robustness_gate.stats.counts import logsumexp_rows

    rng = np.random.default_rng(3)
    values = rng.normal(0, 50, (40, 24))
    np.testing.assert_allclose(logsumexp_rows(values), logsumexp(values, axis=1), rtol=1e-12, atol=1e-9)


def test_column_e_processes_equal_one_at_a_time_and_final_only_equals_the_last_look() -> None:
    from robustness_gate.stats.counts import ratio_log_evalue_columns, ratio_log_evalues

    rng = np.random.default_rng(4)
    looks, columns = 30, 7
    ct, bt = rng.poisson(50, looks).astype(float), rng.poisson(400, looks).astype(float)
    ct[3] = 0.0  # a look without canary traffic carries no evidence
    ce = rng.binomial(ct.astype(int)[:, None], 0.05, (looks, columns)).astype(float)
    be = rng.binomial(bt.astype(int)[:, None], 0.03, (looks, columns)).astype(float)
    for increase in (True, False):
        matrix = ratio_log_evalue_columns(ce, ct, be, bt, 1.2, increase)
        last = ratio_log_evalue_columns(ce, ct, be, bt, 1.2, increase, final_only=True)
        for c in range(columns):
            one = ratio_log_evalues(ce[:, c], ct, be[:, c], bt, 1.2, increase).log_evalues
            np.testing.assert_allclose(matrix[:, c], one, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(last[0], matrix[-1], rtol=1e-12, atol=1e-12)
