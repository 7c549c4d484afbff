"""The sequential drift test (stats/drift.py): its binomial form, the homogeneity statistic behind the robust
form's weight and fast path (against scipy), and both forms' false-alarm rates on healthy canaries whose bucket
shares are multinomial and whose shares vary from minute to minute on one side, as real traffic's do."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2_contingency, norm

from robustness_gate.stats import drift

ALPHA = 0.01
DECILES = norm.ppf(np.arange(1, 10) / 10)


def decile_probs(shift: float) -> np.ndarray:
    edges = np.concatenate(([0.0], norm.cdf(DECILES - shift), [1.0]))
    return np.diff(edges)


def looks(rng: np.random.Generator, probs: np.ndarray, rate: float, n: int, kappa: float | None) -> np.ndarray:
    """Per-look bucket counts of one side: Poisson(rate) observations a look, multinomial over the buckets, with
    the shares redrawn each look from Dirichlet(kappa * probs) when kappa is given (overdispersed)."""
    totals = rng.poisson(rate, n)
    shares = np.tile(probs, (n, 1)) if kappa is None else rng.dirichlet(kappa * probs, n)
    return np.array([rng.multinomial(total, share) for total, share in zip(totals, shares, strict=True)], dtype=float)


def false_alarms(form: str, kappa: float | None, rates: tuple[float, float], runs: int, seed: int) -> float:
    """Share of healthy runs (30 looks) whose evidence ever reaches 1/alpha."""
    rng = np.random.default_rng(seed)
    test = drift.robust_log_evalues if form == "robust" else drift.binomial_log_evalues
    base = decile_probs(0.0)
    hits = 0
    for _ in range(runs):
        canary, baseline = looks(rng, base, rates[0], 30, kappa), looks(rng, base, rates[1], 30, kappa)
        hits += bool(np.any(test(canary, baseline) >= math.log(1 / ALPHA)))
    return hits / runs


def test_the_homogeneity_statistic_is_pearsons_of_the_looks_by_buckets_table() -> None:
    rng = np.random.default_rng(1)
    table = looks(rng, decile_probs(0.0), 80.0, 12, kappa=30.0)
    table[:, 9] = 0.0  # a bucket never seen counts for no degree of freedom
    chi2, df = drift._homogeneity(table, include_current=True)
    expected = chi2_contingency(table[:, :9], correction=False)
    assert chi2[-1] == pytest.approx(expected.statistic, rel=1e-9)
    assert df[-1] == expected.dof == 8 * 11
    before, df_before = drift._homogeneity(table)
    assert before[-1] == pytest.approx(chi2_contingency(table[:-1, :9], correction=False).statistic, rel=1e-9)
    assert df_before[0] == 0.0 and df[0] == 0.0  # one look: nothing to compare


def test_the_robust_form_never_exceeds_the_binomial_form() -> None:
    rng = np.random.default_rng(2)
    for kappa in (None, 40.0):
        for shift in (0.0, 0.3):
            canary = looks(rng, decile_probs(shift), 20.0, 25, kappa)
            baseline = looks(rng, decile_probs(0.0), 180.0, 25, kappa)
            assert np.all(drift.robust_log_evalues(canary, baseline) <= drift.binomial_log_evalues(canary, baseline))


def test_the_bets_direction_is_fixed_before_the_look() -> None:
    """x_s weighs look s's scores with a direction from the looks before s only."""
    rng = np.random.default_rng(3)
    canary, baseline = looks(rng, decile_probs(0.4), 30.0, 8, None), looks(rng, decile_probs(0.0), 270.0, 8, None)
    scores = rng.uniform(-1, 1, canary.shape)
    changed = canary.copy()
    changed[5] = rng.permutation(changed[5]) + 7.0  # another look 5

    def directed(c: np.ndarray) -> np.ndarray:
        in_bucket = c + baseline
        rho = c.sum(axis=1) / (c.sum(axis=1) + baseline.sum(axis=1))
        return drift._directed(scores, c, in_bucket, rho, np.ones(len(rho), dtype=bool))

    assert np.allclose(directed(canary)[:6], directed(changed)[:6])
    assert directed(canary)[0] == 0.0  # no past, no bet
    assert np.all(np.abs(directed(canary)) <= 1.0)


@pytest.mark.parametrize("rates", [(3.0, 27.0), (600.0, 5400.0)])
def test_both_forms_hold_their_level_when_the_shares_are_multinomial(rates: tuple[float, float]) -> None:
    runs = 400
    limit = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    assert false_alarms("binomial", None, rates, runs, seed=4) <= limit
    assert false_alarms("robust", None, rates, runs, seed=5) <= limit


def test_only_the_robust_form_holds_its_level_when_one_sides_shares_vary_from_look_to_look() -> None:
    """Shares redrawn every look from Dirichlet(50 p), independently per side (each decile's share has a standard
    deviation of 4 points around 10%): the binomial form alarms on most healthy canaries at 600/5,400 per look,
    the robust form at most alpha (measured with 2,000 runs of 30 looks: 0.30% at 600/5,400, 0.05% at 60/540)."""
    runs = 400
    limit = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    assert false_alarms("binomial", 50.0, (600.0, 5400.0), 100, seed=6) > 0.5
    assert false_alarms("robust", 50.0, (600.0, 5400.0), runs, seed=7) <= limit
    assert false_alarms("robust", 200.0, (1800.0, 16200.0), runs, seed=8) <= limit


@pytest.mark.parametrize("rates", [(60.0, 540.0), (600.0, 5400.0)])
def test_the_robust_form_finds_a_psi_quarter_shift_within_a_few_looks(rates: tuple[float, float]) -> None:
    rng = np.random.default_rng(9)
    first: list[float] = []
    for _ in range(100):
        canary = looks(rng, decile_probs(0.51), rates[0], 30, None)
        baseline = looks(rng, decile_probs(0.0), rates[1], 30, None)
        above = np.flatnonzero(drift.robust_log_evalues(canary, baseline) >= math.log(1 / ALPHA))
        first.append(float(above[0] + 1) if len(above) else math.inf)
    assert np.mean(np.isfinite(first)) >= 0.95
    assert np.median(first) <= 4  # the binomial form alone decides from the third look


def test_the_robust_form_holds_its_level_on_uneven_categories_whose_shares_vary() -> None:
    """Four categories at 70/20/5/5 % (predicted classes), shares redrawn each look from Dirichlet(50 p) on each
    side independently, 600/5,400 observations a look: the same test, columns being categories."""
    rng = np.random.default_rng(10)
    probs = np.array([0.7, 0.2, 0.05, 0.05])
    runs, hits = 400, 0
    for _ in range(runs):
        canary, baseline = looks(rng, probs, 600.0, 30, 50.0), looks(rng, probs, 5400.0, 30, 50.0)
        hits += bool(np.any(drift.robust_log_evalues(canary, baseline) >= math.log(1 / ALPHA)))
    assert hits / runs <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
