"""One analysis step: fetch every metric since the analysis started, judge, decide.

The metric source and the clock are injected, so the same step runs in the CLI, in the operator
and in tests. Nothing here keeps state between steps: every look is recomputed from the source.
"""

from __future__ import annotations

from dataclasses import dataclass

from robustness_gate.api import RobustnessGate
from robustness_gate.judge import GateVerdict, judge_gate
from robustness_gate.metrics.source import MetricSource, Window, fetch_all
from robustness_gate.metrics.templates import Sides
from robustness_gate.policy import Decision, decide
from robustness_gate.series import MetricData


@dataclass(frozen=True)
class AnalysisReport:
    start: float
    end: float
    looks: int
    verdict: GateVerdict
    decision: Decision

    @property
    def elapsed(self) -> float:
        return self.end - self.start


def analyze(gate: RobustnessGate, sides: Sides, source: MetricSource, start: float, now: float) -> AnalysisReport:
    """Judge the canary on everything from `start` to `now`; MetricsError propagates (never a verdict)."""
    spec = gate.spec
    window = Window.between(start, now, spec.analysis.interval_seconds)
    data: dict[str, MetricData] = fetch_all(source, spec.metrics, sides, window)
    verdict = judge_gate(spec, data)
    elapsed = window.last - start if window.looks else 0.0
    decision = decide(verdict, elapsed, spec.analysis)
    return AnalysisReport(
        start=start,
        end=window.last if window.looks else start,
        looks=window.looks,
        verdict=verdict,
        decision=decision,
    )
