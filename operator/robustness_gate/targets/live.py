"""A target as it is now: read through a `TargetReader`, observed, and able to say its patches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from robustness_gate.api import Operation, RobustnessGateSpec
from robustness_gate.targets import argo_rollout, deployment
from robustness_gate.targets.deployment import Workload
from robustness_gate.targets.model import Observation, Patch, TargetError


class TargetReader(Protocol):
    def rollout(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def replica_sets(self, deployment: dict[str, Any]) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class LiveTarget:
    description: str
    observation: Observation
    default_selectors: tuple[str, str]
    _patches: Callable[[Operation], list[Patch]]
    _resume: Callable[[], list[Patch]] = lambda: []
    # Operations that change nothing more when sent twice (abort, pause, scale to 0, promote --full, ...).
    _idempotent: frozenset[Operation] = frozenset({Operation.PAUSE, Operation.NONE})

    def patches(self, operation: Operation) -> list[Patch]:
        return self._patches(operation)

    def idempotent(self, operation: Operation) -> bool:
        """True when sending the operation again after a restart cannot act twice."""
        return operation in self._idempotent

    def resume(self) -> list[Patch]:
        """Undo a Pause (spec.paused: false) if the target is paused; nothing else moves."""
        return self._resume()


def read_target(reader: TargetReader, namespace: str, spec: RobustnessGateSpec) -> LiveTarget:
    """Read and observe the target; a missing object raises TargetError naming the field to fix."""
    ref = spec.target_ref
    if ref.kind == "Rollout":
        rollout = reader.rollout(namespace, ref.name)
        if rollout is None:
            raise TargetError(
                f"spec.targetRef: Rollout {ref.name!r} not found in namespace {namespace!r}; "
                "create it or fix spec.targetRef.name"
            )

        def rollout_patches(operation: Operation) -> list[Patch]:
            if operation is Operation.PROMOTE:
                return argo_rollout.promote(rollout)
            if operation is Operation.PROMOTE_FULL:
                return argo_rollout.promote(rollout, full=True)
            if operation is Operation.ROLLBACK:
                return argo_rollout.abort(rollout)
            if operation is Operation.PAUSE:
                return argo_rollout.pause(rollout)
            return []

        return LiveTarget(
            f"Rollout/{ref.name}",
            argo_rollout.observe(rollout),
            (argo_rollout.DEFAULT_CANARY_SELECTOR, argo_rollout.DEFAULT_BASELINE_SELECTOR),
            rollout_patches,
            lambda: argo_rollout.resume(rollout),
            # A plain promote moves one step further each time it is sent; abort and --full do not.
            frozenset({Operation.ROLLBACK, Operation.PAUSE, Operation.PROMOTE_FULL, Operation.NONE}),
        )
    canary = _workload(reader, namespace, ref.name, "spec.targetRef")
    defaults = (deployment.DEFAULT_CANARY_SELECTOR, deployment.DEFAULT_BASELINE_SELECTOR)
    if spec.stable_ref is not None:
        stable = _workload(reader, namespace, spec.stable_ref.name, "spec.stableRef")

        def pair_patches(operation: Operation) -> list[Patch]:
            if operation in (Operation.PROMOTE, Operation.PROMOTE_FULL):
                return deployment.promote_pair(canary, stable)
            if operation is Operation.ROLLBACK:
                return deployment.rollback_pair(canary)
            if operation is Operation.PAUSE:
                return deployment.pause(canary)
            return []

        return LiveTarget(
            f"Deployment/{ref.name} (stable Deployment/{spec.stable_ref.name})",
            deployment.observe_pair(canary, stable),
            defaults,
            pair_patches,
            lambda: deployment.promote_single(canary),
            frozenset(Operation),  # copying the same template and scaling to 0 again change nothing
        )

    def single_patches(operation: Operation) -> list[Patch]:
        if operation in (Operation.PROMOTE, Operation.PROMOTE_FULL):
            return deployment.promote_single(canary)
        if operation is Operation.ROLLBACK:
            return deployment.undo_single(canary)
        if operation is Operation.PAUSE:
            return deployment.pause(canary)
        return []

    return LiveTarget(
        f"Deployment/{ref.name}",
        deployment.observe_single(canary),
        defaults,
        single_patches,
        lambda: deployment.promote_single(canary),
        # A second undo would swap back to the canary's template.
        frozenset({Operation.PROMOTE, Operation.PROMOTE_FULL, Operation.PAUSE, Operation.NONE}),
    )


def _workload(reader: TargetReader, namespace: str, name: str, field: str) -> Workload:
    found = reader.deployment(namespace, name)
    if found is None:
        raise TargetError(
            f"{field}: Deployment {name!r} not found in namespace {namespace!r}; create it or fix {field}.name"
        )
    return Workload(found, reader.replica_sets(found))
