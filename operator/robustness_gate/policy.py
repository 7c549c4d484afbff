"""PURE: a gate verdict, the time elapsed and the analysis limits → what to do now, and why."""

from __future__ import annotations

from dataclasses import dataclass

from robustness_gate.api import Action, AnalysisSpec, Verdict
from robustness_gate.durations import format_duration
from robustness_gate.judge import GateVerdict


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


def _state(verdict: GateVerdict) -> str:
    if verdict.verdict is Verdict.PASS:
        return f"passing so far ({verdict.reason})"
    return f"not decided yet ({verdict.reason})"
