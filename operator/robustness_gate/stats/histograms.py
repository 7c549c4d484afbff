"""Prometheus-style histograms: bucket arithmetic, quantiles and drift effect sizes (the drift test: stats.drift)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy.spatial.distance import jensenshannon

from robustness_gate.series import FloatArray

# Smoothing for empty buckets before PSI (a share of 0 makes the log-ratio infinite).
PSI_EPSILON = 1e-4


def per_bucket(cumulative: FloatArray) -> FloatArray:
    """Cumulative `le` counts (last column +Inf) to counts per bucket along the last axis.

    Scrapes of different buckets are not atomic across a window, so tiny negative differences
    are clipped to zero rather than propagated.
    """
    cumulative = np.asarray(cumulative, dtype=float)
    diffs = np.diff(cumulative, axis=-1, prepend=0.0)
    return np.clip(diffs, 0.0, None)


@dataclass(frozen=True)
class BoundaryMatch:
    """Where a threshold falls among finite bucket bounds."""

    exact: int | None  # index of a bound equal to the threshold
    below: int | None  # largest bound below the threshold
    above: int | None  # smallest bound above the threshold


def locate_threshold(bounds: tuple[float, ...], threshold: float) -> BoundaryMatch:
    for index, bound in enumerate(bounds):
        if math.isclose(bound, threshold, rel_tol=1e-9, abs_tol=1e-12):
            return BoundaryMatch(exact=index, below=index, above=index)
    below = max((i for i, b in enumerate(bounds) if b < threshold), default=None)
    above = min((i for i, b in enumerate(bounds) if b > threshold), default=None)
    return BoundaryMatch(exact=None, below=below, above=above)


def share_above(counts: FloatArray, index: int) -> tuple[float, float]:
    """(observations above bound `index`, all observations) from per-bucket counts of one side."""
    counts = np.asarray(counts, dtype=float)
    return float(counts[index + 1 :].sum()), float(counts.sum())


def interpolated_quantile(bounds: tuple[float, ...], counts: FloatArray, q: float) -> float:
    """Quantile by linear interpolation within the bucket, as PromQL's histogram_quantile does.

    Returns the highest finite bound when the quantile falls in the +Inf bucket, and nan with no data.
    """
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    if total <= 0 or not bounds:
        return math.nan
    rank = q * total
    cumulative = np.cumsum(counts)
    index = int(np.searchsorted(cumulative, rank, side="left"))
    if index >= len(bounds):
        return float(bounds[-1])
    lower = 0.0 if index == 0 else float(bounds[index - 1])
    if index == 0 and bounds[0] <= 0:
        return float(bounds[0])
    below = 0.0 if index == 0 else float(cumulative[index - 1])
    in_bucket = float(counts[index])
    if in_bucket <= 0:
        return float(bounds[index])
    return float(lower + (float(bounds[index]) - lower) * (float(rank) - below) / in_bucket)


def shares(counts: FloatArray) -> FloatArray:
    counts = np.asarray(counts, dtype=float)
    total = counts.sum()
    return np.asarray(counts / total if total > 0 else np.full(len(counts), math.nan), dtype=float)


def psi(actual: FloatArray, expected: FloatArray, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of `actual` against `expected` bucket counts (Jeffreys divergence)."""
    a = np.maximum(shares(actual), epsilon)
    e = np.maximum(shares(expected), epsilon)
    a, e = a / a.sum(), e / e.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def psi_upper_bound(actual: FloatArray, expected: FloatArray, confidence: float) -> float:
    """One-sided upper confidence bound on the population PSI behind two samples of bucket counts.

    With N and M observations, PSI_hat / (1/N + 1/M) is about noncentral chi-square with B - 1
    degrees of freedom and noncentrality PSI / (1/N + 1/M) (the second-order expansion of the
    Jeffreys divergence behind PSI's null distribution); the bound inverts that in the noncentrality.
    B counts the buckets that saw an observation. Infinite without data on both sides.
    """
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    n, m = float(actual.sum()), float(expected.sum())
    if n <= 0 or m <= 0:
        return math.inf
    degrees = int(np.count_nonzero(actual + expected)) - 1
    if degrees < 1:
        return 0.0  # one bucket holds everything on both sides: the distributions agree
    scale = 1 / n + 1 / m
    statistic = psi(actual, expected) / scale
    beta = 1 - confidence
    if special.chdtr(degrees, statistic) <= beta:  # the chi-square CDF
        return 0.0  # smaller than even no shift at all usually gives
    # The noncentrality at which the statistic is the beta-quantile (cdf's inverse in nc, one ufunc call).
    return float(special.chndtrinc(statistic, degrees, beta)) * scale


def jensen_shannon(actual: FloatArray, expected: FloatArray) -> float:
    """Jensen-Shannon distance (base 2, so between 0 and 1) between two bucket distributions."""
    return float(jensenshannon(shares(actual), shares(expected), base=2))


def kolmogorov_smirnov(actual: FloatArray, expected: FloatArray) -> float:
    """The two-sample Kolmogorov-Smirnov distance on buckets: the largest gap between the two cumulative shares,
    read at the bucket boundaries (at most the gap between the raw samples' distribution functions)."""
    gap = np.cumsum(shares(actual)) - np.cumsum(shares(expected))
    return float(np.max(np.abs(gap)))


def ks_upper_bound(actual: FloatArray, expected: FloatArray, confidence: float) -> float:
    """One-sided upper confidence bound on the population Kolmogorov-Smirnov distance (on these buckets): the
    estimate plus each side's Dvoretzky-Kiefer-Wolfowitz band at half the error (Massart's constant),
    sqrt(ln(4 / (1 - confidence)) / (2 n)). Infinite without data on both sides."""
    n, m = float(np.sum(actual)), float(np.sum(expected))
    if n <= 0 or m <= 0:
        return math.inf
    width = math.log(4.0 / (1.0 - confidence)) / 2.0
    return min(1.0, kolmogorov_smirnov(actual, expected) + math.sqrt(width / n) + math.sqrt(width / m))


def wasserstein(bounds: tuple[float, ...], actual: FloatArray, expected: FloatArray) -> float:
    """Earth mover's distance between two histograms over the finite buckets.

    Mass is taken as uniform within each bucket (the assumption histogram_quantile makes), so the
    difference of the two CDFs is linear inside a bucket and integrates exactly. The lowest bucket
    starts at 0 when its bound is positive; the +Inf bucket has no width and adds nothing.
    """
    a, e = shares(actual), shares(expected)
    edges = [min(0.0, bounds[0]), *list(bounds)]
    cdf_gap = np.concatenate([[0.0], np.cumsum(a[: len(bounds)] - e[: len(bounds)])])
    distance = 0.0
    for left, right, g0, g1 in zip(edges[:-1], edges[1:], cdf_gap[:-1], cdf_gap[1:], strict=True):
        width = right - left
        if g0 * g1 >= 0:
            distance += width * (abs(g0) + abs(g1)) / 2
        else:  # the gap changes sign inside the bucket: two triangles
            crossing = abs(g0) / (abs(g0) + abs(g1))
            distance += width * (crossing * abs(g0) + (1 - crossing) * abs(g1)) / 2
    return distance
