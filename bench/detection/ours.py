"""robustness-gate's own judge and policy at their defaults, called at every look of every run.

Only the public functions are used (RobustnessGateSpec, judge_gate, decide), with the per-look
series accumulated so far, so any change to the judge or the policy shows up here. The judge runs
either with its default (robust) count tests or with the pure-binomial ones (`robust=False`), to
show what robustness costs on clean streams and what it saves under the departures.
"""

from __future__ import annotations

import enum
import inspect
import math
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from bench.detection.outcome import Outcome
from bench.detection.scenarios import HORIZON_SECONDS, LOOK_SECONDS, TICK_SECONDS, Scenario
from bench.detection.simulate import Streams
from robustness_gate.api import Action, OnInconclusive, RobustnessGateSpec
from robustness_gate.judge import GateVerdict, judge_gate
from robustness_gate.policy import decide
from robustness_gate.series import CountSeries, FloatArray, HistogramSeries, MetricData
from robustness_gate.stats import counts


def gate_document(scenario: Scenario) -> dict[str, Any]:
    return {
        "targetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "app"},
        "prometheus": {"address": "http://prometheus:9090"},
        "analysis": scenario.analysis(),
        "metrics": scenario.metrics(),
    }


@cache
def gate_spec(scenario: Scenario) -> RobustnessGateSpec:
    return RobustnessGateSpec.model_validate(gate_document(scenario))


def look_ticks(spec: RobustnessGateSpec) -> int:
    interval = spec.analysis.interval_seconds
    if interval % TICK_SECONDS:
        raise ValueError(f"analysis.interval {spec.analysis.interval} is not a multiple of {TICK_SECONDS}s")
    return int(interval // TICK_SECONDS)


def per_look(counts: np.ndarray[Any, Any], ticks: int) -> FloatArray:
    """Increments per look (runs x looks [x buckets]) from per-tick counts."""
    looks = counts.shape[1] // ticks
    shaped = counts[:, : looks * ticks].reshape(counts.shape[0], looks, ticks, *counts.shape[2:])
    return np.asarray(shaped.sum(axis=2), dtype=float)


# A judge without the `robust` keyword has only the binomial count tests: both rows then judge alike.
JUDGE_TAKES_ROBUST = "robust" in inspect.signature(judge_gate).parameters
_judge_gate: Callable[..., GateVerdict] = judge_gate


def judge(spec: RobustnessGateSpec, data: dict[str, MetricData], robust: bool) -> GateVerdict:
    """judge_gate with its robust count tests (its default) or with the pure-binomial ones."""
    if JUDGE_TAKES_ROBUST:
        return _judge_gate(spec, data, robust=robust)
    return _judge_gate(spec, data)


class End(enum.Enum):
    ROLLBACK = "rollback"
    PROMOTE = "promote"
    HELD = "held"  # the canary is left where it is for a person to decide: neither rolled back nor promoted


def ending(action: Action, on_inconclusive: OnInconclusive) -> End | None:
    """What a decision does to the canary (None: the analysis goes on). maxDuration's Inconclusive follows
    onInconclusive: Rollback and Promote act, Pause and None hold the canary."""
    if action is Action.CONTINUE:
        return None
    if action is Action.ROLLBACK:
        return End.ROLLBACK
    if action is Action.PROMOTE:
        return End.PROMOTE
    acts = {OnInconclusive.ROLLBACK: End.ROLLBACK, OnInconclusive.PROMOTE: End.PROMOTE}
    return acts.get(on_inconclusive, End.HELD)


def _look_data(
    scenario: Scenario,
    names: list[str],
    series: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    look: int,
) -> dict[str, MetricData]:
    """Every metric's per-look series up to `look` of one run (ct, bt: looks; cb, bb: looks [x metrics])."""
    ct, bt, cb, bb = (values[:look] for values in series)
    if scenario.kind != "errors":
        return {names[0]: HistogramSeries(scenario.bounds, cb, bb)}
    if cb.ndim == 1:
        return {names[0]: CountSeries(cb, ct, bb, bt)}
    return {name: CountSeries(cb[:, m], ct, bb[:, m], bt) for m, name in enumerate(names)}


def look_counts(streams: Streams, ticks: int) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Per-look counts as the operator reads them: the simulator's where it has them (a fleet's counters), else
    the sums of each look's ticks."""
    if streams.looks is not None:
        if ticks * TICK_SECONDS != LOOK_SECONDS:
            raise ValueError(f"the simulated looks are {LOOK_SECONDS}s, the gate's {ticks * TICK_SECONDS}s")
        looks = streams.looks
        return looks.canary_total, looks.baseline_total, looks.canary_bad, looks.baseline_bad
    return (
        per_look(streams.canary_total, ticks),
        per_look(streams.baseline_total, ticks),
        per_look(streams.canary_bad, ticks),
        per_look(streams.baseline_bad, ticks),
    )


def run_ours(scenario: Scenario, streams: Streams, robust: bool = True) -> Outcome:
    """First decision of every run; maxDuration's Inconclusive follows the gate's onInconclusive."""
    spec = gate_spec(scenario)
    ticks = look_ticks(spec)
    looks = min(HORIZON_SECONDS // (ticks * TICK_SECONDS), streams.canary_total.shape[1] // ticks)
    names = [metric.name for metric in spec.metrics]
    ct, bt, cb, bb = look_counts(streams, ticks)
    times = {end: np.full(streams.runs, math.inf) for end in End}
    look_seconds = ticks * TICK_SECONDS
    for run in range(streams.runs):
        series = (ct[run], bt[run], cb[run], bb[run])
        for look in range(1, looks + 1):
            elapsed = float(look * look_seconds)
            verdict = judge(spec, _look_data(scenario, names, series, look), robust)
            end = ending(decide(verdict, elapsed, spec.analysis).action, spec.on_inconclusive)
            if end is not None:
                times[end][run] = elapsed
                break
    return Outcome(times[End.ROLLBACK], times[End.PROMOTE], times[End.HELD])


def oracle_at_tolerance(scenario: Scenario, streams: Streams) -> FloatArray | None:
    """Seconds until the likelihood ratio of the exact regression against the ratio robustness-gate tolerates
    (1 + compare.tolerance) first reaches 1/falsePositiveRate, per run (inf: not within the horizon).

    A test of robustness-gate's own null that knows the regression exactly, on the same looks: the pace our
    judge, which mixes over effects it does not know, can approach but not beat on average. None where the
    scenario is not a plain error-rate comparison (an SLO, a histogram, several metrics) or its rates are
    not binomial."""
    spec = gate_spec(scenario)
    metric = spec.metrics[0]
    if scenario.kind != "errors" or metric.slo is not None or metric.compare is None:
        return None
    if scenario.overdispersed or scenario.count_metrics > 1:
        return None  # its likelihood ratio is the binomial model's, and it ignores the gate's budget split
    tolerated = 1 + metric.compare.tolerance
    true_ratio = scenario.p1 / scenario.p0
    if true_ratio <= tolerated:
        return None
    ticks = look_ticks(spec)
    looks = min(HORIZON_SECONDS // (ticks * TICK_SECONDS), streams.canary_total.shape[1] // ticks)
    ct, bt = per_look(streams.canary_total, ticks)[:, :looks], per_look(streams.baseline_total, ticks)[:, :looks]
    cb, bb = per_look(streams.canary_bad, ticks)[:, :looks], per_look(streams.baseline_bad, ticks)[:, :looks]
    seconds = np.full(streams.runs, math.inf)
    effect = np.array([math.log(true_ratio / tolerated)])
    for run in range(streams.runs):
        evidence = counts.ratio_log_evalues(cb[run], ct[run], bb[run], bt[run], tolerated, True, log_effects=effect)
        look = evidence.first_rejection(spec.analysis.false_positive_rate)
        if look is not None:
            seconds[run] = (look + 1) * ticks * TICK_SECONDS
    return seconds
