"""The RobustnessGate resource on a real kube-apiserver: the generated CRD is accepted, its schema
rejects malformed gates at apply time, the operator's status, conditions and Events land, and
deleting a gate is immediate and leaves its target alone."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from k8s_helpers import create, gate, json_object, present, rollout, stored
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from robustness_gate.api import GROUP, PLURAL, VERSION
from robustness_gate.controller import Controller
from robustness_gate.kube import Kube

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "robustnessgates.robustness.dev.yaml"


def rejection(kube_api: client.ApiClient, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as caught:
        create(kube_api, body)
    assert caught.value.status in (400, 422), caught.value.body  # 400: strict decoding of unknown fields
    return str(caught.value.body)


def test_the_generated_crd_is_accepted_with_its_printer_columns(
    kube_api: client.ApiClient, crd: dict[str, Any]
) -> None:
    stored = client.ApiextensionsV1Api(kube_api).read_custom_resource_definition(crd["metadata"]["name"])
    version = stored.spec.versions[0]
    assert stored.spec.names.short_names == ["rgate"]
    assert present(version.subresources).status is not None
    assert [c.name for c in present(version.additional_printer_columns)][:3] == ["Phase", "Verdict", "Score"]


def test_a_valid_gate_is_stored_with_defaults(kube_api: client.ApiClient, crd: dict[str, Any], namespace: str) -> None:
    created = create(kube_api, gate(namespace))
    assert created["spec"]["analysis"]["falsePositiveRate"] == 0.01  # defaulted by the schema
    assert created["spec"]["onFail"] == "Rollback"
    assert created["spec"]["onInconclusive"] == "Pause"  # no verdict by maxDuration holds the canary


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"analysis": {"interval": "30 seconds"}}, "spec.analysis.interval"),
        ({"metrics": []}, "spec.metrics"),
        ({"onFail": "Explode"}, "spec.onFail"),
        ({"targetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "x"}}, "spec.targetRef.kind"),
        ({"prometheus": {"address": "http://127.0.0.1:9", "tiemout": "5s"}}, "tiemout"),
    ],
    ids=["bad-duration", "no-metrics", "bad-enum", "bad-kind", "unknown-field"],
)
def test_the_schema_rejects_malformed_gates(
    change: dict[str, Any], expected: str, kube_api: client.ApiClient, crd: dict[str, Any], namespace: str
) -> None:
    assert expected in rejection(kube_api, gate(namespace, **change))


def test_cel_rules_reject_a_metric_with_two_sources(
    kube_api: client.ApiClient, crd: dict[str, Any], namespace: str
) -> None:
    body = gate(namespace)
    metric = body["spec"]["metrics"][0]
    metric["ratio"] = {"numerator": "sum(a)", "denominator": "sum(b)"}
    message = rejection(kube_api, body)
    assert "spec.metrics[0]" in message and "exactly one" in message


@pytest.fixture
def controller(kube_api: client.ApiClient) -> Controller:
    return Controller(Kube(kube_api))


def events(kube_api: client.ApiClient, namespace: str, name: str = "fraud") -> list[Any]:
    listing = client.CoreV1Api(kube_api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name},involvedObject.kind=RobustnessGate"
    )
    return list(listing.items)


def test_a_missing_target_gives_phase_invalid_a_condition_and_one_event(
    kube_api: client.ApiClient, crd: dict[str, Any], namespace: str, controller: Controller
) -> None:
    create(kube_api, gate(namespace))
    delay = controller.step(stored(kube_api, namespace))
    status = stored(kube_api, namespace)["status"]
    assert status["phase"] == "Invalid"
    assert "spec.targetRef" in status["message"] and "not found" in status["message"]
    valid = next(c for c in status["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False" and valid["reason"] == "TargetNotFound"
    assert valid["observedGeneration"] == stored(kube_api, namespace)["metadata"]["generation"]
    warnings = [e for e in events(kube_api, namespace) if e.type == "Warning"]
    assert [e.reason for e in warnings] == ["TargetNotFound"]
    # No hot loop: the next steps wait, write nothing new and post no more Events.
    version = stored(kube_api, namespace)["metadata"]["resourceVersion"]
    for _ in range(3):
        assert controller.step(stored(kube_api, namespace)) == delay >= 10
    assert stored(kube_api, namespace)["metadata"]["resourceVersion"] == version
    assert len(events(kube_api, namespace)) == 1


def test_semantic_errors_the_schema_cannot_see_give_phase_invalid(
    kube_api: client.ApiClient, crd: dict[str, Any], namespace: str, controller: Controller
) -> None:
    body = gate(namespace)
    body["spec"]["metrics"][0]["errorRate"]["total"] = "sum(x{ {{selecter}} })"
    create(kube_api, body)
    controller.step(stored(kube_api, namespace))
    status = stored(kube_api, namespace)["status"]
    assert status["phase"] == "Invalid"
    assert "spec.metrics[0].errorRate.total" in status["message"] and "{{selecter}}" in status["message"]


def test_a_target_without_canary_gives_pending_and_a_valid_condition(
    kube_api: client.ApiClient, crd: dict[str, Any], namespace: str, controller: Controller
) -> None:
    client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
        "argoproj.io", "v1alpha1", namespace, "rollouts", rollout(namespace)
    )
    create(kube_api, gate(namespace))
    controller.step(stored(kube_api, namespace))
    status = stored(kube_api, namespace)["status"]
    assert status["phase"] == "Pending", status
    assert {c["type"]: c["status"] for c in status["conditions"]}["Valid"] == "True"


@pytest.fixture
def operator_process(cluster: Any, namespace: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    log = open(tmp_path / "operator.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "robustness_gate.cli",
            "run",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--namespace",
            namespace,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(20)
        log.close()
        print((tmp_path / "operator.log").read_text())


def test_deleting_a_gate_is_immediate_and_leaves_the_target_alone(
    kube_api: client.ApiClient, crd: dict[str, Any], namespace: str, operator_process: Any
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "rollouts", rollout(namespace))
    create(kube_api, gate(namespace))
    deadline = time.monotonic() + 30
    while (stored(kube_api, namespace).get("status") or {}).get("phase") != "Pending":
        assert time.monotonic() < deadline, "the operator did not pick the gate up in 30 s"
        time.sleep(0.2)
    assert not stored(kube_api, namespace)["metadata"].get("finalizers")
    before = json_object(custom.get_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "rollouts", "fraud"))
    custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "fraud")
    with pytest.raises(ApiException) as gone:
        stored(kube_api, namespace)
    assert gone.value.status == 404
    time.sleep(2)
    after = json_object(custom.get_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "rollouts", "fraud"))
    assert copy.deepcopy(after["spec"]) == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert operator_process.poll() is None, "the operator exited"
