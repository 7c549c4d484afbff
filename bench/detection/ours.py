"""robustness-gate's own judge and policy at their defaults, called at every look of every run.

Only the public functions are used (RobustnessGateSpec, judge_gate, decide), with the per-look
series accumulated so far, so any change to the judge or the policy shows up here.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np

from bench.detection.outcome import Outcome
from bench.detection.scenarios import HORIZON_SECONDS, TICK_SECONDS, Scenario
from bench.detection.simulate import Streams
from robustness_gate.api import Action, OnInconclusive, RobustnessGateSpec
from robustness_gate.judge import judge_gate
from robustness_gate.policy import decide
from robustness_gate.series import CountSeries, FloatArray, HistogramSeries, MetricData
from robustness_gate.stats import counts


def gate_document(scenario: Scenario) -> dict[str, Any]:
    return {
        "targetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "app"},
        "prometheus": {"address": "http://prometheus:9090"},
        "analysis": scenario.analysis(),
        "metrics": [scenario.metric()],
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


def run_ours(scenario: Scenario, streams: Streams) -> Outcome:
    """First decision of every run; maxDuration's Inconclusive follows onInconclusive (default Rollback)."""
    spec = gate_spec(scenario)
    ticks = look_ticks(spec)
    looks = min(HORIZON_SECONDS // (ticks * TICK_SECONDS), streams.canary_total.shape[1] // ticks)
    name = spec.metrics[0].name
    ct, bt = per_look(streams.canary_total, ticks), per_look(streams.baseline_total, ticks)
    cb, bb = per_look(streams.canary_bad, ticks), per_look(streams.baseline_bad, ticks)
    rollback = np.full(streams.runs, math.inf)
    promote = np.full(streams.runs, math.inf)
    look_seconds = ticks * TICK_SECONDS
    for run in range(streams.runs):
        for look in range(1, looks + 1):
            data: MetricData
            if scenario.kind == "errors":
                data = CountSeries(cb[run, :look], ct[run, :look], bb[run, :look], bt[run, :look])
            else:
                data = HistogramSeries(scenario.bounds, cb[run, :look], bb[run, :look])
            elapsed = float(look * look_seconds)
            action = decide(judge_gate(spec, {name: data}), elapsed, spec.analysis).action
            if action is Action.CONTINUE:
                continue
            if action is Action.ROLLBACK or (
                action is Action.INCONCLUSIVE and spec.on_inconclusive is OnInconclusive.ROLLBACK
            ):
                rollback[run] = elapsed
            elif action is Action.PROMOTE or (
                action is Action.INCONCLUSIVE and spec.on_inconclusive is OnInconclusive.PROMOTE
            ):
                promote[run] = elapsed
            break
    return Outcome(rollback, promote)


def oracle_at_tolerance(scenario: Scenario, streams: Streams) -> FloatArray | None:
    """Seconds until the likelihood ratio of the exact regression against the ratio robustness-gate tolerates
    (1 + compare.tolerance) first reaches 1/falsePositiveRate, per run (inf: not within the horizon).

    A test of robustness-gate's own null that knows the regression exactly, on the same looks: the pace our
    judge, which mixes over effects it does not know, can approach but not beat on average. None where the
    scenario is not a plain error-rate comparison (an SLO, a histogram)."""
    spec = gate_spec(scenario)
    metric = spec.metrics[0]
    if scenario.kind != "errors" or metric.slo is not None or metric.compare is None:
        return None
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
