"""Per-tick error probabilities (or bucket shares) of each side where they are not one constant: the
departures from the binomial (multinomial) model. Each function draws from the given generator in a fixed
order, so a chunk's streams are the same for the same (seed, scenario, regressed, chunk).

Probabilities are per request within a tick; the simulator draws a tick's bad events as
Binomial(requests in the tick, probability), so a rate drawn per period holds for all its ticks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from bench.detection.scenarios import TICK_SECONDS, TICKS, Blip, Fleet, Scenario

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]


def beta_rates(means: FloatArray, kappa: float, runs: int, period_ticks: int, rng: np.random.Generator) -> FloatArray:
    """Rates drawn once per period from Beta(kappa mean, kappa (1 - mean)) for each run, period and entry of
    `means` (one per metric), held over the period's ticks: runs x TICKS x len(means)."""
    periods = -(-TICKS // period_ticks)
    a, b = kappa * means, kappa * (1.0 - means)
    drawn = rng.beta(a, b, size=(runs, periods, len(means)))
    return np.asarray(np.repeat(drawn, period_ticks, axis=1)[:, :TICKS], dtype=float)


def dirichlet_shares(
    probs: FloatArray, kappa: float, runs: int, period_ticks: int, rng: np.random.Generator
) -> FloatArray:
    """Bucket shares drawn once per period from Dirichlet(kappa probs) for each run, held over the period's
    ticks: runs x TICKS x buckets (each share's standard deviation is sqrt(p (1 - p) / (kappa + 1)))."""
    periods = -(-TICKS // period_ticks)
    drawn = rng.dirichlet(kappa * np.asarray(probs, dtype=float), size=(runs, periods))
    return np.asarray(np.repeat(drawn, period_ticks, axis=1)[:, :TICKS], dtype=float)


def side_shares(
    scenario: Scenario, regressed: bool, runs: int, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """(canary, baseline) bucket shares per run and tick of a histogram scenario whose shares vary per period,
    independently per side; a bad canary's are drawn around its shifted distribution."""
    if scenario.kappa is None:
        raise ValueError(f"scenario {scenario.id} has constant bucket shares")
    if scenario.period_seconds % TICK_SECONDS:
        raise ValueError(f"period {scenario.period_seconds}s is not a multiple of the {TICK_SECONDS}s tick")
    period = scenario.period_seconds // TICK_SECONDS
    baseline_probs, canary_probs = scenario.probs(regressed)
    canary = dirichlet_shares(canary_probs, scenario.kappa, runs, period, rng)
    return canary, dirichlet_shares(baseline_probs, scenario.kappa, runs, period, rng)


@dataclass(frozen=True)
class Blips:
    """Where the blips are: per run and tick, whether the canary and whether the baseline is hit."""

    canary: BoolArray
    baseline: BoolArray


def blips(blip: Blip, runs: int, rng: np.random.Generator) -> Blips:
    every, on = blip.every_seconds // TICK_SECONDS, blip.on_seconds // TICK_SECONDS
    phase = rng.integers(0, every, size=runs)
    position = np.arange(TICKS)[None, :] + phase[:, None]
    active = position % every < on
    cycle = position // every
    if blip.shared:
        return Blips(active, active.copy())
    canary_side = rng.random((runs, int(cycle.max()) + 1)) < 0.5  # each blip's side, independently
    hit_canary = np.take_along_axis(canary_side, cycle, axis=1)
    return Blips(active & hit_canary, active & ~hit_canary)


@dataclass(frozen=True)
class Bursts:
    """Per-pod error bursts: starts and lengths (ticks) where a burst starts, the ticks a pod is in one, and
    the ticks in which it restarts (the tick after a burst ends, with restarts)."""

    starts: BoolArray  # runs x TICKS x pods
    lengths: IntArray  # runs x TICKS x pods: the length of the burst starting there (0 where none starts)
    on: BoolArray  # runs x TICKS x pods
    restarts: BoolArray  # runs x TICKS x pods


def bursts(fleet: Fleet, pods: int, runs: int, rng: np.random.Generator) -> Bursts:
    """Starts as a Poisson process per pod (at most one per tick), lengths uniform over whole ticks."""
    shortest, longest = fleet.burst_min_seconds // TICK_SECONDS, fleet.burst_max_seconds // TICK_SECONDS
    starts = rng.random((runs, TICKS, pods)) < fleet.bursts_per_hour * TICK_SECONDS / 3600.0
    lengths = np.where(starts, rng.integers(shortest, longest + 1, size=starts.shape), 0)
    on = np.zeros_like(starts)
    for lag in range(longest):  # a burst started `lag` ticks ago is still on if it is longer than lag
        on[:, lag:] |= lengths[:, : TICKS - lag] > lag
    restarts = np.zeros_like(on)
    if fleet.restart_after_burst:
        restarts[:, 1:] = on[:, :-1] & ~on[:, 1:]
    return Bursts(starts, lengths.astype(np.int64), on, restarts)


# ---------------------------------------------------------------- counters as the operator reads them


def counter_values(counts: FloatArray, restarts: BoolArray, initial: FloatArray | float) -> FloatArray:
    """A counter's value at the end of every tick (axis 1), from the events it counted in each tick: a
    restart in a tick drops it to 0 first, so that tick's value is the events counted after the restart."""
    c = np.asarray(counts, dtype=float)
    total = np.cumsum(c, axis=1)
    ticks = np.arange(c.shape[1]).reshape((1, -1) + (1,) * (c.ndim - 2))
    last_restart = np.maximum.accumulate(np.where(restarts, ticks, -1), axis=1)
    # Counted before the last restart up to each tick: the cumulative sum just before that restart's tick.
    before = np.take_along_axis(total - c, np.maximum(last_restart, 0), axis=1)  # 0 before any restart
    start = np.where(last_restart >= 0, 0.0, np.asarray(initial, dtype=float))
    return np.asarray(start + total - before, dtype=float)


def prometheus_increase(values: FloatArray) -> FloatArray:
    """Prometheus' increase(x[w]) over windows of `ticks` samples (axis 1: looks x samples, the samples at the
    ends of the look's ticks, one per tick, as Prometheus 3's left-open range holds them): the change between
    the first and the last sample, a drop counted as a reset to 0, extrapolated to the window's start (or to
    where the counter would have been 0, if that is nearer), as extrapolatedRate does."""
    v = np.asarray(values, dtype=float)
    step = np.diff(v, axis=-1)
    raw = np.where(step >= 0, step, v[..., 1:]).sum(axis=-1)
    samples = v.shape[-1]
    sampled = float(samples - 1)  # in ticks: the first sample is one tick after the window's start
    to_start = np.ones(raw.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        to_zero = np.where(raw > 0, sampled * v[..., 0] / np.where(raw > 0, raw, 1.0), np.inf)
    to_start = np.minimum(to_start, to_zero)  # within 1.1 sample intervals of the start: no halving
    return np.asarray(raw * (sampled + to_start) / sampled, dtype=float)


def operator_looks(
    counts: FloatArray, restarts: BoolArray, initial: FloatArray | float, look_ticks: int, new: bool
) -> FloatArray:
    """The per-look counts the operator's rewritten query gives for each series (runs x ticks [x pods] →
    runs x looks [x pods]): `(x - x offset w) >= 0`, the counter's exact change between looks, or where that is
    negative (a reset) or has no sample one look earlier (a `new` series' first look), `increase(x[w])`."""
    values = counter_values(counts, restarts, initial)
    runs, ticks = values.shape[:2]
    looks = ticks // look_ticks
    per = values[:, : looks * look_ticks].reshape(runs, looks, look_ticks, *values.shape[2:])
    ends = per[:, :, -1]
    previous = np.concatenate([np.broadcast_to(np.asarray(initial, dtype=float), ends[:, :1].shape), ends[:, :-1]], 1)
    exact = ends - previous
    fallback = prometheus_increase(np.moveaxis(per, 2, -1))
    usable = exact >= 0
    if new:
        usable[:, 0] = False
    return np.asarray(np.where(usable, exact, fallback), dtype=float)


def regression_factor(scenario: Scenario, regressed: bool) -> float:
    """A bad canary's error probability is this multiple of the healthy one, at every tick (where the
    departure is not a Beta, whose mean is the regressed rate itself)."""
    return scenario.p1 / scenario.p0 if regressed else 1.0


def side_probabilities(
    scenario: Scenario, regressed: bool, runs: int, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """(canary, baseline) error probabilities per run and tick, with a trailing metric axis where the gate
    has several count metrics. Beta rates per period, or blips on a 1% background."""
    metrics = scenario.count_metrics
    baseline_means = np.full(metrics, scenario.p0)
    canary_means = baseline_means.copy()
    canary_means[0] = scenario.p1 if regressed else scenario.p0
    if scenario.kappa is not None:
        if scenario.period_seconds % TICK_SECONDS:
            raise ValueError(f"period {scenario.period_seconds}s is not a multiple of the {TICK_SECONDS}s tick")
        period = scenario.period_seconds // TICK_SECONDS
        canary = beta_rates(canary_means, scenario.kappa, runs, period, rng)
        baseline = beta_rates(baseline_means, scenario.kappa, runs, period, rng)
    elif scenario.blip is not None:
        hit = blips(scenario.blip, runs, rng)
        factor = regression_factor(scenario, regressed)
        canary = (np.where(hit.canary, scenario.blip.rate, scenario.p0) * factor)[:, :, None]
        baseline = np.where(hit.baseline, scenario.blip.rate, scenario.p0)[:, :, None]
    else:
        raise ValueError(f"scenario {scenario.id} has constant error rates")
    if metrics == 1:
        return canary[:, :, 0], baseline[:, :, 0]
    return canary, baseline


def pod_probabilities(
    scenario: Scenario, regressed: bool, runs: int, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray, Bursts]:
    """Error probabilities per run, tick and pod (canary pods, baseline pods) and the bursts behind them."""
    fleet = scenario.fleet
    if fleet is None:
        raise ValueError(f"scenario {scenario.id} has no fleet")
    drawn = bursts(fleet, fleet.canary_pods + fleet.baseline_pods, runs, rng)
    rates = np.where(drawn.on, fleet.burst_rate, scenario.p0)
    canary = rates[:, :, : fleet.canary_pods] * regression_factor(scenario, regressed)
    return np.asarray(canary, dtype=float), np.asarray(rates[:, :, fleet.canary_pods :], dtype=float), drawn
