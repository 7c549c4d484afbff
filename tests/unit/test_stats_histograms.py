"""Histogram arithmetic against PromQL's documented behaviour and scipy; the drift test by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp

from robustness_gate.judge import PASS_BETA
from robustness_gate.stats import drift
from robustness_gate.stats import histograms as h


def test_per_bucket_differences_and_clipping() -> None:
    cumulative = np.array([[1.0, 3.0, 3.0, 10.0], [2.0, 1.9, 5.0, 5.0]])
    assert h.per_bucket(cumulative).tolist() == [[1.0, 2.0, 0.0, 7.0], [2.0, 0.0, 3.1, 0.0]]


def test_quantile_matches_prometheus_documentation_example() -> None:
    # Prometheus docs: buckets 0.1/0.2/0.3/0.45, every request ~220 ms → histogram_quantile(0.95) = 0.295.
    bounds = (0.1, 0.2, 0.3, 0.45)
    counts = np.array([0.0, 0.0, 100.0, 0.0, 0.0])
    assert h.interpolated_quantile(bounds, counts, 0.95) == pytest.approx(0.295)
    # ...and ~320 ms → 0.4425.
    assert h.interpolated_quantile(bounds, np.array([0.0, 0.0, 0.0, 100.0, 0.0]), 0.95) == pytest.approx(0.4425)


def test_quantile_edge_cases() -> None:
    bounds = (1.0, 2.0)
    assert h.interpolated_quantile(bounds, np.array([0.0, 0.0, 5.0]), 0.5) == 2.0  # in +Inf: top finite bound
    assert math.isnan(h.interpolated_quantile(bounds, np.zeros(3), 0.5))
    assert h.interpolated_quantile(bounds, np.array([10.0, 0.0, 0.0]), 0.5) == pytest.approx(0.5)


def test_locate_threshold() -> None:
    bounds = (0.05, 0.1, 0.25)
    assert h.locate_threshold(bounds, 0.1).exact == 1
    between = h.locate_threshold(bounds, 0.2)
    assert (between.exact, between.below, between.above) == (None, 1, 2)
    assert h.locate_threshold(bounds, 1.0).above is None and h.locate_threshold(bounds, 0.01).below is None


def test_psi_closed_form_and_symmetry() -> None:
    a, e = np.array([30.0, 50.0, 20.0]), np.array([40.0, 40.0, 20.0])
    pa, pe = a / a.sum(), e / e.sum()
    assert h.psi(a, e) == pytest.approx(float(np.sum((pa - pe) * np.log(pa / pe))))
    assert h.psi(a, e) == pytest.approx(h.psi(e, a))
    assert h.psi(a, a) == 0


def test_psi_smooths_empty_buckets() -> None:
    assert math.isfinite(h.psi(np.array([10.0, 0.0]), np.array([5.0, 5.0])))


def test_jensen_shannon_matches_scipy() -> None:
    a, e = np.array([1.0, 5.0, 9.0, 0.0]), np.array([3.0, 3.0, 3.0, 3.0])
    assert h.jensen_shannon(a, e) == pytest.approx(jensenshannon(a / a.sum(), e / e.sum(), base=2))
    assert h.jensen_shannon(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_wasserstein_matches_scipy_on_uniform_within_bucket_data() -> None:
    bounds = (0.1, 0.2, 0.5, 1.0)
    edges = (0.0, *bounds)
    a = np.array([10.0, 30.0, 40.0, 20.0, 0.0])
    e = np.array([25.0, 25.0, 25.0, 25.0, 0.0])

    def spread(counts: np.ndarray) -> np.ndarray:
        # Evenly spaced points inside each bucket approximate the uniform-within-bucket model.
        points = [
            np.linspace(lo, hi, int(c) * 200, endpoint=False) + (hi - lo) / (int(c) * 400)
            for lo, hi, c in zip(edges[:-1], edges[1:], counts[:-1], strict=True)
            if c > 0
        ]
        return np.concatenate(points)

    expected = stats.wasserstein_distance(spread(a), spread(e))
    assert h.wasserstein(bounds, a, e) == pytest.approx(expected, rel=1e-3)
    assert h.wasserstein(bounds, a, a) == 0


def _decile_probs(shift: float) -> np.ndarray:
    edges = stats.norm.ppf(np.linspace(0.1, 0.9, 9))
    return np.diff(np.concatenate([[0.0], stats.norm.cdf(edges - shift), [1.0]]))


def _drift_runs(shift: float, runs: int, looks: int, rate: float, seed: int) -> list[int | None]:
    rng = np.random.default_rng(seed)
    base, canary = _decile_probs(0.0), _decile_probs(shift)
    hits: list[int | None] = []
    for _ in range(runs):
        c = np.array([rng.multinomial(n, canary) for n in rng.poisson(rate, looks)], dtype=float)
        b = np.array([rng.multinomial(n, base) for n in rng.poisson(rate * 4, looks)], dtype=float)
        log_e = drift.binomial_log_evalues(c, b)
        above = np.flatnonzero(log_e >= math.log(100))
        hits.append(int(above[0]) if len(above) else None)
    return hits


def test_drift_test_holds_its_level_on_identical_distributions() -> None:
    runs = 2000
    hits = _drift_runs(0.0, runs=runs, looks=20, rate=30.0, seed=11)
    false = sum(h is not None for h in hits) / runs
    assert false <= 0.01 + 3 * math.sqrt(0.01 * 0.99 / runs)


def test_drift_test_detects_a_psi_quarter_shift() -> None:
    assert h.psi(_decile_probs(0.51), _decile_probs(0.0)) == pytest.approx(0.25, abs=0.01)
    hits = _drift_runs(0.51, runs=100, looks=20, rate=30.0, seed=12)
    assert sum(h is not None for h in hits) >= 95


def test_psi_alone_is_noisy_on_small_healthy_samples() -> None:
    # Why drift needs a test: with 100 vs 100 healthy predictions PSI exceeds 0.1 most of the time.
    rng = np.random.default_rng(3)
    p = _decile_probs(0.0)
    values = [h.psi(rng.multinomial(100, p).astype(float), rng.multinomial(100, p).astype(float)) for _ in range(500)]
    assert np.mean(np.array(values) > 0.1) > 0.6


def _psi_bounds(shift: float, canary_n: int, runs: int, seed: int) -> tuple[float, np.ndarray]:
    """The true PSI of a decile shift and the 99% upper bounds from `runs` samples (baseline 9x larger)."""
    rng = np.random.default_rng(seed)
    base, canary = _decile_probs(0.0), _decile_probs(shift)
    true = float(np.sum((canary - base) * np.log(canary / base)))
    bounds = np.array(
        [
            h.psi_upper_bound(
                rng.multinomial(canary_n, canary).astype(np.float64),
                rng.multinomial(9 * canary_n, base).astype(np.float64),
                0.99,
            )
            for _ in range(runs)
        ]
    )
    return true, bounds


@pytest.mark.parametrize(("shift", "canary_n"), [(0.46, 100), (0.46, 1000), (0.51, 200), (0.8, 300)])
def test_psi_upper_bound_covers_the_true_psi(shift: float, canary_n: int) -> None:
    """At 99% the bound falls below the population PSI in about 1% of samples (checked against scipy's sampler)."""
    runs = 600
    true, bounds = _psi_bounds(shift, canary_n, runs, seed=int(shift * 100) + canary_n)
    below = float(np.mean(bounds < true))
    assert below <= 0.01 + 3 * math.sqrt(0.01 * 0.99 / runs)
    assert np.median(bounds) > true  # an upper bound, not the estimate


def test_psi_upper_bound_shows_a_healthy_canary_below_the_threshold_once_data_suffices() -> None:
    _, few = _psi_bounds(0.0, 50, 200, seed=21)
    _, enough = _psi_bounds(0.0, 400, 200, seed=22)
    assert np.median(few) > 0.2  # 50 predictions cannot show PSI < 0.2
    assert np.mean(enough < 0.2) > 0.99
    assert h.psi_upper_bound(np.zeros(10), np.ones(10), 0.99) == math.inf
    assert h.psi_upper_bound(np.array([5.0, 0.0]), np.array([7.0, 0.0]), 0.99) == 0.0


def test_a_drift_at_the_threshold_is_rarely_shown_below_it() -> None:
    """A canary whose PSI equals drift.max is shown below it (bound under max at any of 30 looks) in at most
    PASS_BETA = 10% of runs, the comparisons' rule for promoting a canary at the edge of harm (measured: 5.5%)."""
    rng = np.random.default_rng(23)
    base, canary = _decile_probs(0.0), _decile_probs(0.46)
    true = float(np.sum((canary - base) * np.log(canary / base)))
    runs, looks, passed = 200, 30, 0
    for _ in range(runs):
        c = np.cumsum([rng.multinomial(n, canary) for n in rng.poisson(30, looks)], axis=0)
        b = np.cumsum([rng.multinomial(n, base) for n in rng.poisson(270, looks)], axis=0)
        passed += any(h.psi_upper_bound(c[k], b[k], 0.99) < true for k in range(looks))
    assert passed / runs <= PASS_BETA


@pytest.mark.parametrize(("shift", "canary_n"), [(0.0, 300), (0.3, 150), (0.6, 500)])
def test_psi_upper_bound_is_the_noncentral_chi_square_inversion(shift: float, canary_n: int) -> None:
    """At the bound's noncentrality, scipy's ncx2 puts exactly 1 - confidence below the observed statistic."""
    rng = np.random.default_rng(31)
    actual = rng.multinomial(canary_n, _decile_probs(shift)).astype(float)
    expected = rng.multinomial(9 * canary_n, _decile_probs(0.0)).astype(float)
    scale = 1 / actual.sum() + 1 / expected.sum()
    statistic = h.psi(actual, expected) / scale
    bound = h.psi_upper_bound(actual, expected, 0.99)
    if bound == 0.0:
        assert stats.chi2.cdf(statistic, 9) <= 0.01
    else:
        assert stats.ncx2.cdf(statistic, 9, bound / scale) == pytest.approx(0.01, rel=1e-6)


def test_kolmogorov_smirnov_is_scipys_statistic_on_the_bucketed_samples() -> None:
    """On buckets KS is the largest gap of the two empirical distribution functions at the bucket boundaries:
    scipy's two-sample statistic on samples placed at their bucket's index."""
    rng = np.random.default_rng(31)
    for _ in range(20):
        canary = rng.multinomial(int(rng.integers(5, 400)), _decile_probs(float(rng.uniform(-1, 1)))).astype(float)
        baseline = rng.multinomial(int(rng.integers(5, 400)), _decile_probs(0.0)).astype(float)
        samples = [np.repeat(np.arange(10), counts.astype(int)) for counts in (canary, baseline)]
        assert h.kolmogorov_smirnov(canary, baseline) == pytest.approx(ks_2samp(*samples).statistic, abs=1e-12)
    assert h.kolmogorov_smirnov(np.array([0.0, 5.0]), np.array([3.0, 0.0])) == 1.0


def test_a_normal_location_shift_of_half_an_sd_is_ks_one_fifth_on_deciles() -> None:
    # What the default drift.max of 0.2 means for KS: about the shift that PSI 0.25 is (0.51 sd).
    assert h.kolmogorov_smirnov(_decile_probs(0.51), _decile_probs(0.0)) == pytest.approx(0.2, abs=0.005)


@pytest.mark.parametrize(("shift", "canary_n"), [(0.0, 100), (0.3, 400), (0.51, 2000)])
def test_ks_upper_bound_covers_the_true_distance(shift: float, canary_n: int) -> None:
    """The DKW band holds at every n: the 99% bound is below the population KS in at most 1% of samples
    (it is conservative, so far less)."""
    rng = np.random.default_rng(int(shift * 100) + canary_n)
    base, canary = _decile_probs(0.0), _decile_probs(shift)
    true = h.kolmogorov_smirnov(canary, base)
    runs = 600
    bounds = np.array(
        [
            h.ks_upper_bound(
                rng.multinomial(canary_n, canary).astype(float), rng.multinomial(9 * canary_n, base).astype(float), 0.99
            )
            for _ in range(runs)
        ]
    )
    assert float(np.mean(bounds < true)) <= 0.01 + 3 * math.sqrt(0.01 * 0.99 / runs)
    assert h.ks_upper_bound(np.zeros(10), np.ones(10), 0.99) == math.inf
    # Enough healthy data shows KS below 0.2: with 2,000 canary observations the band is about 0.06.
    if shift == 0.0:
        assert h.ks_upper_bound(np.full(10, 200.0), np.full(10, 1800.0), 0.99) < 0.1
