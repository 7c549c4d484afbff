"""RobustnessGates on plain Deployments: a canary/stable pair (both outcomes) and a single
Deployment whose rolling update is held back, rolled back as `kubectl rollout undo` does."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypedDict

import pytest
import requests
from e2e_helpers import DECIDED, namespace_for
from hack.canarylab import Behaviour
from hack.scenario import Kubectl, Operator, Traffic, deployment_manifest, gate_manifest, pod_template, wait_for
from prometheus_client.parser import text_string_to_metric_families

LABEL = "pod_template_hash"


class Durations(TypedDict, total=False):
    """Analysis durations given to gate_manifest."""

    min_duration: str
    max_duration: str


@pytest.fixture
def traffic(tmp_path: Path) -> Iterator[Any]:
    started: list[Traffic] = []

    def make(app: str, stable: str, canary: str, behaviour: Behaviour) -> Traffic:
        started.append(Traffic.pair(tmp_path, app, LABEL, stable, canary, behaviour))
        return started[-1]

    yield make
    for item in started:
        item.stop()


def current_hash(kube: Kubectl, namespace: str, name: str) -> str | None:
    """The pod-template hash of the Deployment's current ReplicaSet, once it has one."""
    deployment = kube.deployment(namespace, name)
    revision = deployment["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision")
    labels = deployment["spec"]["selector"]["matchLabels"]
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    for rs in kube.replica_sets(namespace, selector):
        if rs["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision") == revision:
            return str(rs["metadata"]["labels"]["pod-template-hash"])
    return None


def decided(kube: Kubectl, namespace: str, timeout: float = 240) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = (kube.gate(namespace, "gate") or {}).get("status") or {}
        return status if status.get("phase") in DECIDED and (status.get("decision") or {}).get("applied") else None

    return wait_for("the gate's decision", probe, timeout)


def image(deployment: dict[str, Any]) -> str:
    return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])


def create_deployment(kube: Kubectl, namespace: str, manifest: dict[str, Any]) -> None:
    """Creates the Deployment from its manifest, sent as is: the client types the body as a V1Deployment."""
    body: Any = manifest
    kube.apps.create_namespaced_deployment(namespace, body)


def start_pair(kube: Kubectl, namespace: str) -> tuple[str, str]:
    create_deployment(kube, namespace, deployment_manifest(namespace, "fraud", "fraud", "v1", 4, "stable"))
    create_deployment(kube, namespace, deployment_manifest(namespace, "fraud-canary", "fraud", "v2", 1, "canary"))
    stable = wait_for("stable ReplicaSet", lambda: current_hash(kube, namespace, "fraud"), 60)
    canary = wait_for("canary ReplicaSet", lambda: current_hash(kube, namespace, "fraud-canary"), 60)
    return stable, canary


def pair_gate(namespace: str, prometheus: str, harmful: bool) -> dict[str, Any]:
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud-canary"}
    # A harmful canary must be caught by evidence: a long minDuration rules out a promotion for lack of it.
    durations: Durations = {"min_duration": "3m", "max_duration": "6m"} if harmful else {}
    return gate_manifest(namespace, "gate", target, prometheus, app="fraud", stable="fraud", label=LABEL, **durations)


@pytest.mark.parametrize(
    ("outcome", "behaviour"), [("promoted", Behaviour()), ("rolled-back", Behaviour(error_rate=0.05))]
)
def test_deployment_pair(
    outcome: str, behaviour: Behaviour, kube: Kubectl, operator: Operator, traffic: Any, request: pytest.FixtureRequest
) -> None:
    namespace = kube.namespace(namespace_for(request.node.name))
    stable, canary = start_pair(kube, namespace)
    flow = traffic("fraud", stable, canary, behaviour)
    kube.create_gate(pair_gate(namespace, flow.url, harmful=outcome != "promoted"))
    status = decided(kube, namespace)
    assert status["revision"] == canary and status["stableRevision"] == stable
    canary_deployment = wait_for(
        "canary scaled to 0", lambda: _scaled_to_zero(kube.deployment(namespace, "fraud-canary")), 30
    )
    stable_deployment = kube.deployment(namespace, "fraud")
    if outcome == "promoted":
        assert status["phase"] == "Promoted", (status.get("decision"), status.get("metrics"))
        assert image(stable_deployment) == image(canary_deployment) == "registry.invalid/fraud:v2"
        # The stable Deployment keeps its own selector labels.
        assert stable_deployment["spec"]["template"]["metadata"]["labels"] == {"app": "fraud", "track": "stable"}
        wait_for(
            "stable Deployment rolled out to v2",
            lambda: current_hash(kube, namespace, "fraud") not in (None, stable),
            60,
        )
    else:
        assert status["phase"] == "RolledBack", (status.get("decision"), status.get("metrics"))
        assert image(stable_deployment) == "registry.invalid/fraud:v1"
        assert current_hash(kube, namespace, "fraud") == stable
        assert stable_deployment["metadata"]["generation"] == 1  # untouched
    # Steps read both Deployments from the watch; only the operation read them from the API again.
    counters = operator_counters(operator)
    hits = counters.get(("robustness_gate_watched_reads_total", "Deployment", "hit"), 0.0)
    gets = counters.get(("robustness_gate_api_requests_total", "Deployment", "get"), 0.0)
    assert hits >= 2 * status["looks"] and gets < hits, counters


def operator_counters(operator: Operator) -> dict[tuple[str, str, str], float]:
    """The operator's watched-read and API-request counters by (sample name, kind, result or verb)."""
    text = requests.get(operator.metrics_url, timeout=10).text
    found: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("robustness_gate_watched_reads_total", "robustness_gate_api_requests_total"):
                which = sample.labels.get("result") or sample.labels.get("verb", "")
                found[(sample.name, sample.labels.get("kind", ""), which)] = sample.value
    return found


def _scaled_to_zero(deployment: dict[str, Any]) -> dict[str, Any] | None:
    return deployment if deployment["spec"]["replicas"] == 0 else None


def test_single_deployment_bad_update_is_undone(
    kube: Kubectl, operator: Operator, traffic: Any, request: pytest.FixtureRequest
) -> None:
    namespace = kube.namespace(namespace_for(request.node.name))
    # minReadySeconds holds the rolling update after its first new pod: old pods keep serving as the
    # baseline. It also holds the undo until the v1 pods count as available again (60 s after they started).
    manifest = deployment_manifest(namespace, "fraud", "fraud", "v1", 4, min_ready_seconds=60)
    create_deployment(kube, namespace, manifest)
    v1 = wait_for("v1 ReplicaSet", lambda: current_hash(kube, namespace, "fraud"), 60)
    kube.apps.patch_namespaced_deployment("fraud", namespace, {"spec": {"template": pod_template("fraud", "v2")}})
    v2 = wait_for("v2 ReplicaSet", lambda: (h := current_hash(kube, namespace, "fraud")) != v1 and h, 60)
    flow = traffic("fraud", v1, v2, Behaviour(error_rate=0.05))
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud"}
    kube.create_gate(
        gate_manifest(
            namespace, "gate", target, flow.url, app="fraud", label=LABEL, min_duration="3m", max_duration="6m"
        )
    )
    status = decided(kube, namespace)
    assert status["phase"] == "RolledBack" and status["revision"] == v2, status
    deployment = kube.deployment(namespace, "fraud")
    assert image(deployment) == "registry.invalid/fraud:v1"
    wait_for("the v1 ReplicaSet current again", lambda: current_hash(kube, namespace, "fraud") == v1, 60)
    wait_for(
        "the v2 ReplicaSet scaled to 0",
        lambda: kube.replica_sets(namespace, f"pod-template-hash={v2}")[0]["spec"]["replicas"] == 0,
        120,
    )
    # Our own undo is not mistaken for a new canary.
    later = (kube.gate(namespace, "gate") or {})["status"]
    assert later["phase"] == "RolledBack" and later["revision"] == v2


def test_refused_data_leaves_the_target_alone(
    kube: Kubectl, operator: Operator, traffic: Any, request: pytest.FixtureRequest
) -> None:
    """Swapped error counters: the gate turns Invalid and, through maxDuration with onError Rollback, neither
    Deployment is touched; `status --queries` shows the PromQL that was refused, read from the apiserver."""
    namespace = kube.namespace(namespace_for(request.node.name))
    stable, canary = start_pair(kube, namespace)
    flow = traffic("fraud", stable, canary, Behaviour(error_rate=0.05))
    manifest = gate_manifest(
        namespace, "gate", {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud-canary"}, flow.url,
        app="fraud", stable="fraud", label=LABEL, min_duration="10s", max_duration="30s",
    )  # fmt: skip
    manifest["spec"]["onError"] = "Rollback"
    rate = manifest["spec"]["metrics"][0]["errorRate"]
    rate["errors"], rate["total"] = rate["total"], rate["errors"]
    kube.create_gate(manifest)

    def invalid() -> dict[str, Any] | None:
        status = (kube.gate(namespace, "gate") or {}).get("status") or {}
        valid = {c["type"]: c for c in status.get("conditions") or []}.get("Valid") or {}
        return status if status.get("phase") == "Invalid" and valid.get("reason") == "InvalidData" else None

    status = wait_for("the gate Invalid on refused data", invalid, 120)
    assert "metric error-rate: the canary counted" in status["message"] and "not swapped" in status["message"]
    started = datetime.fromisoformat(status["startedAt"].replace("Z", "+00:00")).timestamp()
    time.sleep(max(0.0, started + 30 + 10 - time.time()))  # past maxDuration, with onError Rollback
    later = (kube.gate(namespace, "gate") or {})["status"]
    assert later["phase"] == "Invalid" and "decision" not in later, later
    for name, replicas in (("fraud", 4), ("fraud-canary", 1)):
        deployment = kube.deployment(namespace, name)
        assert deployment["metadata"]["generation"] == 1 and deployment["spec"]["replicas"] == replicas, name
    reasons = [event["reason"] for event in kube.events(namespace, "gate")]
    assert reasons.count("InvalidData") == 1 and "RolledBack" not in reasons and "Promoted" not in reasons, reasons

    code, shown = run_cli(["status", "gate", "-n", namespace, "--kubeconfig", str(operator.kubeconfig),
                           "--queries", "-o", "json"])  # fmt: skip
    assert code == 0 and shown["phase"] == "Invalid"
    errors = [part for part in shown["queries"]["error-rate"] if part["role"] == "errors"]
    sent = " ".join(part["promql"] for part in errors)
    assert errors and canary in sent and stable in sent, errors  # the recorded revisions, templated
    assert all('code=~"5.."' not in part["promql"] for part in errors), errors  # the swapped query, as sent


def run_cli(args: list[str]) -> tuple[int, dict[str, Any]]:
    """The robustness-gate command, as a user runs it, with its JSON output decoded."""
    finished = subprocess.run(
        [str(Path(sys.executable).with_name("robustness-gate")), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return finished.returncode, json.loads(finished.stdout or "{}")
