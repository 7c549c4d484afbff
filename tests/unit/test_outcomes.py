"""The outcome table: what each decision does to the target under each onPass/onFail/onInconclusive, and
the phase it leaves the gate in (docs/architecture.md states the same table)."""

from __future__ import annotations

import itertools

import pytest
from fakes import make_gate

from robustness_gate.api import Action, DecisionStatus, OnFail, OnInconclusive, OnPass, Operation, Phase, parse_gate
from robustness_gate.outcomes import DECIDED_PHASES, operation_for, pauses, phase_for

EXPECTED_OPERATION = {
    (Action.PROMOTE, "onPass", "Promote"): Operation.PROMOTE,
    (Action.PROMOTE, "onPass", "PromoteFull"): Operation.PROMOTE_FULL,
    (Action.PROMOTE, "onPass", "None"): Operation.NONE,
    (Action.ROLLBACK, "onFail", "Rollback"): Operation.ROLLBACK,
    (Action.ROLLBACK, "onFail", "Pause"): Operation.PAUSE,
    (Action.ROLLBACK, "onFail", "None"): Operation.NONE,
    (Action.INCONCLUSIVE, "onInconclusive", "Rollback"): Operation.ROLLBACK,
    (Action.INCONCLUSIVE, "onInconclusive", "Pause"): Operation.PAUSE,
    (Action.INCONCLUSIVE, "onInconclusive", "Promote"): Operation.PROMOTE,
    (Action.INCONCLUSIVE, "onInconclusive", "None"): Operation.NONE,
}
EXPECTED_PHASE = {
    Operation.PROMOTE: Phase.PROMOTED,
    Operation.PROMOTE_FULL: Phase.PROMOTED,
    Operation.ROLLBACK: Phase.ROLLED_BACK,
    Operation.PAUSE: Phase.PAUSED,
}
RECORDED_ONLY_PHASE = {
    Action.PROMOTE: Phase.PASSED,
    Action.ROLLBACK: Phase.FAILED,
    Action.INCONCLUSIVE: Phase.INCONCLUSIVE,
}


def test_the_table_covers_every_setting() -> None:
    settings = {("onPass", v.value) for v in OnPass} | {("onFail", v.value) for v in OnFail}
    settings |= {("onInconclusive", v.value) for v in OnInconclusive}
    assert {(field, value) for _, field, value in EXPECTED_OPERATION} == settings


@pytest.mark.parametrize(("case", "operation"), EXPECTED_OPERATION.items())
def test_each_decision_gets_the_operation_its_setting_names(
    case: tuple[Action, str, str], operation: Operation
) -> None:
    action, field, value = case
    gate = parse_gate(make_gate(**{field: value}))  # type: ignore[arg-type]  # str settings, not generation
    assert operation_for(action, gate) is operation
    # Only the setting of the action's own outcome matters; Continue never does anything.
    assert operation_for(Action.CONTINUE, gate) is Operation.NONE
    assert pauses(action, gate) is (operation is Operation.PAUSE)
    assert pauses(Action.CONTINUE, gate) is False


@pytest.mark.parametrize(
    ("action", "operation", "dry_run"),
    list(itertools.product([Action.PROMOTE, Action.ROLLBACK, Action.INCONCLUSIVE], list(Operation), [False, True])),
)
def test_the_phase_is_the_operations_or_when_nothing_is_done_the_decisions(
    action: Action, operation: Operation, dry_run: bool
) -> None:
    decision = DecisionStatus(action=action, reason="r", operation=operation, dry_run=dry_run)
    if dry_run or operation is Operation.NONE:
        assert phase_for(decision) is RECORDED_ONLY_PHASE[action]
    else:
        assert phase_for(decision) is EXPECTED_PHASE[operation]


def test_the_decided_phases_are_those_a_decision_can_leave_and_no_other() -> None:
    reachable = {
        phase_for(DecisionStatus(action=action, reason="r", operation=operation, dry_run=dry_run))
        for action in (Action.PROMOTE, Action.ROLLBACK, Action.INCONCLUSIVE)
        for operation in Operation
        for dry_run in (False, True)
    }
    assert reachable == DECIDED_PHASES
    assert not DECIDED_PHASES & {Phase.PENDING, Phase.ANALYZING, Phase.INVALID, Phase.ERROR}
