"""Helpers shared by the e2e tests, so that test modules never import each other (named apart from any
other tier's helpers: pytest puts every test directory on one sys.path)."""

from __future__ import annotations

import re
from typing import Any

from hack.scenario import ROLLOUT_HASH_LABEL, Kubectl

from robustness_gate.api import Phase
from robustness_gate.outcomes import DECIDED_PHASES

DECIDED = {phase.value for phase in DECIDED_PHASES}
# The phases of a decision that changed the target (the kill trials end once every gate is in one).
ACTED = {Phase.PROMOTED.value, Phase.ROLLED_BACK.value}
LABEL = ROLLOUT_HASH_LABEL


def namespace_for(test_name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[-50:].strip("-")


def status_of(kube: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return dict((kube.gate(namespace, name) or {}).get("status") or {})


def decided(kube: Kubectl, namespace: str, name: str) -> bool:
    status = status_of(kube, namespace, name)
    return status.get("phase") in DECIDED and bool((status.get("decision") or {}).get("applied"))


def stable_is(kube: Kubectl, namespace: str, rollout: str, pod_hash: str) -> bool:
    return bool((kube.rollout(namespace, rollout).get("status") or {}).get("stableRS") == pod_hash)
