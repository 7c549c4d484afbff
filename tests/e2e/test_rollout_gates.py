"""A RobustnessGate next to an Argo Rollout: the operator analyses the paused canary and promotes
or aborts it through the real Argo Rollouts controller. Every outcome is read from the cluster."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import DECIDED, LABEL, namespace_for
from hack.canarylab import Behaviour
from hack.scenario import Kubectl, Operator, Traffic, gate_manifest, rollout_ref, start_rollout_canary, wait_for


@dataclass
class Release:
    namespace: str
    name: str
    stable: str
    canary: str
    traffic: Traffic


@pytest.fixture
def release(kube: Kubectl, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Factory: a Rollout paused on its v2 canary, with traffic whose canary behaves as asked."""
    started: list[Traffic] = []

    def make(canary: Behaviour) -> Release:
        namespace = kube.namespace(namespace_for(request.node.name))
        name = "fraud"
        stable, canary_hash = start_rollout_canary(kube, namespace, name)
        traffic = Traffic.pair(tmp_path, name, LABEL, stable, canary_hash, canary)
        started.append(traffic)
        return Release(namespace, name, stable, canary_hash, traffic)

    yield make
    for traffic in started:
        traffic.stop()


def gate_for(release: Release, **options: Any) -> dict[str, Any]:
    target = rollout_ref(release.name)
    return gate_manifest(release.namespace, "fraud-gate", target, release.traffic.url, app=release.name, **options)


def decided(kube: Kubectl, release: Release, timeout: float = 240) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        gate = kube.gate(release.namespace, "fraud-gate")
        status = (gate or {}).get("status") or {}
        if status.get("phase") in DECIDED and (status.get("decision") or {}).get("applied"):
            return gate
        return None

    return wait_for("the gate's decision", probe, timeout)


def assert_aborted_and_stable_serving(kube: Kubectl, release: Release) -> None:
    rollout = wait_for(
        "the Rollout aborted with its canary scaled down",
        lambda: _aborted(kube.rollout(release.namespace, release.name), kube, release),
        60,
    )
    assert rollout["status"]["stableRS"] == release.stable
    # The abort scales the stable ReplicaSet back to full size a moment after the canary goes to 0.
    wait_for(
        "the stable ReplicaSet back at 4 ready pods",
        lambda: _ready_replicas(kube, release.namespace, release.stable) == 4 or None,
        60,
    )


def _ready_replicas(kube: Kubectl, namespace: str, pod_hash: str) -> int | None:
    found = kube.replica_sets(namespace, f"rollouts-pod-template-hash={pod_hash}")
    return found[0]["status"].get("readyReplicas") if found else None


def _aborted(rollout: dict[str, Any], kube: Kubectl, release: Release) -> dict[str, Any] | None:
    status = rollout.get("status") or {}
    canary_rs = kube.replica_sets(release.namespace, f"rollouts-pod-template-hash={release.canary}")
    if (
        status.get("abort")
        and status.get("phase") == "Degraded"
        and canary_rs
        and (canary_rs[0]["spec"].get("replicas") == 0)
    ):
        return rollout
    return None


def reasons(kube: Kubectl, release: Release) -> list[str]:
    return [event["reason"] for event in kube.events(release.namespace, "fraud-gate")]


@pytest.mark.parametrize(
    ("harm", "canary", "failing_metric"),
    [
        ("errors-x3", Behaviour(error_rate=0.03), "error-rate"),
        ("latency", Behaviour(latency_median=0.06), "latency-p99"),
        ("drift", Behaviour(score_mu=0.0), "prediction-drift"),
    ],
)
def test_harmful_canary_is_aborted_and_stable_keeps_serving(
    harm: str, canary: Behaviour, failing_metric: str, kube: Kubectl, operator: Operator, release: Any, inbox: Any
) -> None:
    rel: Release = release(canary)
    # A long minDuration: a harmful canary must be caught by evidence, never promoted for lack of it in time.
    kube.create_gate(gate_for(rel, min_duration="3m", max_duration="6m"))
    gate = decided(kube, rel)
    status = gate["status"]
    assert status["phase"] == "RolledBack", status
    assert status["revision"] == rel.canary and status["stableRevision"] == rel.stable
    assert status["decision"]["action"] == "Rollback" and status["decision"]["operation"] == "Rollback"
    failed = {m["name"] for m in status["metrics"] if m["verdict"] == "Fail"}
    assert failing_metric in failed, status["metrics"]
    assert_aborted_and_stable_serving(kube, rel)
    assert reasons(kube, rel).count("Rollback") == 1
    # The operator's own metrics and the decision webhook saw it too.
    with urllib.request.urlopen(operator.metrics_url, timeout=5) as response:
        metrics = response.read().decode()
    assert (
        f'robustness_gate_decisions_total{{action="Rollback",gate="fraud-gate",namespace="{rel.namespace}",'
        'operation="Rollback"} 1.0'
    ) in metrics
    wait_for("the decision webhook", lambda: [t for t in inbox.texts() if f"{rel.namespace}/fraud-gate" in t], 30)
    assert [t for t in inbox.texts() if f"{rel.namespace}/fraud-gate" in t] == [
        f"robustness-gate {rel.namespace}/fraud-gate: canary {rel.canary} Rollback (Rollback)"
    ]


def test_a_canary_that_stops_sending_one_feature_is_rolled_back_naming_it(
    kube: Kubectl, operator: Operator, release: Any
) -> None:
    """The data-quality story: the new model version's client no longer sends merchant_id, so its null rate
    jumps from about 1% to 30% while every other feature stays at 1%; the per-feature null-rate metric (one
    query for all features) fails on that feature alone and the Rollout is aborted."""
    rel: Release = release(Behaviour(feature_null_rates=(("merchant_id", 0.3),)))
    kube.create_gate(gate_for(rel, min_duration="3m", max_duration="6m", feature_nulls=True))
    status = decided(kube, rel)["status"]
    assert status["phase"] == "RolledBack", status
    nulls = next(m for m in status["metrics"] if m["name"] == "feature-nulls")
    assert nulls["verdict"] == "Fail" and nulls["message"].startswith("1 of 4 features failed: merchant_id"), nulls
    features = {f["name"]: f for f in nulls["features"]}
    assert set(features) == {"device_fingerprint", "age", "amount", "merchant_id"}
    assert nulls["features"][0]["name"] == "merchant_id" and features["merchant_id"]["canary"] > 0.2
    assert all(features[f]["verdict"] != "Fail" for f in ("device_fingerprint", "age", "amount"))
    assert "merchant_id" in status["message"]
    assert_aborted_and_stable_serving(kube, rel)


def test_healthy_canary_is_promoted_and_becomes_stable(kube: Kubectl, operator: Operator, release: Any) -> None:
    rel: Release = release(Behaviour())
    kube.create_gate(gate_for(rel, min_duration="20s"))
    gate = decided(kube, rel)
    status = gate["status"]
    assert status["phase"] == "Promoted", status
    assert status["verdict"] == "Pass" and status["decision"]["operation"] == "Promote"
    assert status["looks"] >= 10  # never before minDuration (20s at 2s looks)
    wait_for(
        "the Rollout to finish with the canary as stable",
        lambda: (kube.rollout(rel.namespace, rel.name).get("status") or {}).get("stableRS") == rel.canary,
        90,
    )
    assert reasons(kube, rel).count("Promote") == 1


def test_dry_run_records_the_decision_and_changes_nothing(kube: Kubectl, operator: Operator, release: Any) -> None:
    rel: Release = release(Behaviour(error_rate=0.05))
    before = kube.rollout(rel.namespace, rel.name)
    kube.create_gate(gate_for(rel, dry_run=True, min_duration="3m", max_duration="6m"))
    gate = decided(kube, rel)
    status = gate["status"]
    assert status["phase"] == "Failed" and status["decision"]["dryRun"] is True, status
    after = kube.rollout(rel.namespace, rel.name)
    assert not after["status"].get("abort")
    assert after["status"]["currentPodHash"] == rel.canary and after["status"]["stableRS"] == rel.stable
    assert after["status"].get("pauseConditions") and after["spec"] == before["spec"]
    assert after["status"].get("currentStepIndex") == before["status"].get("currentStepIndex")
    assert reasons(kube, rel).count("DryRunRollback") == 1


def test_operator_killed_mid_analysis_resumes_and_acts_once(kube: Kubectl, operator: Operator, release: Any) -> None:
    rel: Release = release(Behaviour())
    kube.create_gate(gate_for(rel, min_duration="30s"))

    def analysing() -> dict[str, Any] | None:
        status = (kube.gate(rel.namespace, "fraud-gate") or {}).get("status") or {}
        return status if status.get("phase") == "Analyzing" and status.get("looks", 0) >= 3 else None

    before = wait_for("a few looks of analysis", analysing, 60)
    operator.kill()
    operator.start()
    gate = decided(kube, rel)
    status = gate["status"]
    assert status["phase"] == "Promoted", status
    assert status["startedAt"] == before["startedAt"], "the analysis restarted instead of resuming"
    assert status["looks"] > before["looks"]
    assert reasons(kube, rel).count("Promote") == 1
    assert reasons(kube, rel).count("AnalysisStarted") == 1
    wait_for(
        "the Rollout to finish with the canary as stable",
        lambda: (kube.rollout(rel.namespace, rel.name).get("status") or {}).get("stableRS") == rel.canary,
        90,
    )
