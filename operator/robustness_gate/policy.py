"""PURE: a gate verdict, the time elapsed and the analysis limits → what to do now, and why."""

from __future__ import annotations

import math
from dataclasses import dataclass

from robustness_gate.api import Action, AnalysisSpec, Verdict
from robustness_gate.durations import format_duration
from robustness_gate.judge import GateVerdict, MetricResult

# What minTraffic counts for each metric kind: requests, or observations of a ratio's or histogram's population.
_UNIT = {"errorRate": "requests", "latency": "requests"}


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(verdict: GateVerdict, elapsed_seconds: float, analysis: AnalysisSpec) -> Decision:
    """Roll back on shown harm at any look; promote after minDuration on a passing gate, or at maxDuration
    when every metric was measured and none showed harm; otherwise maxDuration is inconclusive."""
    elapsed = format_duration(elapsed_seconds)
    if verdict.verdict is Verdict.FAIL:
        return Decision(Action.ROLLBACK, verdict.reason)
    if elapsed_seconds < analysis.min_duration_seconds:
        return Decision(
            Action.CONTINUE,
            f"{elapsed} of minDuration {analysis.min_duration} elapsed; {_state(verdict)}",
        )
    if verdict.verdict is Verdict.PASS:
        return Decision(Action.PROMOTE, f"{verdict.reason} after {elapsed}")
    if elapsed_seconds >= analysis.max_duration_seconds:
        if _no_harm_shown(verdict):
            return Decision(
                Action.PROMOTE,
                f"maxDuration {analysis.max_duration} reached with every metric measured and no harm shown: "
                f"{verdict.reason}",
            )
        short = _short_of_traffic(verdict, analysis)
        if short:
            return Decision(Action.INCONCLUSIVE, _traffic_reason(short, analysis))
        return Decision(
            Action.INCONCLUSIVE,
            f"maxDuration {analysis.max_duration} reached without a verdict: {verdict.reason}",
        )
    return Decision(Action.CONTINUE, f"{elapsed} elapsed, {_state(verdict)}")


def _no_harm_shown(verdict: GateVerdict) -> bool:
    """Marginal with data everywhere and no failure: the analysis ran its course without finding harm."""
    live = [m for m in verdict.metrics if not m.dry_run]
    return (
        verdict.verdict is Verdict.MARGINAL
        and bool(live)
        and all(m.verdict in (Verdict.PASS, Verdict.MARGINAL) for m in live)
    )


def _short_of_traffic(verdict: GateVerdict, analysis: AnalysisSpec) -> list[MetricResult]:
    """Live metrics left without a verdict by traffic below minTraffic; none when a metric failed, since then
    the failure, not the traffic, is what the reason must show."""
    live = [m for m in verdict.metrics if not m.dry_run]
    if any(m.verdict is Verdict.FAIL for m in live):
        return []
    return [m for m in live if m.verdict is Verdict.NO_DATA and _shortfall(m, analysis)]


def _shortfall(metric: MetricResult, analysis: AnalysisSpec) -> list[str]:
    """Each side below its minimum: 'canary served 180 of the 200 requests minTraffic asks for', 'baseline 150 of
    200'. Whole units served, so a fraction short of the minimum never reads as the minimum itself."""
    if metric.kind == "custom":  # a custom metric counts values, not traffic: its NoData means no values
        return []
    minimum = analysis.min_traffic
    sides = [("canary", metric.canary_traffic, minimum.canary), ("baseline", metric.baseline_traffic, minimum.baseline)]
    short = [
        (side, math.floor(served), needed) for side, served, needed in sides if served is not None and served < needed
    ]
    if not short:
        return []
    (side, served, needed), *rest = short
    unit = _UNIT.get(metric.kind, "observations")
    first = f"{side} served {served} of the {needed} {unit} minTraffic asks for"
    return [first, *(f"{side} {served} of {needed}" for side, served, needed in rest)]


def _traffic_reason(short: list[MetricResult], analysis: AnalysisSpec) -> str:
    """One line: the first short metric's numbers, the metrics that share them, and how many others are short."""
    numbers = _shortfall(short[0], analysis)
    same = [m.name for m in short if _shortfall(m, analysis) == numbers]
    others = len(short) - len(same)
    more = f"; {others} more metric{'s' if others > 1 else ''} short of traffic" if others else ""
    return (
        f"not enough traffic to decide by maxDuration {analysis.max_duration}: "
        f"{', '.join(numbers)} ({', '.join(same)}{more})"
    )


def _state(verdict: GateVerdict) -> str:
    if verdict.verdict is Verdict.PASS:
        return f"passing so far ({verdict.reason})"
    return f"not decided yet ({verdict.reason})"
