"""Mann-Whitney shift interval exactly as Kayenta's kayenta-mannwhitney computes it.

Kayenta mirrors R's ``wilcox.test(x, y, conf.int=TRUE, exact=FALSE, correct=TRUE)``: the normal
approximation of the rank-sum statistic with tie-corrected variance and a continuity correction,
inverted for the shift mu of x - y. Because that statistic is a step function of mu, every root
of ``wilcoxon_diff`` is an interval, and which point of it comes back depends on the path of the
root finder. ``zeroin`` below therefore follows R's zeroin / Kayenta's BrentSolver step for step
(scipy's brentq lands on other points of the same flat stretch).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import erfinv

FloatArray = npt.NDArray[np.float64]
ArrayLike = Sequence[float] | FloatArray

# Solver constants of R's uniroot(tol = 1e-4) as hard-coded by Kayenta's BrentSolver.
TOLERANCE = 1e-4
EPSILON = 2.220446049250313e-16
MAX_ITERATIONS = 1000
# Smallest subnormal double: a value within one ulp of zero (commons-math Precision.equals).
_ONE_ULP_OF_ZERO = math.ulp(0.0)


@dataclass(frozen=True)
class MannWhitneyResult:
    """Interval and Hodges-Lehmann-style estimate of the shift experiment - control."""

    lower: float
    upper: float
    estimate: float


def _is_zero(value: float) -> bool:
    return abs(value) <= _ONE_ULP_OF_ZERO


def _as_finite_array(values: ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must contain only finite values")
    return array


def z_quantile(alpha: float) -> float:
    """Standard-normal quantile at alpha/2 (negative), computed through erfinv as commons-math does."""
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must lie strictly between 0 and 1")
    return float(math.sqrt(2.0) * erfinv(2.0 * (alpha / 2.0) - 1.0))


def average_ranks(values: ArrayLike) -> npt.NDArray[np.float64]:
    """Ranks from 1, ties sharing their average (scipy's rankdata). scipy.stats is imported on first use: it
    adds about 23 MiB to every operator process, and only gates with a compared custom metric rank anything."""
    from scipy.stats import rankdata

    return np.asarray(rankdata(values, method="average"), dtype=np.float64)


def wilcoxon_diff(mu: float, zq: float, x: ArrayLike, y: ArrayLike) -> float:
    """Continuity-corrected standardised rank-sum statistic of (x - mu) against y, minus zq."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    n_x = float(xs.size)
    n_y = float(ys.size)
    pooled = np.concatenate((xs - mu, ys))
    ranks = average_ranks(pooled)
    # Rank sums are multiples of 0.5 far below 2**53, so the summation order cannot change them.
    dz = float(np.sum(ranks[: xs.size])) - n_x * (n_x + 1.0) / 2.0 - n_x * n_y / 2.0
    correction = math.copysign(0.5, dz) if dz != 0.0 else 0.0
    _, tie_sizes = np.unique(pooled, return_counts=True)
    tie_term = float(np.sum(tie_sizes.astype(np.float64) ** 3 - tie_sizes))
    n = n_x + n_y
    sigma = math.sqrt((n_x * n_y / 12.0) * ((n + 1.0) - tie_term / (n * (n - 1.0))))
    if sigma == 0.0:
        raise ValueError("cannot compute the confidence interval: all observations are tied")
    return (dz - correction) / sigma - zq


def zeroin(ax: float, bx: float, fa: float, fb: float, func: Callable[[float], float]) -> float:
    """Brent's root finder in the exact form of R's zeroin (tolerance 1e-4, 1000 iterations).

    Like Kayenta, it returns the last iterate instead of failing when iterations run out.
    """
    a, b = ax, bx
    c, fc = a, fa
    if _is_zero(fa):
        return a
    if _is_zero(fb):
        return b
    for _ in range(MAX_ITERATIONS + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):
            # Keep b as the best approximation, c on the other side of the root.
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2.0 * EPSILON * abs(b) + TOLERANCE / 2.0
        new_step = (c - b) / 2.0
        if abs(new_step) <= tol_act or _is_zero(fb):
            return b
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:
                # Two distinct points: secant step.
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:
                # Three points: inverse quadratic interpolation.
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0.0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2.0) and p < abs(prev_step * q / 2.0):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0.0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = func(b)
        if (fb > 0.0 and fc > 0.0) or (fb < 0.0 and fc < 0.0):
            c, fc = a, fa
    return b


def mann_whitney_interval(experiment: ArrayLike, control: ArrayLike, confidence_level: float) -> MannWhitneyResult:
    """Two-sided interval and point estimate for the location shift experiment - control."""
    x = _as_finite_array(experiment, "experiment")
    y = _as_finite_array(control, "control")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError("confidence_level must lie strictly between 0 and 1")
    z = z_quantile(1.0 - confidence_level)
    mu_min = float(np.min(x) - np.max(y))
    mu_max = float(np.max(x) - np.min(y))

    def root(zq: float) -> float:
        def shifted(mu: float) -> float:
            return wilcoxon_diff(mu, zq, x, y)

        f_lower = shifted(mu_min)
        f_upper = shifted(mu_max)
        # No sign change inside the range: the interval end sits on the range end.
        if f_lower <= 0.0:
            return mu_min
        if f_upper >= 0.0:
            return mu_max
        return zeroin(mu_min, mu_max, f_lower, f_upper, shifted)

    def centred(mu: float) -> float:
        return wilcoxon_diff(mu, 0.0, x, y)

    # z is negative, so -z gives the lower end and z the upper one.
    lower = root(-z)
    upper = root(z)
    estimate = zeroin(mu_min, mu_max, centred(mu_min), centred(mu_max), centred)
    return MannWhitneyResult(lower=lower, upper=upper, estimate=estimate)
