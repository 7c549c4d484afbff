"""A target as it is now: read through a `TargetReader`, observed, and able to say its patches."""

from __future__ import annotations

import functools
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


class LiveTarget(Protocol):
    """A target as it is now: what it shows, the selectors its kind defaults to, and its patches."""

    @property
    def description(self) -> str: ...

    @property
    def observation(self) -> Observation: ...

    @property
    def default_selectors(self) -> tuple[str, str]: ...

    def patches(self, operation: Operation) -> list[Patch]:
        """What to send for the operation, computed from the target as read."""
        ...

    def idempotent(self, operation: Operation) -> bool:
        """True when sending the operation again after a restart cannot act twice."""
        ...

    def resume(self) -> list[Patch]:
        """Undo a Pause (spec.paused: false) if the target is paused; nothing else moves."""
        ...


@dataclass(frozen=True)
class RolloutTarget:
    """An Argo Rollout paused on a canary step."""

    name: str
    rollout: dict[str, Any]
    default_selectors: tuple[str, str] = (argo_rollout.DEFAULT_CANARY_SELECTOR, argo_rollout.DEFAULT_BASELINE_SELECTOR)

    @property
    def description(self) -> str:
        return f"Rollout/{self.name}"

    @functools.cached_property
    def observation(self) -> Observation:  # observed once, as read
        return argo_rollout.observe(self.rollout)

    def patches(self, operation: Operation) -> list[Patch]:
        if operation is Operation.PROMOTE:
            return argo_rollout.promote(self.rollout)
        if operation is Operation.PROMOTE_FULL:
            return argo_rollout.promote(self.rollout, full=True)
        if operation is Operation.ROLLBACK:
            return argo_rollout.abort(self.rollout)
        if operation is Operation.PAUSE:
            return argo_rollout.pause(self.rollout)
        return []

    def idempotent(self, operation: Operation) -> bool:
        # A plain promote moves one step further each time it is sent; abort and --full do not.
        return operation in (Operation.ROLLBACK, Operation.PAUSE, Operation.PROMOTE_FULL, Operation.NONE)

    def resume(self) -> list[Patch]:
        return argo_rollout.resume(self.rollout)


_DEPLOYMENT_SELECTORS = (deployment.DEFAULT_CANARY_SELECTOR, deployment.DEFAULT_BASELINE_SELECTOR)


@dataclass(frozen=True)
class DeploymentPairTarget:
    """A canary Deployment next to its stable Deployment (spec.stableRef)."""

    name: str
    stable_name: str
    canary: Workload
    stable: Workload
    default_selectors: tuple[str, str] = _DEPLOYMENT_SELECTORS

    @property
    def description(self) -> str:
        return f"Deployment/{self.name} (stable Deployment/{self.stable_name})"

    @functools.cached_property
    def observation(self) -> Observation:  # observed once, as read
        return deployment.observe_pair(self.canary, self.stable)

    def patches(self, operation: Operation) -> list[Patch]:
        if operation in (Operation.PROMOTE, Operation.PROMOTE_FULL):
            return deployment.promote_pair(self.canary, self.stable)
        if operation is Operation.ROLLBACK:
            return deployment.rollback_pair(self.canary)
        if operation is Operation.PAUSE:
            return deployment.pause(self.canary)
        return []

    def idempotent(self, operation: Operation) -> bool:
        return True  # copying the same template and scaling to 0 again change nothing

    def resume(self) -> list[Patch]:
        return deployment.promote_single(self.canary)


@dataclass(frozen=True)
class SingleDeploymentTarget:
    """One Deployment whose rolling update is held: its new ReplicaSet is the canary, the old one the baseline."""

    name: str
    workload: Workload
    default_selectors: tuple[str, str] = _DEPLOYMENT_SELECTORS

    @property
    def description(self) -> str:
        return f"Deployment/{self.name}"

    @functools.cached_property
    def observation(self) -> Observation:  # observed once, as read
        return deployment.observe_single(self.workload)

    def patches(self, operation: Operation) -> list[Patch]:
        if operation in (Operation.PROMOTE, Operation.PROMOTE_FULL):
            return deployment.promote_single(self.workload)
        if operation is Operation.ROLLBACK:
            return deployment.undo_single(self.workload)
        if operation is Operation.PAUSE:
            return deployment.pause(self.workload)
        return []

    def idempotent(self, operation: Operation) -> bool:
        # A second undo would swap back to the canary's template.
        return operation in (Operation.PROMOTE, Operation.PROMOTE_FULL, Operation.PAUSE, Operation.NONE)

    def resume(self) -> list[Patch]:
        return deployment.promote_single(self.workload)


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
        return RolloutTarget(ref.name, rollout)
    canary = _workload(reader, namespace, ref.name, "spec.targetRef")
    if spec.stable_ref is not None:
        stable = _workload(reader, namespace, spec.stable_ref.name, "spec.stableRef")
        return DeploymentPairTarget(ref.name, spec.stable_ref.name, canary, stable)
    return SingleDeploymentTarget(ref.name, canary)


def _workload(reader: TargetReader, namespace: str, name: str, field: str) -> Workload:
    found = reader.deployment(namespace, name)
    if found is None:
        raise TargetError(
            f"{field}: Deployment {name!r} not found in namespace {namespace!r}; create it or fix {field}.name"
        )
    return Workload(found, reader.replica_sets(found))
