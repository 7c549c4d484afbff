"""PURE: Deployments as targets, either a canary/stable pair or a single Deployment mid-update.

Pair (Flagger-like): promote copies the canary's pod template onto the stable Deployment (keeping
the stable's selector labels) and scales the canary to 0; rollback scales the canary to 0.

Single Deployment: the canary is the newest ReplicaSet and the baseline the previous revision's
ReplicaSet, while its pods still run (a rolling update held back by minReadySeconds, maxSurge or a
pause). Rollback restores the previous template as `kubectl rollout undo` does; promote resumes a
paused Deployment and otherwise lets the update finish.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from robustness_gate.targets.model import JSON_PATCH, ObjectRef, Observation, Patch

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
DEFAULT_CANARY_SELECTOR = 'pod_template_hash="{{canaryHash}}"'
DEFAULT_BASELINE_SELECTOR = 'pod_template_hash="{{stableHash}}"'
# Kept from the Deployment, not copied from the ReplicaSet, on undo (as kubectl does).
_UNDO_KEEP = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
        "deployment.kubernetes.io/revision-history",
        "deployment.kubernetes.io/desired-replicas",
        "deployment.kubernetes.io/max-replicas",
        "deprecated.deployment.rollback.to",
    }
)


@dataclass(frozen=True)
class Workload:
    """A Deployment and the ReplicaSets it owns."""

    deployment: dict[str, Any]
    replica_sets: list[dict[str, Any]]

    @property
    def name(self) -> str:
        return str(self.deployment["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.deployment["metadata"].get("namespace", ""))

    def revision(self) -> int:
        return _revision(self.deployment)

    def current(self) -> dict[str, Any] | None:
        """The ReplicaSet of the Deployment's current revision."""
        matching = [rs for rs in self.replica_sets if _revision(rs) == self.revision()]
        return matching[0] if matching else None

    def previous(self) -> dict[str, Any] | None:
        """The ReplicaSet of the highest revision below the current one (what `rollout undo` restores)."""
        older = [rs for rs in self.replica_sets if 0 < _revision(rs) < self.revision()]
        return max(older, key=_revision) if older else None


def _revision(obj: dict[str, Any]) -> int:
    text = (obj.get("metadata", {}).get("annotations") or {}).get(REVISION, "0")
    try:
        return int(text)
    except ValueError:
        return 0


def _hash(rs: dict[str, Any] | None) -> str | None:
    if rs is None:
        return None
    value = (rs.get("metadata", {}).get("labels") or {}).get(HASH_LABEL)
    return str(value) if value else None


def _replicas(obj: dict[str, Any], field: str = "replicas") -> int:
    value = (obj.get("status") or {}).get(field)
    return int(value) if isinstance(value, int) else 0


def _spec_replicas(deployment: dict[str, Any]) -> int:
    value = deployment.get("spec", {}).get("replicas", 1)
    return int(value) if isinstance(value, int) else 1


# ---------------------------------------------------------------- pair


def observe_pair(canary: Workload, stable: Workload) -> Observation:
    """A canary is in progress while the canary Deployment is scaled up and differs from stable."""
    canary_hash, stable_hash = _hash(canary.current()), _hash(stable.current())
    state = json.dumps(
        {"canary": canary_hash, "stable": stable_hash, "replicas": _spec_replicas(canary.deployment)}, sort_keys=True
    )
    if stable_hash is None:
        return Observation(None, None, state=state, message=f"stable Deployment {stable.name} has no ReplicaSet yet")
    if _spec_replicas(canary.deployment) == 0:
        return Observation(None, stable_hash, state=state, message=f"canary Deployment {canary.name} is scaled to 0")
    if canary_hash is None:
        return Observation(
            None, stable_hash, state=state, message=f"canary Deployment {canary.name} has no ReplicaSet yet"
        )
    if canary_hash == stable_hash:
        return Observation(None, stable_hash, state=state, message="canary and stable run the same pod template")
    variables = {
        "canaryHash": canary_hash,
        "stableHash": stable_hash,
        "canaryName": canary.name,
        "stableName": stable.name,
        "namespace": canary.namespace,
    }
    message = f"canary {canary.name} ({canary_hash}) against stable {stable.name} ({stable_hash})"
    return Observation(canary_hash, stable_hash, variables, state, message)


def promote_pair(canary: Workload, stable: Workload) -> list[Patch]:
    """Stable gets the canary's pod template (with its own selector labels), then the canary goes to 0."""
    template = copy.deepcopy(canary.deployment["spec"]["template"])
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.update(stable.deployment["spec"].get("selector", {}).get("matchLabels") or {})
    labels.pop(HASH_LABEL, None)
    template.setdefault("metadata", {})["labels"] = labels
    return [
        Patch(
            ObjectRef("Deployment", stable.name),
            [{"op": "replace", "path": "/spec/template", "value": template}],
            content_type=JSON_PATCH,
        ),
        _scale_to_zero(canary),
    ]


def rollback_pair(canary: Workload) -> list[Patch]:
    """The canary is scaled to 0; the stable Deployment is not touched."""
    return [_scale_to_zero(canary)]


def _scale_to_zero(workload: Workload) -> Patch:
    return Patch(ObjectRef("Deployment", workload.name), {"spec": {"replicas": 0}})


# ---------------------------------------------------------------- single Deployment


def observe_single(workload: Workload) -> Observation:
    """The newest ReplicaSet against the previous revision, while the previous one still has pods."""
    current, previous = workload.current(), workload.previous()
    canary_hash, stable_hash = _hash(current), _hash(previous)
    state = json.dumps(
        {
            "hash": canary_hash,
            "revision": workload.revision(),
            "paused": bool(workload.deployment["spec"].get("paused")),
        },
        sort_keys=True,
    )
    if canary_hash is None:
        return Observation(None, None, state=state, message=f"Deployment {workload.name} has no ReplicaSet yet")
    if previous is None or stable_hash is None:
        return Observation(None, canary_hash, state=state, message=f"Deployment {workload.name} has one revision only")
    if _replicas(previous) == 0:
        return Observation(
            None,
            canary_hash,
            state=state,
            message=f"Deployment {workload.name} is fully rolled out at {canary_hash}; no old pods left as baseline",
        )
    variables = {
        "canaryHash": canary_hash,
        "stableHash": stable_hash,
        "canaryName": workload.name,
        "stableName": workload.name,
        "namespace": workload.namespace,
    }
    message = (
        f"rolling update of {workload.name}: {_replicas(current or {})} new ({canary_hash}) and "
        f"{_replicas(previous)} old ({stable_hash}) pods"
    )
    return Observation(canary_hash, stable_hash, variables, state, message)


def promote_single(workload: Workload) -> list[Patch]:
    """Resume a paused Deployment (`kubectl rollout resume`); a running update finishes by itself."""
    if workload.deployment["spec"].get("paused"):
        return [Patch(ObjectRef("Deployment", workload.name), {"spec": {"paused": False}})]
    return []


def undo_single(workload: Workload) -> list[Patch]:
    """`kubectl rollout undo`: the previous ReplicaSet's template and annotations, as one JSON patch.

    kubectl refuses a paused Deployment; a gate resumes it in the same patch so the undo takes effect.
    """
    previous = workload.previous()
    if previous is None:
        return []
    template = copy.deepcopy(previous["spec"]["template"])
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.pop(HASH_LABEL, None)
    template.setdefault("metadata", {})["labels"] = labels
    own = workload.deployment["metadata"].get("annotations") or {}
    annotations = {key: value for key, value in own.items() if key in _UNDO_KEEP}
    for key, value in (previous["metadata"].get("annotations") or {}).items():
        if key not in _UNDO_KEEP:
            annotations[key] = value
    operations: list[dict[str, Any]] = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    if workload.deployment["spec"].get("paused"):
        operations.append({"op": "replace", "path": "/spec/paused", "value": False})
    return [Patch(ObjectRef("Deployment", workload.name), operations, content_type=JSON_PATCH)]


def pause(workload: Workload) -> list[Patch]:
    """`kubectl rollout pause`."""
    return [Patch(ObjectRef("Deployment", workload.name), {"spec": {"paused": True}})]
