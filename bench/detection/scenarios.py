"""Scenario parameters: traffic, metric, regression size, and what each rule is configured with.

The clean scenarios follow the judge's own model (Poisson traffic, independent Bernoulli requests at one
rate per side). The others each add one departure the real world shows: per-minute rates that vary more
than binomial, error blips on one side or both, a fleet of pods with bursts of their own, several
overdispersed metrics in one gate, traffic below minTraffic, and a canary share that steps up.
"""

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
LOOK_SECONDS = 60
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
# Names of the count metrics of a gate with several (the first is the error rate, the one that regresses).
COUNT_METRICS: tuple[str, ...] = ("errors", "null-age", "null-country", "timeouts", "retries")


@dataclass(frozen=True)
class Blip:
    """Error blips: `on_seconds` out of every `every_seconds` (random phase per run), on one side at random
    per blip (independently per blip) or, `shared`, on both at once."""

    rate: float  # error probability of a side hit by a blip
    on_seconds: int = 60
    every_seconds: int = 600
    shared: bool = False


@dataclass(frozen=True)
class Fleet:
    """Pods per side, traffic split evenly across a side's pods, and per-pod error bursts: starting as a
    Poisson process, lasting uniformly `burst_min_seconds` to `burst_max_seconds` (in whole ticks). With
    `restart_after_burst`, a pod restarts (its counters drop to 0) at a random moment of the tick after
    each burst, as a liveness probe restarts a failing process; the requests it served since the last
    scrape are lost with the old process."""

    canary_pods: int = 1
    baseline_pods: int = 3
    burst_rate: float = 0.15  # error probability of a pod during its burst
    bursts_per_hour: float = 1.0  # per pod
    burst_min_seconds: int = 30
    burst_max_seconds: int = 120
    restart_after_burst: bool = True


@dataclass(frozen=True)
class Split:
    """The canary's share of all traffic, stepping every `step_seconds` and then holding the last share."""

    shares: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)
    step_seconds: int = 120


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
    kappa: float | None = None  # Beta concentration of each side's (and metric's) error probability per period
    period_seconds: int = 30  # one Beta draw per period, for every tick in it
    blip: Blip | None = None
    fleet: Fleet | None = None
    split: Split | None = None
    count_metrics: int = 1  # count metrics of the gate, all at p0; only the first regresses
    departure: str = ""  # what the streams add to the clean model, in plain words; empty: a clean scenario

    @property
    def clean(self) -> bool:
        return not self.departure

    @property
    def overdispersed(self) -> bool:
        """Per-request error probabilities that vary over time or pods: more than binomial variation."""
        return self.kappa is not None or self.blip is not None or self.fleet is not None

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

    def metrics(self) -> list[dict[str, Any]]:
        """robustness-gate's metrics for this scenario, everything else at their defaults."""
        if self.count_metrics > 1:
            return [_count_metric(name) for name in COUNT_METRICS[: self.count_metrics]]
        return [self.metric()]

    def metric(self) -> dict[str, Any]:
        """robustness-gate's (first) metric for this scenario, everything else at its defaults."""
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


def _count_metric(name: str) -> dict[str, Any]:
    """One of a several-metric gate's count metrics: a comparison with the baseline, critical (any one failing
    metric rolls the canary back: the strictest use of the gate's false-rollback budget)."""
    if name == "errors":
        return {"name": name, "critical": True, "errorRate": {"errors": "e", "total": "t"}, "compare": {}}
    return {"name": name, "critical": True, "ratio": {"numerator": name, "denominator": "t"}, "compare": {}}


def _errors(identifier: str, title: str, seed_index: int, departure: str, **changes: Any) -> Scenario:
    """An error-rate scenario at 1% → 2%, 10/90 req/s unless changed, tuned once on the reference."""
    settings: dict[str, Any] = {
        "kind": "errors",
        "canary_rate": 10.0,
        "baseline_rate": 90.0,
        "shipped_threshold": 0.01,
        "reference": "errors",
        "p0": 0.01,
        "p1": 0.02,
        **changes,
    }
    return Scenario(identifier, title, seed_index=seed_index, departure=departure, **settings)


def beta_sd(mean: float, kappa: float) -> float:
    """Standard deviation of a Beta with this mean and concentration a + b = kappa."""
    return math.sqrt(mean * (1 - mean) / (kappa + 1))


def _period_words(period: int) -> str:
    return "every minute" if period == 60 else f"every {period} s"


def _overdispersed(kappa: float, seed_index: int, period: int = 30) -> Scenario:
    return _errors(
        f"overdispersed-k{kappa:g}",
        f"error rate 1% → 2%, rates Beta-distributed per {period} s (κ = {kappa:g}), 10/90 req/s",
        seed_index,
        f"each side's error rate is redrawn {_period_words(period)}, independently per side, from a Beta with "
        f"mean 1% (2% for a bad canary) and concentration κ = {kappa:g} (standard deviation "
        f"{100 * beta_sd(0.01, kappa):.2g} points around 1%): requests within a period are alike, so a look's "
        "counts vary more than binomial",
        kappa=kappa,
        period_seconds=period,
    )


def _departures() -> tuple[Scenario, ...]:
    blip_words = "for 1 minute in every 10 (random phase), each blip on the canary or the baseline at random"
    return (
        _overdispersed(50.0, 7),
        _overdispersed(200.0, 8),
        _overdispersed(1000.0, 9),
        _errors(
            "blips-10",
            "error rate 1% → 2%, one-side error blips to 10%, 10/90 req/s",
            10,
            f"the error rate jumps from 1% to 10% {blip_words}; a bad canary has twice the healthy rate throughout",
            blip=Blip(rate=0.10),
        ),
        _errors(
            "blips-3",
            "error rate 1% → 2%, one-side error blips to 3%, 10/90 req/s",
            11,
            f"the error rate jumps from 1% to 3% {blip_words}; a bad canary has twice the healthy rate throughout",
            blip=Blip(rate=0.03),
        ),
        _errors(
            "blips-shared",
            "error rate 1% → 2%, error blips to 10% on both sides at once, 10/90 req/s",
            12,
            "the error rate jumps from 1% to 10% for 1 minute in every 10 (random phase) on both sides at once, "
            "as when a shared dependency fails; a bad canary has twice the healthy rate throughout",
            blip=Blip(rate=0.10, shared=True),
        ),
        _errors(
            "fleet",
            "error rate 1% → 2%, 1 canary pod and 3 baseline pods with 15% error bursts and restarts, 10/90 req/s",
            13,
            "traffic is split evenly over 1 canary pod (10 req/s) and 3 baseline pods (30 req/s each); each pod "
            "has bursts of 15% errors lasting 30 s to 2 min, starting about once an hour (Poisson), independently "
            "per pod, and restarts after each burst: its counters drop to 0 and the requests since its last "
            "scrape are lost. The judge sees each side's sum over its pods of the operator's per-look counts: a "
            "counter's exact change, or, for a series that reset during the look (and for the new canary pod's "
            "first look), Prometheus' `increase()` over the look; a bad canary has twice the healthy rate "
            "throughout",
            fleet=Fleet(),
        ),
        _errors(
            "five-metrics",
            "error rate 1% → 2% in a gate of 5 critical count metrics, rates Beta-distributed per 30 s (κ = 200), "
            "10/90 req/s",
            14,
            "five critical count metrics at 1% over the same requests (error rate, two feature null rates, "
            "timeouts, retries), each side's and metric's rate redrawn every 30 s from a Beta with concentration "
            "200, independently; only the error rate regresses; the gate's false-rollback budget is split over "
            "its five tests, and any one failing metric rolls the canary back",
            kappa=200.0,
            count_metrics=len(COUNT_METRICS),
        ),
        _errors(
            "very-low-traffic",
            "error rate 1% → 2%, 0.1/0.9 req/s",
            15,
            "none from the binomial model: so little traffic (about 180 canary requests in 30 min) that the "
            "default minTraffic (200 requests a side) is hardly ever reached, so an analysis without shown harm "
            "ends Inconclusive at maxDuration",
            canary_rate=0.1,
            baseline_rate=0.9,
        ),
        Scenario(
            "drift-overdispersed",
            f"prediction drift PSI {DRIFT_PSI:g}, bucket shares Dirichlet-distributed per 30 s (κ = 100), "
            "10/90 predictions/s",
            "drift",
            canary_rate=10.0,
            baseline_rate=90.0,
            shipped_threshold=DRIFT_PSI,
            reference="drift",
            seed_index=17,
            kappa=100.0,
            departure="each side's shares of the ten score buckets are redrawn every 30 s, independently per side, "
            "from a Dirichlet with concentration 100 around the deciles (each share's standard deviation "
            f"{100 * beta_sd(0.1, 100.0):.2g} points around 10%), as when one side serves another mix of inputs "
            "for a while: a look's bucket counts vary more than multinomial; a bad canary's shares are drawn "
            "around its shifted distribution",
        ),
        _errors(
            "traffic-split",
            "error rate 1% → 2%, canary share 10% → 20% → 30% → 50% of 100 req/s, rates Beta-distributed per "
            "30 s (κ = 200)",
            16,
            "the canary's share of 100 req/s steps 10% → 20% → 30% → 50% every 2 minutes (as Flagger's weight "
            "steps do), and each side's error rate is redrawn every 30 s from a Beta with concentration 200, "
            "independently per side",
            kappa=200.0,
            split=Split(),
        ),
    )


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
        *_departures(),
    )


SCENARIOS: tuple[Scenario, ...] = _scenarios()
BY_ID = {scenario.id: scenario for scenario in SCENARIOS}
REFERENCE = "errors"  # its A/A run is the reference healthy canary
# The departure on which a detection target is judged: per-30 s rates Beta-distributed with concentration 200.
DETECTION_TARGET = "overdispersed-k200"


def minutes(seconds: float) -> str:
    if math.isinf(seconds):
        return "never"
    return f"{seconds / 60:.1f} min"
