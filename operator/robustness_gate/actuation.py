"""Acting on a decision: record it before the target is touched, send the operation computed from the
target as the API has it now (at most once per revision, also across restarts), then mark it applied with
an Event, a notification and the decision metric. Also onError's pause while blind, and its undoing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from robustness_gate.api import Action, DecisionStatus, Operation, Phase, RobustnessGate, RobustnessGateStatus
from robustness_gate.durations import iso
from robustness_gate.notify import Notice
from robustness_gate.outcomes import operation_for, phase_for
from robustness_gate.status_writer import StatusWriter
from robustness_gate.targets.live import LiveTarget, TargetReader, read_target
from robustness_gate.targets.model import Patch, TargetError
from robustness_gate.telemetry_sink import NULL_TELEMETRY, TelemetrySink


class GateKube(TargetReader, Protocol):
    def uncached(self) -> TargetReader:
        """Reads that go to the API, never to a watch cache: what an operation is computed from."""
        ...

    def apply(self, namespace: str, patch: Patch) -> None: ...

    def patch_gate_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...

    def event(self, gate: dict[str, Any], type_: str, reason: str, message: str, key: str | None = None) -> None:
        """Post an Event; with `key`, at most one Event per gate and key, however often it is posted."""
        ...

    def secret_value(self, namespace: str, name: str, key: str) -> str: ...


@dataclass
class Actuator:
    """The part of a step that changes the target; the controller decides when."""

    kube: GateKube
    clock: Callable[[], float]
    logger: logging.Logger
    telemetry: TelemetrySink = NULL_TELEMETRY
    notify: Callable[[Notice], None] | None = None

    def hold(
        self,
        gate: RobustnessGate,
        target: LiveTarget,
        status: RobustnessGateStatus,
        writer: StatusWriter,
        reason: str,
    ) -> None:
        """onError: Pause: hold the canary where it is while blind; the analysis goes on and resumes it."""
        sent = []
        if not gate.spec.dry_run:
            for patch in target.patches(Operation.PAUSE):
                self.kube.apply(writer.namespace, patch)
                sent.append(patch.describe())
        status.held_for_errors = True
        status.phase = Phase.PAUSED
        note = "; ".join(sent) if sent else ("dryRun: target not paused" if gate.spec.dry_run else "nothing to pause")
        status.message = f"{reason} (Pause: {note})"
        writer.write(status)
        writer.event("Warning", "PausedWithoutMetrics", status.message)
        self.logger.warning("gate %s: %s", writer.key, status.message)

    def recover(
        self,
        gate: RobustnessGate,
        target: LiveTarget,
        status: RobustnessGateStatus,
        writer: StatusWriter,
        *,
        keep_paused: bool = False,
    ) -> None:
        """Metrics answer again: undo our own pause, if any (unless this look pauses anyway), and go on."""
        errors = status.consecutive_errors
        status.consecutive_errors = 0
        if not status.held_for_errors:
            return
        sent = []
        if not gate.spec.dry_run and not keep_paused:
            for patch in target.resume():
                self.kube.apply(writer.namespace, patch)
                sent.append(patch.describe())
        status.held_for_errors = False
        status.phase = Phase.ANALYZING
        then = "the canary stays paused for this look's decision" if keep_paused else "analysis resumed"
        writer.event(
            "Normal",
            "MetricsRecovered",
            f"metrics answer again after {errors} failed look(s); {then}" + (f" ({'; '.join(sent)})" if sent else ""),
        )

    def decide(
        self,
        gate: RobustnessGate,
        target: LiveTarget,
        status: RobustnessGateStatus,
        writer: StatusWriter,
        action: Action,
        reason: str,
        *,
        never_promote: bool = False,
        operation: Operation | None = None,
    ) -> None:
        operation = operation if operation is not None else operation_for(action, gate)
        if never_promote and operation in (Operation.PROMOTE, Operation.PROMOTE_FULL):
            # Missing metrics are never grounds for a promotion, whatever onInconclusive says.
            operation = Operation.NONE
            reason += "; not promoted without metrics"
        decision = DecisionStatus(
            action=action,
            reason=reason,
            at=iso(self.clock()),
            revision=status.revision,
            operation=operation,
            applied=False,
            dry_run=gate.spec.dry_run,
            target_state=target.observation.state,
        )
        status.decision = decision
        status.message = reason
        # Recorded before the target is touched: a crash from here on resumes this very decision.
        writer.write(status)
        self.finish(gate, status, decision, writer, resumed=False)

    def finish(
        self,
        gate: RobustnessGate,
        status: RobustnessGateStatus,
        decision: DecisionStatus,
        writer: StatusWriter,
        *,
        resumed: bool,
    ) -> None:
        operation = decision.operation
        note = ""
        sent: list[str] = []
        if decision.dry_run:
            note = f"dryRun: would {operation.value}; the target was not changed"
        elif operation is Operation.NONE:
            note = "no operation configured for this outcome"
        else:
            sent, note = self.operate(gate, decision, writer.namespace, resumed=resumed)
        decision.applied = True
        status.decision = decision
        status.phase = phase_for(decision)
        status.message = f"{decision.reason} ({note})"
        writer.condition(status, "Analyzing", "False", "Decided", f"{decision.action.value}: {note}")
        kind = "Warning" if decision.action is not Action.PROMOTE else "Normal"
        reason = ("DryRun" if decision.dry_run else "") + {
            Action.PROMOTE: "Promote",
            Action.ROLLBACK: "Rollback",
            Action.INCONCLUSIVE: "Inconclusive",
        }.get(decision.action, decision.action.value)
        # Posted before the status that marks the decision applied, under a name fixed by the decision: an
        # operator killed in between finishes the decision again and posts the same Event, not a second one
        # (and one killed after the status write has posted it already).
        writer.event(
            kind,
            reason,
            f"canary {decision.revision}: {decision.reason} ({note})",
            key=f"decision/{decision.revision}/{decision.action.value}/{decision.at}",
        )
        writer.write(status)
        self.telemetry.decisions.labels(
            writer.namespace, writer.name, decision.action.value, operation.value if sent else "None"
        ).inc()
        if self.notify is not None:
            self.notify(
                Notice(
                    writer.namespace,
                    writer.name,
                    decision.revision,
                    decision.action.value,
                    operation.value,
                    decision.dry_run,
                    status.score,
                    f"{decision.reason} ({note})",
                )
            )
        self.logger.info(
            "gate %s: canary %s %s: %s (%s)",
            writer.key,
            decision.revision,
            decision.action.value,
            decision.reason,
            note,
        )

    def operate(
        self, gate: RobustnessGate, decision: DecisionStatus, namespace: str, *, resumed: bool
    ) -> tuple[list[str], str]:
        """Send the decision's operation, computed from the target as the API has it now (the step may have
        read a watch cache): what was sent, and a note on it."""
        operation = decision.operation
        try:
            target = read_target(self.kube.uncached(), namespace, gate.spec)
        except TargetError as problem:
            return [], f"{problem}; {operation.value} was not sent"
        if resumed and target.observation.state != decision.target_state and not target.idempotent(operation):
            # Most likely this very operation went out before the restart; sending it twice would act twice.
            return [], (
                f"the target moved since the decision, most likely by this {operation.value} sent before an "
                f"interruption; {operation.value} was not sent again"
            )
        if not resumed and target.observation.revision != decision.revision:
            # A new canary arrived between the look and the operation: it was not the one judged.
            return [], (
                f"the canary changed to {target.observation.revision} after canary {decision.revision} was "
                f"judged; {operation.value} was not sent"
            )
        sent = []
        for patch in target.patches(operation):
            self.kube.apply(namespace, patch)
            sent.append(patch.describe())
        return sent, f"{operation.value}: " + ("; ".join(sent) if sent else "nothing to change")
