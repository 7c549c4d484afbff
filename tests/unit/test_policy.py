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


def _verdict_with(*verdicts: Verdict, gate: Verdict = Verdict.MARGINAL) -> GateVerdict:
    from robustness_gate.judge import MetricResult

    metrics = [MetricResult(f"m{i}", "errorRate", v, "t", "msg") for i, v in enumerate(verdicts)]
    return GateVerdict(gate, 50.0, "why", metrics)


def test_max_duration_promotes_when_every_metric_was_measured_and_none_showed_harm() -> None:
    decision = decide(_verdict_with(Verdict.PASS, Verdict.MARGINAL), 1800, ANALYSIS)
    assert decision.action is Action.PROMOTE and "maxDuration 30m reached" in decision.reason
    assert "no harm shown" in decision.reason
    # Before maxDuration the same verdict keeps looking: passing early needs evidence of safety.
    assert decide(_verdict_with(Verdict.PASS, Verdict.MARGINAL), 1790, ANALYSIS).action is Action.CONTINUE


@pytest.mark.parametrize(
    "verdicts",
    [(Verdict.MARGINAL, Verdict.NO_DATA), (Verdict.MARGINAL, Verdict.FAIL), ()],
    ids=["a metric without data", "a non-critical failure", "no metrics"],
)
def test_max_duration_is_inconclusive_without_data_or_with_a_failure(verdicts: tuple[Verdict, ...]) -> None:
    decision = decide(_verdict_with(*verdicts), 1800, ANALYSIS)
    assert decision.action is Action.INCONCLUSIVE and "without a verdict" in decision.reason
