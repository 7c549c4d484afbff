"""Rates with Clopper-Pearson intervals and time quantiles that keep "never" as infinity."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from bench.detection.outcome import Outcome


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    if trials == 0:
        return 0.0, 1.0
    interval = binomtest(successes, trials).proportion_ci(confidence_level=level, method="exact")
    return float(interval.low), float(interval.high)


def time_quantile(seconds: np.ndarray, q: float) -> float:
    """Quantile over all runs, never-events counted as infinitely late (an observed value, no interpolation)."""
    if len(seconds) == 0:
        return math.nan
    return float(np.quantile(seconds, q, method="inverted_cdf"))


@dataclass(frozen=True)
class Rate:
    events: int
    trials: int

    @property
    def value(self) -> float:
        return self.events / self.trials if self.trials else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        return clopper_pearson(self.events, self.trials)


@dataclass(frozen=True)
class Summary:
    false_rollback: Rate
    promotion_median: float
    detection: Rate  # regressed runs rolled back within the horizon
    detect_median: float
    detect_p90: float
    healthy_held: Rate | None = None  # runs the rule held (paused) rather than rolled back or promoted
    regressed_held: Rate | None = None  # None: the rule never holds


def summarise(healthy: Outcome, regressed: Outcome) -> Summary:
    holds = healthy.held is not None or regressed.held is not None
    return Summary(
        false_rollback=Rate(healthy.rolled_back, healthy.runs),
        promotion_median=time_quantile(healthy.promote, 0.5),
        detection=Rate(regressed.rolled_back, regressed.runs),
        detect_median=time_quantile(regressed.rollback, 0.5),
        detect_p90=time_quantile(regressed.rollback, 0.9),
        healthy_held=Rate(healthy.paused, healthy.runs) if holds else None,
        regressed_held=Rate(regressed.paused, regressed.runs) if holds else None,
    )
