"""Seeded, vectorised canary and baseline traffic: one row per run, one column per 10 s tick.

Request counts are Poisson at the scenario's rates (zero while a burst is off), bad events are
binomial, latencies and prediction scores are multinomial over the histogram buckets (the same
distribution as drawing each observation and bucketing it). A regression is present from the
first request. Every rule reads the same `Streams`, so they are compared on identical data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bench.detection.scenarios import BURST_MEAN_SECONDS, TICK_SECONDS, TICKS, Scenario

IntArray = NDArray[np.int64]
CHUNK = 250  # runs per random stream, so run i is the same whatever the total number of runs


@dataclass(frozen=True)
class Streams:
    """Counts per run and tick. `canary_bad`/`baseline_bad` hold bad events (errors) or, for
    histograms, per-bucket counts with a trailing bucket axis (last bucket = +Inf)."""

    canary_total: IntArray
    baseline_total: IntArray
    canary_bad: IntArray
    baseline_bad: IntArray

    @property
    def runs(self) -> int:
        return int(self.canary_total.shape[0])

    def head(self, runs: int) -> Streams:
        return Streams(
            self.canary_total[:runs], self.baseline_total[:runs], self.canary_bad[:runs], self.baseline_bad[:runs]
        )


def _traffic_on(rng: np.random.Generator, runs: int) -> NDArray[np.bool_]:
    start = rng.random(runs) < 0.5  # stationary start of a symmetric on/off chain
    switch = rng.random((runs, TICKS)) < TICK_SECONDS / BURST_MEAN_SECONDS
    flips = np.cumsum(switch, axis=1) % 2 == 1
    return np.asarray(start[:, None] ^ flips)


def _chunk(scenario: Scenario, regressed: bool, runs: int, rng: np.random.Generator) -> Streams:
    on = _traffic_on(rng, runs) if scenario.bursty else np.ones((runs, TICKS), dtype=bool)
    canary_n = rng.poisson(scenario.canary_rate * TICK_SECONDS * on)
    baseline_n = rng.poisson(scenario.baseline_rate * TICK_SECONDS * on)
    baseline_p, canary_p = scenario.probs(regressed)
    if scenario.kind == "errors":
        canary_bad = rng.binomial(canary_n, canary_p[0])
        baseline_bad = rng.binomial(baseline_n, baseline_p[0])
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
    parts = []
    for index in range(-(-runs // CHUNK)):
        rng = np.random.default_rng([seed, scenario.seed_index, int(regressed), index])
        parts.append(_chunk(scenario, regressed, CHUNK, rng))
    return Streams(*(np.concatenate([getattr(p, f) for p in parts])[:runs] for f in Streams.__dataclass_fields__))
