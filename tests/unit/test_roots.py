"""The vectorised monotone root finder, checked against scipy's brentq."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from robustness_gate.stats.roots import monotone_root


@pytest.mark.parametrize(
    ("f", "low", "high"),
    [
        (lambda x: np.exp(x) - 3.0, -5.0, 5.0),  # increasing, convex
        (lambda x: 2.0 - np.log1p(np.exp(x)), -20.0, 20.0),  # decreasing, flat on the left
        (lambda x: np.tanh(10 * (x - 0.3)), -12.0, 12.0),  # a steep step inside a wide bracket
        (lambda x: x**3 - 1e-6, -1.0, 2.0),  # flat at the root
    ],
)
def test_root_matches_brentq(f, low: float, high: float) -> None:  # type: ignore[no-untyped-def]
    expected = brentq(lambda x: float(f(np.array([x]))[0]), low, high, xtol=1e-14)
    assert monotone_root(f, low, high, tolerance=1e-12) == pytest.approx(expected, abs=1e-9)


def test_value_tolerance_stops_once_the_value_is_small_enough() -> None:
    calls = []

    def f(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        return np.asarray(1e6 * (x - math.pi), dtype=float)

    root = monotone_root(f, 0.0, 10.0, tolerance=0.0, value_tolerance=1e-3)
    assert abs(f(np.array([root]))[0]) <= 1e-3
    assert calls[0] == 9 and len(calls) < 40


def test_without_a_sign_change_the_end_nearer_zero_is_returned() -> None:
    assert monotone_root(lambda x: x + 5.0, 0.0, 1.0, 1e-9) == 0.0
    assert monotone_root(lambda x: -x - 5.0, 0.0, 1.0, 1e-9) == 0.0
    assert monotone_root(lambda x: x - 5.0, 0.0, 1.0, 1e-9) == 1.0


def test_a_root_on_the_grid_is_returned_exactly() -> None:
    assert monotone_root(lambda x: x - 0.25, -1.0, 1.0, 1e-9) == 0.25


def test_bad_brackets_are_refused() -> None:
    with pytest.raises(ValueError, match="low < high"):
        monotone_root(lambda x: x, 1.0, 1.0, 1e-9)


@pytest.mark.parametrize("guess", [(1.1, 0.1), (1.0986, 0.01), (-4.0, 0.05), (4.9, 3.0), (math.nan, 1.0), (0.0, 0.0)])
def test_a_guess_changes_the_work_not_the_root(guess: tuple[float, float]) -> None:
    def f(x: np.ndarray) -> np.ndarray:
        return np.asarray(np.exp(x) - 3.0, dtype=float)

    expected = brentq(lambda x: float(f(np.array([x]))[0]), -5.0, 5.0, xtol=1e-14)
    assert monotone_root(f, -5.0, 5.0, tolerance=1e-12, guess=guess) == pytest.approx(expected, abs=1e-9)


def test_a_good_guess_brackets_the_root_closely_and_saves_evaluations() -> None:
    def count(guess: tuple[float, float] | None) -> int:
        calls = [0]

        def f(x: np.ndarray) -> np.ndarray:
            calls[0] += 1
            return np.asarray(np.exp(x) - 3.0, dtype=float)

        monotone_root(f, -12.0, 12.0, tolerance=1e-9, guess=guess)
        return calls[0]

    assert count((math.log(3.0) + 0.05, 0.1)) < count(None)
