"""Argo Rollouts asks the operator for its verdict: an analysis step runs an AnalysisRun whose
web metric reads /api/v1/verdict on the operator (127.0.0.1). The real rollouts-controller turns
pass into a Successful run (the canary goes on) and fail into a Failed run (the Rollout aborts).
`robustness-gate check` (for job metrics) exits 0 and 1 on the same verdicts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_helpers import namespace_for
from hack.canarylab import Behaviour
from hack.scenario import Kubectl, Operator, Traffic, gate_manifest, rollout_ref, start_rollout_canary, wait_for

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "docs" / "examples" / "analysis-template.yaml"
STEPS = [
    {"setWeight": 25},
    {
        "analysis": {
            "templates": [{"templateName": "robustness-gate"}],
            "args": [
                {"name": "namespace", "value": "NAMESPACE"},
                {"name": "gate", "value": "fraud-gate"},
                {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}},
            ],
        }
    },
]


def analysis_template(namespace: str, operator: Operator) -> dict[str, Any]:
    """The documented template, pointed at the operator on loopback and at a 2s interval."""
    template = yaml.safe_load(TEMPLATE.read_text().split("\n---")[0])
    metric = template["spec"]["metrics"][0]
    metric["interval"] = "2s"
    metric["count"] = metric["inconclusiveLimit"] = 150  # the gate's maxDuration (5m) / 2s
    url = metric["provider"]["web"]["url"]
    metric["provider"]["web"]["url"] = operator.http_url + url[url.index("/api/v1/verdict") :]
    template["metadata"]["namespace"] = namespace
    return dict(template)


@pytest.fixture
def hooked(kube: Kubectl, operator: Operator, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    started: list[Traffic] = []

    def make(behaviour: Behaviour) -> tuple[str, str, str, subprocess.Popen[str]]:
        namespace = kube.namespace(namespace_for(request.node.name))
        operator.wait_ready()
        kube.custom.create_namespaced_custom_object(
            "argoproj.io", "v1alpha1", namespace, "analysistemplates", analysis_template(namespace, operator)
        )
        steps = yaml.safe_load(yaml.safe_dump(STEPS).replace("NAMESPACE", namespace))
        stable, canary = start_rollout_canary(kube, namespace, "fraud", steps=steps)
        traffic = Traffic.pair(tmp_path, "fraud", "rollouts_pod_template_hash", stable, canary, behaviour)
        started.append(traffic)
        gate = gate_manifest(
            namespace,
            "fraud-gate",
            rollout_ref("fraud"),
            traffic.url,
            app="fraud",
            # A healthy canary passes in 1.5-3 minutes here; time to spare on a loaded machine.
            max_duration="5m",
        )
        gate["spec"]["onPass"] = gate["spec"]["onFail"] = "None"  # Argo acts on the verdict
        kube.create_gate(gate)
        check = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "robustness_gate.cli",
                "check",
                "--gate",
                f"{namespace}/fraud-gate",
                "--revision",
                canary,
                "--timeout",
                "5m",
                "--poll",
                "1s",
                "--kubeconfig",
                str(operator.kubeconfig),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        return namespace, stable, canary, check

    yield make
    for traffic in started:
        traffic.stop()


def analysis_run(kube: Kubectl, namespace: str) -> dict[str, Any] | None:
    listing: Any = kube.custom.list_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "analysisruns")
    runs: list[dict[str, Any]] = listing["items"]
    done = [
        run
        for run in runs
        if (run.get("status") or {}).get("phase") in ("Successful", "Failed", "Error", "Inconclusive")
    ]
    return done[0] if done else None


def test_a_healthy_canary_passes_its_analysis_run_and_is_promoted_by_argo(kube: Kubectl, hooked: Any) -> None:
    namespace, _stable, canary, check = hooked(Behaviour())
    run = wait_for("the AnalysisRun to finish", lambda: analysis_run(kube, namespace), 300)
    assert run["status"]["phase"] == "Successful", run["status"]
    measurements = run["status"]["metricResults"][0]["measurements"]
    assert measurements[-1]["phase"] == "Successful"
    assert json.loads(measurements[-1]["value"])["verdict"] == "pass"
    # Before the gate could pass, the measurements were Inconclusive ("pending"), never Successful.
    assert all(m["phase"] == "Inconclusive" for m in measurements[:-1]) and len(measurements) > 1
    wait_for(
        "the canary to become stable",
        lambda: (kube.rollout(namespace, "fraud").get("status") or {}).get("stableRS") == canary,
        90,
    )
    assert check.wait(60) == 0, check.stdout.read() if check.stdout else ""


def test_a_bad_canary_fails_its_analysis_run_and_argo_aborts(kube: Kubectl, hooked: Any) -> None:
    namespace, stable, canary, check = hooked(Behaviour(error_rate=0.05))
    run = wait_for("the AnalysisRun to finish", lambda: analysis_run(kube, namespace), 300)
    assert run["status"]["phase"] == "Failed", run["status"]
    assert json.loads(run["status"]["metricResults"][0]["measurements"][-1]["value"])["verdict"] == "fail"
    rollout = wait_for(
        "the Rollout aborted by Argo",
        lambda: r if (r := kube.rollout(namespace, "fraud")).get("status", {}).get("abort") else None,
        60,
    )
    assert rollout["status"]["stableRS"] == stable and rollout["status"]["currentPodHash"] == canary
    gate = kube.gate(namespace, "fraud-gate") or {}
    assert gate["status"]["phase"] == "Failed"  # onFail: None — the gate judged, Argo acted
    assert check.wait(60) == 1, check.stdout.read() if check.stdout else ""
