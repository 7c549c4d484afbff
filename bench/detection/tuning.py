"""Bisect a rule's knob to a false-rollback rate, on the A/A runs of a scenario."""

from __future__ import annotations

import math
from collections.abc import Callable

ITERATIONS = 40


def bisect_knob(
    rate: Callable[[float], float], low: float, high: float, target: float, *, log_scale: bool = True
) -> float:
    """Smallest knob whose false-rollback rate is <= target, for a rate non-increasing in the knob.

    Returns `high` when even `high` stays above the target (e.g. no-data checks fail regardless
    of the threshold); the caller reports the rate actually reached.
    """
    if rate(low) <= target:
        return low
    if rate(high) > target:
        return high
    for _ in range(ITERATIONS):
        mid = math.sqrt(low * high) if log_scale else (low + high) / 2
        if rate(mid) <= target:
            high = mid
        else:
            low = mid
    return high
