"""PURE: what a decision does and where it leaves the gate: Action → Operation (by the gate's onPass, onFail
and onInconclusive) → Phase. The one table of outcomes; docs/architecture.md shows it."""

from __future__ import annotations

from robustness_gate.api import Action, DecisionStatus, OnPass, Operation, Phase, RobustnessGate

_FINAL_PHASE = {
    Operation.PROMOTE: Phase.PROMOTED,
    Operation.PROMOTE_FULL: Phase.PROMOTED,
    Operation.ROLLBACK: Phase.ROLLED_BACK,
    Operation.PAUSE: Phase.PAUSED,
}
_VERDICT_PHASE = {Action.PROMOTE: Phase.PASSED, Action.ROLLBACK: Phase.FAILED, Action.INCONCLUSIVE: Phase.INCONCLUSIVE}
# Every phase a decision can leave a gate in (status.decision.applied tells an acted-on one apart).
DECIDED_PHASES = frozenset(_FINAL_PHASE.values()) | frozenset(_VERDICT_PHASE.values())


def operation_for(action: Action, gate: RobustnessGate) -> Operation:
    spec = gate.spec
    if action is Action.PROMOTE:
        return {OnPass.PROMOTE: Operation.PROMOTE, OnPass.PROMOTE_FULL: Operation.PROMOTE_FULL}.get(
            spec.on_pass, Operation.NONE
        )
    if action is Action.ROLLBACK:
        return Operation(spec.on_fail.value)
    if action is Action.INCONCLUSIVE:
        return Operation(spec.on_inconclusive.value)
    return Operation.NONE


def pauses(action: Action, gate: RobustnessGate) -> bool:
    """The decision pauses the target: Pause for a failure or for maxDuration without a verdict."""
    return action is not Action.CONTINUE and operation_for(action, gate) is Operation.PAUSE


def phase_for(decision: DecisionStatus) -> Phase:
    if decision.dry_run or decision.operation is Operation.NONE:
        return _VERDICT_PHASE.get(decision.action, Phase.INCONCLUSIVE)
    return _FINAL_PHASE.get(decision.operation, Phase.INCONCLUSIVE)
