"""Seeded, vectorised canary and baseline traffic: one row per run, one column per 10 s tick.

Request counts are Poisson at the scenario's rates (zero while a burst is off), bad events are
binomial, latencies and prediction scores are multinomial over the histogram buckets (the same
distribution as drawing each observation and bucketing it). A regression is present from the
first request. Every rule reads the same `Streams`, so they are compared on identical data.

Where a scenario departs from the binomial model (departures.py), a tick's bad events are
Binomial(requests in the tick, that tick's error probability); a fleet is simulated pod by pod
and each side summed over its pods, as Prometheus' `sum by` would give. There robustness-gate reads
each pod's per-look counts as its rewritten queries return them (`Streams.looks`: exact counter
changes, `increase()` where a counter reset), the peers the ticks' counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bench.detection.departures import Bursts, operator_looks, pod_probabilities, side_probabilities, side_shares
from bench.detection.scenarios import BURST_MEAN_SECONDS, LOOK_SECONDS, TICK_SECONDS, TICKS, Scenario

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
# A baseline pod's counters before the canary starts: a day of traffic (only "large" matters: a look after a
# reset is compared with it).
HISTORY_SECONDS = 86_400
CHUNK = 250  # runs per random stream, so run i is the same whatever the total number of runs


COUNTS = ("canary_total", "baseline_total", "canary_bad", "baseline_bad")


@dataclass(frozen=True)
class Looks:
    """Per-look counts (runs x looks) as the operator's rewritten queries return them, where they are not the
    sums of the looks' ticks (a counter that reset, a new series): floats, as Prometheus' `increase()` is."""

    canary_total: FloatArray
    baseline_total: FloatArray
    canary_bad: FloatArray
    baseline_bad: FloatArray


@dataclass(frozen=True)
class Streams:
    """Counts per run and tick. `canary_bad`/`baseline_bad` hold bad events (errors), with a trailing
    metric axis where the gate has several count metrics (all over the same requests), or, for
    histograms, per-bucket counts with a trailing bucket axis (last bucket = +Inf). `looks`, where set,
    is what robustness-gate reads instead of the ticks' sums per look; the peers read the ticks."""

    canary_total: IntArray
    baseline_total: IntArray
    canary_bad: IntArray
    baseline_bad: IntArray
    looks: Looks | None = None

    @property
    def runs(self) -> int:
        return int(self.canary_total.shape[0])

    def rows(self, start: int, stop: int) -> Streams:
        """Runs start..stop-1."""
        looks = None
        if self.looks is not None:
            looks = Looks(*(getattr(self.looks, f)[start:stop] for f in COUNTS))
        counts = [getattr(self, f)[start:stop] for f in COUNTS]
        return Streams(counts[0], counts[1], counts[2], counts[3], looks)

    def head(self, runs: int) -> Streams:
        return self.rows(0, runs)

    @staticmethod
    def concat(parts: list[Streams]) -> Streams:
        looks = None
        if all(p.looks is not None for p in parts):
            looks = Looks(*(np.concatenate([getattr(p.looks, f) for p in parts]) for f in COUNTS))
        counts = [np.concatenate([getattr(p, f) for p in parts]) for f in COUNTS]
        return Streams(counts[0], counts[1], counts[2], counts[3], looks)


@dataclass(frozen=True)
class Pods:
    """A fleet's counts per run, tick and pod (the requests a restart lost taken out), the bursts behind its
    error probabilities, and each pod's per-look counts as the operator reads them (runs x looks x pods)."""

    canary_total: IntArray
    baseline_total: IntArray
    canary_bad: IntArray
    baseline_bad: IntArray
    bursts: Bursts
    looks: Looks
    lost_requests: int  # served but never scraped: counted by a process that restarted before its next scrape

    def sums(self) -> Streams:
        """Each side summed over its pods."""
        ticks = [getattr(self, f).sum(axis=2).astype(np.int64) for f in COUNTS]
        looks = Looks(*(getattr(self.looks, f).sum(axis=2) for f in COUNTS))
        return Streams(ticks[0], ticks[1], ticks[2], ticks[3], looks)


def chunk_rng(seed: int, scenario: Scenario, regressed: bool, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, scenario.seed_index, int(regressed), index])


def _traffic_on(rng: np.random.Generator, runs: int) -> NDArray[np.bool_]:
    start = rng.random(runs) < 0.5  # stationary start of a symmetric on/off chain
    switch = rng.random((runs, TICKS)) < TICK_SECONDS / BURST_MEAN_SECONDS
    flips = np.cumsum(switch, axis=1) % 2 == 1
    return np.asarray(start[:, None] ^ flips)


def canary_share(scenario: Scenario) -> NDArray[np.float64]:
    """The canary's share of all traffic at each tick."""
    total = scenario.canary_rate + scenario.baseline_rate
    if scenario.split is None:
        return np.full(TICKS, scenario.canary_rate / total)
    step = np.arange(TICKS) * TICK_SECONDS // scenario.split.step_seconds
    shares = np.asarray(scenario.split.shares, dtype=float)
    return np.asarray(shares[np.minimum(step, len(shares) - 1)], dtype=float)


def _expected_requests(scenario: Scenario, on: NDArray[np.bool_]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if scenario.split is None:
        canary, baseline = scenario.canary_rate * TICK_SECONDS * on, scenario.baseline_rate * TICK_SECONDS * on
    else:
        share = canary_share(scenario)[None, :]
        total = (scenario.canary_rate + scenario.baseline_rate) * TICK_SECONDS * on
        canary, baseline = share * total, (1.0 - share) * total
    return np.asarray(canary, dtype=float), np.asarray(baseline, dtype=float)


def pods(scenario: Scenario, regressed: bool, runs: int, rng: np.random.Generator) -> Pods:
    """A fleet's runs: each side's traffic split evenly over its pods, each pod with its own bursts and
    restarts. A restart happens at a uniform moment of its tick: the requests (and errors) before it were
    counted by the old process after its last scrape, and are lost; the counters start again from 0."""
    fleet = scenario.fleet
    if fleet is None:
        raise ValueError(f"scenario {scenario.id} has no fleet")
    canary_n = rng.poisson(scenario.canary_rate / fleet.canary_pods * TICK_SECONDS, (runs, TICKS, fleet.canary_pods))
    baseline_n = rng.poisson(
        scenario.baseline_rate / fleet.baseline_pods * TICK_SECONDS, (runs, TICKS, fleet.baseline_pods)
    )
    canary_p, baseline_p, drawn = pod_probabilities(scenario, regressed, runs, rng)
    requests = np.concatenate([canary_n, baseline_n], axis=2)
    errors = rng.binomial(requests, np.concatenate([canary_p, baseline_p], axis=2))
    before = np.where(drawn.restarts, rng.random(requests.shape), 0.0)  # share of the tick before a restart
    lost_errors = rng.binomial(errors, before)
    lost_ok = rng.binomial(requests - errors, before)
    requests = requests - lost_errors - lost_ok
    errors = errors - lost_errors
    look_ticks = LOOK_SECONDS // TICK_SECONDS
    split = fleet.canary_pods
    history = np.concatenate(
        [np.zeros(split), np.full(fleet.baseline_pods, scenario.baseline_rate / fleet.baseline_pods * HISTORY_SECONDS)]
    )

    def looks(counts: IntArray, initial: FloatArray) -> tuple[FloatArray, FloatArray]:
        c = counts.astype(float)
        canary = operator_looks(c[:, :, :split], drawn.restarts[:, :, :split], initial[:split], look_ticks, True)
        baseline = operator_looks(c[:, :, split:], drawn.restarts[:, :, split:], initial[split:], look_ticks, False)
        return canary, baseline

    canary_total, baseline_total = looks(requests, history)
    canary_bad, baseline_bad = looks(errors, history * scenario.p0)
    return Pods(
        requests[:, :, :split].astype(np.int64),
        requests[:, :, split:].astype(np.int64),
        errors[:, :, :split].astype(np.int64),
        errors[:, :, split:].astype(np.int64),
        drawn,
        Looks(canary_total, baseline_total, canary_bad, baseline_bad),
        int((lost_errors + lost_ok).sum()),
    )


def _chunk(scenario: Scenario, regressed: bool, runs: int, rng: np.random.Generator) -> Streams:
    if scenario.fleet is not None:
        return pods(scenario, regressed, runs, rng).sums()
    on = _traffic_on(rng, runs) if scenario.bursty else np.ones((runs, TICKS), dtype=bool)
    canary_mean, baseline_mean = _expected_requests(scenario, on)
    canary_n = rng.poisson(canary_mean)
    baseline_n = rng.poisson(baseline_mean)
    baseline_p, canary_p = scenario.probs(regressed)
    if scenario.kind == "errors" and (scenario.kappa is not None or scenario.blip is not None):
        canary_rates, baseline_rates = side_probabilities(scenario, regressed, runs, rng)
        several = canary_rates.ndim == 3  # count metrics over the same requests
        canary_bad = rng.binomial(canary_n[:, :, None] if several else canary_n, canary_rates)
        baseline_bad = rng.binomial(baseline_n[:, :, None] if several else baseline_n, baseline_rates)
    elif scenario.kind == "errors":
        canary_bad = rng.binomial(canary_n, canary_p[0])
        baseline_bad = rng.binomial(baseline_n, baseline_p[0])
    elif scenario.kappa is not None:
        canary_shares, baseline_shares = side_shares(scenario, regressed, runs, rng)
        canary_bad = rng.multinomial(canary_n, canary_shares)
        baseline_bad = rng.multinomial(baseline_n, baseline_shares)
    else:
        canary_bad = rng.multinomial(canary_n, canary_p)
        baseline_bad = rng.multinomial(baseline_n, baseline_p)
    return Streams(
        canary_n.astype(np.int64),
        baseline_n.astype(np.int64),
        canary_bad.astype(np.int64),
        baseline_bad.astype(np.int64),
    )


def simulate(scenario: Scenario, regressed: bool, runs: int, seed: int) -> Streams:
    """`runs` canary lifetimes; the same (seed, scenario, regressed) always gives the same runs."""
    parts = [
        _chunk(scenario, regressed, CHUNK, chunk_rng(seed, scenario, regressed, i)) for i in range(-(-runs // CHUNK))
    ]
    return Streams.concat(parts).head(runs)
