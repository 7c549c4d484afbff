"""PURE: an Argo Rollout as a target, promoted and aborted the way `kubectl argo rollouts` does it.

The patches mirror the kubectl plugin (pkg/kubectl-argo-rollouts/cmd/{promote,abort,pause}):
JSON merge patches, status fields on the status subresource, spec fields on the object.
"""

from __future__ import annotations

import json
from typing import Any

from robustness_gate.targets.model import ObjectRef, Observation, Patch

HASH_LABEL = "rollouts-pod-template-hash"
DEFAULT_CANARY_SELECTOR = 'rollouts_pod_template_hash="{{canaryHash}}"'
DEFAULT_BASELINE_SELECTOR = 'rollouts_pod_template_hash="{{stableHash}}"'


def _get(obj: dict[str, Any], *path: str) -> Any:
    node: Any = obj
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def observe(rollout: dict[str, Any]) -> Observation:
    """The canary is the current pod-template hash while it differs from the stable one."""
    name = str(_get(rollout, "metadata", "name"))
    namespace = str(_get(rollout, "metadata", "namespace"))
    current = _get(rollout, "status", "currentPodHash")
    stable = _get(rollout, "status", "stableRS")
    state = _state(rollout)
    if not current or not stable:
        return Observation(None, stable, state=state, message=f"Rollout {name} has no stable revision yet")
    if current == stable:
        return Observation(None, stable, state=state, message=f"Rollout {name} is stable at {stable}; no canary")
    if _get(rollout, "status", "abort"):
        return Observation(None, stable, state=state, message=f"Rollout {name} canary {current} is aborted")
    variables = {
        "canaryHash": str(current),
        "stableHash": str(stable),
        "canaryName": name,
        "stableName": name,
        "namespace": namespace,
    }
    return Observation(str(current), str(stable), variables, state, _progress(rollout, str(current)))


def _progress(rollout: dict[str, Any], current: str) -> str:
    steps = _steps(rollout)
    index = _step_index(rollout)
    where = f"step {index}/{len(steps)}" if steps else "no steps"
    reasons = [str(c.get("reason")) for c in _get(rollout, "status", "pauseConditions") or []]
    paused = f", paused ({', '.join(reasons)})" if reasons else ""
    return f"canary {current} at {where}{paused}"


def _steps(rollout: dict[str, Any]) -> list[Any]:
    steps = _get(rollout, "spec", "strategy", "canary", "steps")
    return list(steps) if isinstance(steps, list) else []


def _step_index(rollout: dict[str, Any]) -> int:
    index = _get(rollout, "status", "currentStepIndex")
    return int(index) if isinstance(index, int) else 0


def _state(rollout: dict[str, Any]) -> str:
    """The fields promote/abort depend on; compared before re-sending a pending operation."""
    return json.dumps(
        {
            "hash": _get(rollout, "status", "currentPodHash"),
            "stable": _get(rollout, "status", "stableRS"),
            "step": _get(rollout, "status", "currentStepIndex"),
            "pause": sorted(str(c.get("reason")) for c in _get(rollout, "status", "pauseConditions") or []),
            "paused": bool(_get(rollout, "spec", "paused")),
            "abort": bool(_get(rollout, "status", "abort")),
            "full": bool(_get(rollout, "status", "promoteFull")),
        },
        sort_keys=True,
    )


def promote(rollout: dict[str, Any], *, full: bool = False) -> list[Patch]:
    """`kubectl argo rollouts promote [--full]`: status patch first, then the spec patch."""
    ref = ObjectRef("Rollout", str(_get(rollout, "metadata", "name")))
    status_patch: dict[str, Any] | None = None
    spec_patch: dict[str, Any] | None = None
    if full:
        if _get(rollout, "status", "currentPodHash") != _get(rollout, "status", "stableRS"):
            status_patch = {"status": {"promoteFull": True}}
    else:
        if _get(rollout, "spec", "paused"):
            spec_patch = {"spec": {"paused": False}}
        pause_conditions = _get(rollout, "status", "pauseConditions") or []
        is_canary = _get(rollout, "spec", "strategy", "canary") is not None
        steps = _steps(rollout)
        index = _step_index(rollout)
        next_step = index + 1 if index < len(steps) else index  # never past the last step, never backwards
        if _inconclusive(rollout) and pause_conditions and _get(rollout, "status", "controllerPause"):
            # A paused Inconclusive analysis step: also lift the controller's pause and move on.
            if steps:
                status_patch = {
                    "status": {"pauseConditions": None, "controllerPause": False, "currentStepIndex": next_step}
                }
        elif pause_conditions:
            status_patch = {"status": {"pauseConditions": None}}
        elif is_canary and steps:
            # Promoting mid-step (analysis or experiment running): skip to the next step.
            status_patch = {"status": {"pauseConditions": None, "currentStepIndex": next_step}}
    patches = []
    if status_patch is not None:
        patches.append(Patch(ref, status_patch, subresource="status"))
    if spec_patch is not None:
        patches.append(Patch(ref, spec_patch))
    return patches


def _inconclusive(rollout: dict[str, Any]) -> bool:
    status = _get(rollout, "status", "canary", "currentStepAnalysisRunStatus", "status")
    return _get(rollout, "spec", "strategy", "canary") is not None and status == "Inconclusive"


def abort(rollout: dict[str, Any]) -> list[Patch]:
    """`kubectl argo rollouts abort`: the controller scales the canary down and serves stable."""
    return [
        Patch(
            ObjectRef("Rollout", str(_get(rollout, "metadata", "name"))),
            {"status": {"abort": True}},
            subresource="status",
        )
    ]


def pause(rollout: dict[str, Any]) -> list[Patch]:
    """`kubectl argo rollouts pause`."""
    return [Patch(ObjectRef("Rollout", str(_get(rollout, "metadata", "name"))), {"spec": {"paused": True}})]


def resume(rollout: dict[str, Any]) -> list[Patch]:
    """Undo `pause` (`spec.paused: false`) when set; the canary's own pause steps stay as they are."""
    if not _get(rollout, "spec", "paused"):
        return []
    return [Patch(ObjectRef("Rollout", str(_get(rollout, "metadata", "name"))), {"spec": {"paused": False}})]
