"""An operator started with `--namespace a` acts on gates and targets in a only. A gate and a paused Rollout canary in
namespace b, which an operator watching b promotes within a minute, get no status, no Event and no patch from it
while the same setup in a is analysed and promoted."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import LABEL, decided, namespace_for, stable_is, status_of
from hack.scenario import (
    HEALTHY,
    Kubectl,
    OwnOperators,
    Traffic,
    gate_manifest,
    rollout_ref,
    start_rollout_canary,
    wait_for,
)

TARGET = rollout_ref("fraud")
INTERVAL_SECONDS = 2


def operator_events(kube: Kubectl, namespace: str) -> list[Any]:
    """Every Event in the namespace written by the operator, or about a RobustnessGate."""
    return [
        event
        for event in kube.core.list_namespaced_event(namespace).items
        if "robustness-gate" in (event.reporting_component or "", (event.source and event.source.component) or "")
        or event.involved_object.kind == "RobustnessGate"
    ]


def test_an_operator_watching_one_namespace_never_touches_another(
    kube: Kubectl, own_operators: OwnOperators, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    base = namespace_for(request.node.name)[:40].strip("-")
    watched, other = kube.namespace(f"{base}-a"), kube.namespace(f"{base}-b")
    hashes = {namespace: start_rollout_canary(kube, namespace, "fraud") for namespace in (watched, other)}
    traffic = Traffic(tmp_path / "traffic", "fraud", LABEL).start()
    try:
        traffic.serve({pod_hash: HEALTHY for pair in hashes.values() for pod_hash in pair})
        rollout_before = kube.rollout(other, "fraud")
        namespaced = own_operators.start(tmp_path / "namespaced", [watched], [], "namespaced")
        for namespace in (watched, other):
            gate = gate_manifest(namespace, "fraud-gate", TARGET, traffic.url, app="fraud", max_duration="90s")
            kube.create_gate(gate)

        # The watched namespace is served: analysed, promoted, and the Rollout finishes on its canary.
        wait_for("the gate in the watched namespace decided", partial(decided, kube, watched, "fraud-gate"), 240)
        assert status_of(kube, watched, "fraud-gate")["phase"] == "Promoted"
        wait_for("the watched Rollout promoted", partial(stable_is, kube, watched, "fraud", hashes[watched][1]), 90)
        time.sleep(5 * INTERVAL_SECONDS)  # several more intervals in which the other gate could have been stepped

        # The other namespace is untouched: no status, no Event, the Rollout exactly as it was.
        stored = kube.gate(other, "fraud-gate")
        assert stored is not None and not stored.get("status"), stored
        assert operator_events(kube, other) == []
        rollout = kube.rollout(other, "fraud")
        assert rollout["spec"] == rollout_before["spec"]
        assert rollout["metadata"].get("annotations") == rollout_before["metadata"].get("annotations")
        status = rollout["status"]
        assert not status.get("abort") and status.get("pauseConditions"), status
        assert status["stableRS"] == hashes[other][0] and status["currentPodHash"] == hashes[other][1]
        assert status.get("currentStepIndex") == rollout_before["status"].get("currentStepIndex")
        assert f"{other}/" not in namespaced.logs() and f"{watched}/fraud-gate" in namespaced.logs()
        with urllib.request.urlopen(namespaced.metrics_url, timeout=5) as response:
            metrics = response.read().decode()
        assert f'namespace="{watched}"' in metrics and f'namespace="{other}"' not in metrics
        # Its verdict API knows only the watched namespace's gates, although its credentials may read the other's.
        with urllib.request.urlopen(f"{namespaced.http_url}/api/v1/verdict/{watched}/fraud-gate", timeout=5) as ok:
            assert ok.status == 200
        try:
            urllib.request.urlopen(f"{namespaced.http_url}/api/v1/verdict/{other}/fraud-gate", timeout=5)
            raise AssertionError("the verdict API answered for a namespace it does not watch")
        except urllib.error.HTTPError as error:
            assert error.code == 404, error.code

        # Control: the setup in the other namespace is actionable. An operator watching it promotes it.
        namespaced.stop()
        own_operators.start(tmp_path / "other", [other], [], "other")
        wait_for(
            "the gate in the other namespace decided by its own operator",
            partial(decided, kube, other, "fraud-gate"),
            240,
        )
        assert status_of(kube, other, "fraud-gate")["phase"] == "Promoted"
    finally:
        traffic.stop()
