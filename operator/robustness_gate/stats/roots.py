"""PURE: the root of a monotone function that is evaluated on many points at once.

Confidence bounds invert a test: a bound is where the test's log e-value crosses log(1/alpha). One
numpy call evaluates that e-value on a coarse grid for little more than the cost of one point and
brackets the crossing closely, so the scalar search after it needs only a few calls. (scipy's brentq
would do the second part, but loading scipy.optimize costs the operator about 27 MiB of memory.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from robustness_gate.series import FloatArray

VectorFunction = Callable[[FloatArray], FloatArray]


# Offsets from a guess, in units of its scale, at which the first call evaluates f (with the bracket's ends):
# a root within a few scales of the guess is bracketed to within about half a scale.
GUESS_OFFSETS: FloatArray = np.array([-16.0, -8.0, -4.0, -2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0])


def monotone_root(
    f: VectorFunction,
    low: float,
    high: float,
    tolerance: float,
    points: int = 9,
    value_tolerance: float = 0.0,
    guess: tuple[float, float] | None = None,
) -> float:
    """Where the monotone `f` (increasing or decreasing, maybe flat in steps) crosses zero in [low, high].

    One vectorised call over `points` equally spaced points brackets the crossing (or, given a `guess` of
    (where, scale), over points at GUESS_OFFSETS scales around it, and the ends); the Illinois variant of
    regula falsi (superlinear, and it never leaves the bracket) then narrows it one point at a time until a
    step moves less than `tolerance` or |f| is at most `value_tolerance`. Without a sign change in
    [low, high]: the end whose value is nearer zero. The guess changes the work, not the root.
    """
    if not high > low or points < 2:
        raise ValueError("monotone_root needs low < high and at least 2 points")
    if guess is not None and math.isfinite(guess[0]) and math.isfinite(guess[1]) and guess[1] > 0:
        inside = guess[0] + guess[1] * GUESS_OFFSETS
        xs = np.unique(np.concatenate(([low], inside[(inside > low) & (inside < high)], [high])))
    else:
        xs = np.linspace(low, high, points)
    values = np.asarray(f(xs), dtype=float)
    positive = values > 0
    if bool(np.all(positive == positive[0])):
        return float(low if abs(values[0]) <= abs(values[-1]) else high)
    index = int(np.flatnonzero(positive != positive[0])[0])
    a, b = float(xs[index - 1]), float(xs[index])
    f_a, f_b = float(values[index - 1]), float(values[index])
    kept = 0  # which end stayed put last time (-1: a, +1: b): halving its value stops one-sided crawling
    c = b
    for _ in range(MAX_ITERATIONS):
        if f_b == 0.0:
            return b
        if f_a == 0.0:
            return a
        previous, c = c, (a * f_b - b * f_a) / (f_b - f_a)
        f_c = float(np.asarray(f(np.array([c])), dtype=float)[0])
        if (f_c > 0) == (f_b > 0):
            b, f_b = c, f_c
            if kept == -1:
                f_a /= 2.0
            kept = -1
        else:
            a, f_a = c, f_c
            if kept == 1:
                f_b /= 2.0
            kept = 1
        if abs(c - previous) < tolerance or b - a < tolerance or abs(f_c) <= value_tolerance:
            break
    return c


MAX_ITERATIONS = 100
