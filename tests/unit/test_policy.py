"""The decision: roll back on shown harm at any look, promote only after minDuration on a pass."""

from __future__ import annotations

import pytest

from robustness_gate.api import Action, AnalysisSpec, Verdict
from robustness_gate.judge import GateVerdict
from robustness_gate.policy import decide

ANALYSIS = AnalysisSpec.model_validate({"interval": "30s", "minDuration": "5m", "maxDuration": "30m"})


@pytest.mark.parametrize(
    ("verdict", "elapsed", "action", "fragment"),
    [
        (Verdict.FAIL, 30, Action.ROLLBACK, "bad"),
        (Verdict.FAIL, 3600, Action.ROLLBACK, "bad"),
        (Verdict.PASS, 60, Action.CONTINUE, "1m of minDuration 5m elapsed; passing so far"),
        (Verdict.PASS, 300, Action.PROMOTE, "after 5m"),
        (Verdict.MARGINAL, 600, Action.CONTINUE, "10m elapsed, not decided yet"),
        (Verdict.NO_DATA, 1800, Action.INCONCLUSIVE, "maxDuration 30m reached without a verdict"),
        (Verdict.MARGINAL, 1799, Action.CONTINUE, "not decided yet"),
        (Verdict.NO_DATA, 100, Action.CONTINUE, "1m40s of minDuration"),
    ],
)
def test_decision_table(verdict: Verdict, elapsed: float, action: Action, fragment: str) -> None:
    decision = decide(GateVerdict(verdict, 50.0, "bad" if verdict is Verdict.FAIL else "why"), elapsed, ANALYSIS)
    assert decision.action is action
    assert fragment in decision.reason


def test_promotion_never_happens_before_min_duration() -> None:
    for elapsed in range(0, 300, 30):
        assert decide(GateVerdict(Verdict.PASS, 100.0, "ok"), elapsed, ANALYSIS).action is Action.CONTINUE
