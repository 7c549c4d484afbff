"""Scenario parameters: traffic, metric, regression size, and what each rule is configured with."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq
from scipy.stats import lognorm, norm

FloatArray = NDArray[np.float64]
Kind = Literal["errors", "latency", "drift"]

TICK_SECONDS = 10  # simulation resolution; every rule's interval is a multiple of it
HORIZON_SECONDS = 1800  # 30 min: robustness-gate's default maxDuration
TICKS = HORIZON_SECONDS // TICK_SECONDS

# robustness-gate looks once a minute, the cadence of Flagger's default checks (its own default is 30s).
LOOK_INTERVAL = "1m"
# Prometheus' default buckets plus a boundary at the baseline's p99 (320 ms), as advised for SLOs.
LATENCY_BOUNDS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.32, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_MEDIAN = 0.1
LATENCY_SIGMA = 0.5
# Prediction scores N(0, 1) on the logit scale, bucketed at the reference deciles.
DRIFT_BOUNDS: tuple[float, ...] = tuple(float(x) for x in norm.ppf(np.arange(1, 10) / 10))
DRIFT_PSI = 0.25
PSI_EPSILON = 1e-4
# Bursts: a two-state Markov chain, on and off for 2 minutes on average.
BURST_MEAN_SECONDS = 120.0


def _cell_probs(cdf: FloatArray) -> FloatArray:
    edges = np.concatenate(([0.0], cdf, [1.0]))
    return np.asarray(np.diff(edges), dtype=float)


def latency_probs(factor: float) -> FloatArray:
    """Bucket probabilities (last = +Inf) of lognormal latencies scaled by `factor`."""
    cdf = lognorm.cdf(np.asarray(LATENCY_BOUNDS), s=LATENCY_SIGMA, scale=LATENCY_MEDIAN * factor)
    return _cell_probs(np.asarray(cdf, dtype=float))


def drift_probs(shift: float) -> FloatArray:
    return _cell_probs(np.asarray(norm.cdf(np.asarray(DRIFT_BOUNDS) - shift), dtype=float))


def population_psi(actual: FloatArray, expected: FloatArray) -> float:
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@cache
def drift_shift_for_psi(target: float = DRIFT_PSI) -> float:
    """Location shift (in sd) whose population PSI over the decile buckets equals `target`."""
    base = drift_probs(0.0)
    return float(brentq(lambda s: population_psi(drift_probs(s), base) - target, 1e-6, 5.0))


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    kind: Kind
    canary_rate: float  # requests (or predictions) per second while traffic flows
    baseline_rate: float
    shipped_threshold: float  # the documented value the Flagger/Argo condition is written with
    reference: str  # scenario whose A/A run tunes the "tuned once" thresholds
    p0: float = 0.0
    p1: float = 0.0
    latency_factor: float = 1.0
    slo: float | None = None  # error-rate SLO given to robustness-gate
    bursty: bool = False
    seed_index: int = 0

    @property
    def on_fraction(self) -> float:
        return 0.5 if self.bursty else 1.0

    def probs(self, regressed: bool) -> tuple[FloatArray, FloatArray]:
        """Category probabilities (baseline, canary): [bad, good] for errors, buckets otherwise."""
        if self.kind == "errors":
            p = self.p1 if regressed else self.p0
            return np.array([self.p0, 1 - self.p0]), np.array([p, 1 - p])
        if self.kind == "latency":
            return latency_probs(1.0), latency_probs(self.latency_factor if regressed else 1.0)
        return drift_probs(0.0), drift_probs(drift_shift_for_psi() if regressed else 0.0)

    @property
    def bounds(self) -> tuple[float, ...]:
        return LATENCY_BOUNDS if self.kind == "latency" else DRIFT_BOUNDS

    def analysis(self) -> dict[str, Any]:
        """robustness-gate's analysis settings: defaults, with a look per minute like Flagger's checks."""
        return {"interval": LOOK_INTERVAL}

    def metric(self) -> dict[str, Any]:
        """robustness-gate's metric for this scenario, everything else at its defaults."""
        if self.kind == "errors":
            spec: dict[str, Any] = {"name": "errors", "errorRate": {"errors": "e", "total": "t"}, "compare": {}}
            if self.slo is not None:
                spec["slo"] = {"max": self.slo}
            return spec
        if self.kind == "latency":
            # p99 < 500 ms (Flagger's documented request-duration check) plus the baseline comparison.
            return {
                "name": "latency",
                "latency": {"histogram": "http_request_duration_seconds"},
                "slo": {"quantile": 0.99, "max": 0.5},
                "compare": {},
            }
        return {"name": "scores", "drift": {"histogram": "prediction_score"}}


def _scenarios() -> tuple[Scenario, ...]:
    return (
        Scenario(
            "errors",
            "error rate 1% → 2%, 10/90 req/s",
            "errors",
            canary_rate=10.0,
            baseline_rate=90.0,
            shipped_threshold=0.01,
            reference="errors",
            p0=0.01,
            p1=0.02,
            seed_index=1,
        ),
        Scenario(
            "errors-slo",
            "error rate 0.1% → 0.5%, 99.9% SLO, 10/90 req/s",
            "errors",
            canary_rate=10.0,
            baseline_rate=90.0,
            shipped_threshold=0.001,
            reference="errors-slo",
            p0=0.001,
            p1=0.005,
            slo=0.001,
            seed_index=2,
        ),
        Scenario(
            "latency",
            "p99 latency +30% (320 → 416 ms), 10/90 req/s",
            "latency",
            canary_rate=10.0,
            baseline_rate=90.0,
            shipped_threshold=0.5,
            reference="latency",
            latency_factor=1.3,
            seed_index=3,
        ),
        Scenario(
            "drift",
            f"prediction drift PSI {DRIFT_PSI:g}, 1/9 predictions/s",
            "drift",
            canary_rate=1.0,
            baseline_rate=9.0,
            shipped_threshold=DRIFT_PSI,
            reference="drift",
            seed_index=4,
        ),
        Scenario(
            "low-traffic",
            "error rate 1% → 2%, 1/9 req/s",
            "errors",
            canary_rate=1.0,
            baseline_rate=9.0,
            shipped_threshold=0.01,
            reference="errors",
            p0=0.01,
            p1=0.02,
            seed_index=5,
        ),
        Scenario(
            "bursty",
            "error rate 1% → 2%, bursty 10/90 req/s, off half the time (2 min mean)",
            "errors",
            canary_rate=10.0,
            baseline_rate=90.0,
            shipped_threshold=0.01,
            reference="errors",
            p0=0.01,
            p1=0.02,
            bursty=True,
            seed_index=6,
        ),
    )


SCENARIOS: tuple[Scenario, ...] = _scenarios()
BY_ID = {scenario.id: scenario for scenario in SCENARIOS}
REFERENCE = "errors"  # its A/A run is the reference healthy canary


def minutes(seconds: float) -> str:
    if math.isinf(seconds):
        return "never"
    return f"{seconds / 60:.1f} min"
