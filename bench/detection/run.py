"""The whole benchmark: simulate each scenario, run every rule in every tuning mode, collect outcomes."""

from __future__ import annotations

import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from bench.detection import floors
from bench.detection.metrics import kayenta_points
from bench.detection.ours import JUDGE_TAKES_ROBUST, gate_spec, look_ticks, oracle_at_tolerance, run_ours
from bench.detection.outcome import FloatArray, Outcome
from bench.detection.peers import (
    ArgoRule,
    FlaggerRule,
    KayentaJudgements,
    KayentaRule,
    argo_outcome,
    argo_values,
    confidence_of,
    flagger_outcome,
    flagger_values,
    kayenta_direction,
    kayenta_judgements,
    kayenta_outcome,
    z_of,
)
from bench.detection.scenarios import BY_ID, DETECTION_TARGET, REFERENCE, SCENARIOS, TICK_SECONDS, Scenario
from bench.detection.simulate import Streams, simulate
from bench.detection.tuning import bisect_knob

MODES = ("shipped", "once", "tuned")
OURS = "robustness-gate"
BINOMIAL = "robustness-gate (binomial model)"  # the judge with its pure-binomial count tests (robust=False)
PEERS = ("Flagger", "Argo Rollouts", "Kayenta")
RULES = (OURS, BINOMIAL, *PEERS)
OURS_CHUNK = 50
KAYENTA_CHUNK = 50


@dataclass(frozen=True)
class Config:
    seed: int = 20261202
    reference_aa_runs: int = 10_000  # our judge on the reference A/A scenario
    aa_runs: int = 1_000  # A/A runs of every other clean scenario
    h1_runs: int = 1_000  # regressed runs per clean scenario and for the detection target's scenario
    kayenta_runs: int = 300  # runs (of each kind) classified by Kayenta, the slowest peer
    # Where healthy canaries under our judge run to maxDuration (30 looks each): fewer runs.
    slow_scenarios: tuple[str, ...] = ("errors-slo", "low-traffic")
    slow_aa_runs: int = 1_000
    slow_h1_runs: int = 600
    # Scenarios beyond the clean model: enough healthy runs for a 1% upper bound to be shown (<= 11 of 2,000).
    departure_aa_runs: int = 2_000
    # Their regressed runs, where no target is judged on them (there: h1_runs).
    departure_h1_runs: int = 500
    target_fpr: float = 0.01
    jobs: int = 2
    scenarios: tuple[str, ...] = tuple(s.id for s in SCENARIOS)

    def healthy_runs(self, scenario: Scenario) -> int:
        if scenario.id == REFERENCE:
            return self.reference_aa_runs
        if not scenario.clean:
            return self.departure_aa_runs
        return self.slow_aa_runs if scenario.id in self.slow_scenarios else self.aa_runs

    def regressed_runs(self, scenario: Scenario) -> int:
        if scenario.id == DETECTION_TARGET:
            return self.h1_runs
        if not scenario.clean:
            return self.departure_h1_runs
        return self.slow_h1_runs if scenario.id in self.slow_scenarios else self.h1_runs


QUICK = Config(
    reference_aa_runs=200,
    aa_runs=60,
    h1_runs=40,
    kayenta_runs=30,
    slow_aa_runs=40,
    slow_h1_runs=30,
    departure_aa_runs=100,
    departure_h1_runs=30,
)


@dataclass(frozen=True)
class Cell:
    rule: str
    mode: str
    knob: str  # the setting used, readable
    healthy: Outcome
    regressed: Outcome


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    cells: list[Cell]
    oracle_floor: float
    two_sample_floor: float
    look_seconds: float
    healthy_runs: int
    regressed_runs: int
    kayenta_runs: int
    # Seconds to roll back each regressed run for a likelihood-ratio test that knows the regression, against
    # the ratio robustness-gate tolerates (ours.oracle_at_tolerance); None where not a plain error-rate compare
    tolerance_oracle: FloatArray | None = None


@dataclass
class Results:
    config: Config
    scenarios: list[ScenarioResult] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    wall_seconds: float = 0.0


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def _stage(results: Results, name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    results.stages[name] = results.stages.get(name, 0.0) + elapsed
    _log(f"  {name}: {elapsed:.1f}s")


def _ours_task(args: tuple[str, Streams, bool]) -> Outcome:
    return run_ours(BY_ID[args[0]], args[1], robust=args[2])


def _kayenta_task(args: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], KayentaRule, Any]) -> KayentaJudgements:
    return kayenta_judgements(*args)


def _judge(
    runner: _Runner, scenario: Scenario, healthy: Streams, regressed: Streams, robust: bool
) -> tuple[Outcome, Outcome]:
    tasks = [(scenario.id, c, robust) for s in (healthy, regressed) for c in _chunks(s, OURS_CHUNK)]
    parts = runner.map(_ours_task, tasks)
    n_healthy = -(-healthy.runs // OURS_CHUNK)
    return Outcome.concat(parts[:n_healthy]), Outcome.concat(parts[n_healthy:])


def _chunks(streams: Streams, size: int) -> list[Streams]:
    return [streams.rows(i, i + size) for i in range(0, streams.runs, size)]


class _Runner:
    def __init__(self, jobs: int) -> None:
        self.pool = multiprocessing.get_context("fork").Pool(jobs) if jobs > 1 else None

    def map(self, function: Callable[[Any], Any], tasks: list[Any]) -> list[Any]:
        if self.pool is None:
            return [function(task) for task in tasks]
        return self.pool.map(function, tasks, chunksize=1)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


def _fpr(outcome: Outcome) -> float:
    return outcome.rolled_back / outcome.runs if outcome.runs else 0.0


@dataclass
class _Knobs:
    """Per-scenario tuned knobs, kept to be reused by scenarios that name this one as reference."""

    flagger: dict[str, float] = field(default_factory=dict)
    argo: dict[str, float] = field(default_factory=dict)
    kayenta: dict[str, float] = field(default_factory=dict)


def _threshold_range(values: np.ndarray[Any, Any]) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 1.0
    return max(top, 1e-9) * 1e-6, max(top, 1e-9) * 1.01 + 1e-12


def _unit(scenario: Scenario, value: float) -> str:
    if scenario.kind == "errors":
        return f"{100 * value:.3g}%"
    if scenario.kind == "latency":
        return f"{1000 * value:.0f} ms"
    return f"PSI {value:.3g}"


def run_scenario(scenario: Scenario, config: Config, runner: _Runner, knobs: _Knobs, results: Results) -> None:
    _log(f"{scenario.id}: {scenario.title}")
    with _stage(results, "simulate"):
        healthy = simulate(scenario, False, config.healthy_runs(scenario), config.seed)
        regressed = simulate(scenario, True, config.regressed_runs(scenario), config.seed)
    cells: list[Cell] = []
    with _stage(results, OURS):
        ours_healthy, ours_regressed = _judge(runner, scenario, healthy, regressed, robust=True)
        cells.append(Cell(OURS, "defaults", "defaults", ours_healthy, ours_regressed))
    with _stage(results, "binomial model"):
        if JUDGE_TAKES_ROBUST:
            h_binomial, r_binomial = _judge(runner, scenario, healthy, regressed, robust=False)
        else:  # a judge with only the binomial count tests already judged these runs
            h_binomial, r_binomial = ours_healthy, ours_regressed
        cells.append(Cell(BINOMIAL, "defaults", "binomial count tests (robust=False)", h_binomial, r_binomial))
    reference = scenario.reference
    with _stage(results, "Flagger"):
        rule = FlaggerRule(max_value=scenario.shipped_threshold)
        h_values, times = flagger_values(scenario, healthy, rule)
        r_values, _ = flagger_values(scenario, regressed, rule)
        low, high = _threshold_range(h_values)
        tuned = bisect_knob(
            lambda t: _fpr(flagger_outcome(h_values, times, FlaggerRule(max_value=t))), low, high, config.target_fpr
        )
        knobs.flagger[scenario.id] = tuned
        for mode, value in zip(
            MODES, (scenario.shipped_threshold, knobs.flagger.get(reference, tuned), tuned), strict=True
        ):
            r = FlaggerRule(max_value=value)
            h_out = flagger_outcome(h_values, times, r)
            knob = f"max {_unit(scenario, value)}" + _unreached(mode, h_out, config)
            cells.append(Cell("Flagger", mode, knob, h_out, flagger_outcome(r_values, times, r)))
    with _stage(results, "Argo Rollouts"):
        arule = ArgoRule(max_value=scenario.shipped_threshold)
        h_argo, r_argo = argo_values(scenario, healthy, arule), argo_values(scenario, regressed, arule)
        low, high = _threshold_range(h_argo)
        tuned = bisect_knob(lambda t: _fpr(argo_outcome(h_argo, ArgoRule(max_value=t))), low, high, config.target_fpr)
        knobs.argo[scenario.id] = tuned
        for mode, value in zip(
            MODES, (scenario.shipped_threshold, knobs.argo.get(reference, tuned), tuned), strict=True
        ):
            r2 = ArgoRule(max_value=value)
            h_out = argo_outcome(h_argo, r2)
            knob = f"result ≤ {_unit(scenario, value)}" + _unreached(mode, h_out, config)
            cells.append(Cell("Argo Rollouts", mode, knob, h_out, argo_outcome(r_argo, r2)))
    with _stage(results, "Kayenta"):
        krule = KayentaRule()
        direction = kayenta_direction(scenario)
        step = krule.step_s // TICK_SECONDS
        judged: list[list[KayentaJudgements]] = []
        for streams in (healthy.head(config.kayenta_runs), regressed.head(config.kayenta_runs)):
            canary, baseline = kayenta_points(scenario, streams, step)
            metrics = 1 if canary.ndim == 2 else canary.shape[2]
            per_metric = (
                [(canary, baseline)]
                if canary.ndim == 2
                else [(canary[..., m], baseline[..., m]) for m in range(metrics)]
            )
            tasks = [
                (c[i : i + KAYENTA_CHUNK], b[i : i + KAYENTA_CHUNK], krule, direction)
                for c, b in per_metric
                for i in range(0, streams.runs, KAYENTA_CHUNK)
            ]
            parts = runner.map(_kayenta_task, tasks)
            per = len(parts) // metrics
            judged.append([KayentaJudgements.concat(parts[m * per : (m + 1) * per]) for m in range(metrics)])
        h_judged, r_judged = judged
        tuned_z = bisect_knob(
            lambda z: _fpr(kayenta_outcome(h_judged, KayentaRule(confidence=confidence_of(z)))),
            0.0,
            40.0,
            config.target_fpr,
            log_scale=False,
        )
        knobs.kayenta[scenario.id] = tuned_z
        once = knobs.kayenta.get(REFERENCE, tuned_z)
        for mode, z in zip(MODES, (z_of(krule.confidence), once, tuned_z), strict=True):
            r3 = KayentaRule(confidence=confidence_of(z))
            h_out = kayenta_outcome(h_judged, r3)
            knob = _confidence_text(z) + _unreached(mode, h_out, config)
            cells.append(Cell("Kayenta", mode, knob, h_out, kayenta_outcome(r_judged, r3)))
    look = look_ticks(gate_spec(scenario)) * TICK_SECONDS
    results.scenarios.append(
        ScenarioResult(
            scenario=scenario,
            cells=cells,
            oracle_floor=floors.oracle_floor_seconds(scenario, look),
            two_sample_floor=floors.two_sample_floor_seconds(scenario, look),
            look_seconds=look,
            healthy_runs=healthy.runs,
            regressed_runs=regressed.runs,
            kayenta_runs=min(config.kayenta_runs, healthy.runs, regressed.runs),
            tolerance_oracle=oracle_at_tolerance(scenario, regressed),
        )
    )


def _unreached(mode: str, healthy: Outcome, config: Config) -> str:
    unreached = mode == "tuned" and _fpr(healthy) > config.target_fpr
    return f" ({100 * config.target_fpr:g}% not reachable)" if unreached else ""


def _confidence_text(z: float) -> str:
    miss = 2 * float(norm.sf(z))
    if miss <= 0 or not math.isfinite(z):
        return "confidence ~100%"
    return f"confidence {100 * (1 - miss):.{max(1, int(-math.log10(miss)) + 1)}f}%"


def run_benchmark(config: Config) -> Results:
    results = Results(config)
    start = time.perf_counter()
    knobs = _Knobs()
    runner = _Runner(config.jobs)
    try:
        # The reference scenario first: its tuned knobs are reused ("tuned once") by the others.
        ordered = sorted(config.scenarios, key=lambda s: s != REFERENCE)
        for scenario_id in ordered:
            run_scenario(BY_ID[scenario_id], config, runner, knobs, results)
    finally:
        runner.close()
    order = {s.id: i for i, s in enumerate(SCENARIOS)}
    results.scenarios.sort(key=lambda r: order[r.scenario.id])
    results.wall_seconds = time.perf_counter() - start
    return results
