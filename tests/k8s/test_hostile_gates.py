"""Malformed and hostile RobustnessGates against the real apiserver and the operator's step.

Each one is either rejected when applied, with a message naming the field, or accepted by the
schema and then marked Invalid by the operator with a message naming the field. The target is
never touched, and a healthy gate next to them keeps being served.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import pytest
from k8s_helpers import create, gate, json_object, rollout, stored
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from robustness_gate.controller import Controller
from robustness_gate.kube import Kube

Mutation = Callable[[dict[str, Any]], None]


def setter(path: str, value: Any) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        node = body["spec"]
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        last = keys[-1]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def many_metrics(body: dict[str, Any]) -> None:
    metric = body["spec"]["metrics"][0]
    body["spec"]["metrics"] = [dict(copy.deepcopy(metric), name=f"m{i}") for i in range(51)]


def duplicate_metric(body: dict[str, Any]) -> None:
    body["spec"]["metrics"].append(copy.deepcopy(body["spec"]["metrics"][0]))


def every_metric_dry_run(body: dict[str, Any]) -> None:
    body["spec"]["metrics"][0]["dryRun"] = True


def huge_query(body: dict[str, Any]) -> None:
    body["spec"]["metrics"][0]["errorRate"]["errors"] = "sum(x{ {{selector}} })" + " + 0" * 200_000


HOSTILE: list[tuple[str, Mutation, str]] = [
    ("interval-zero", setter("analysis.interval", "0s"), "interval"),
    ("interval-days", setter("analysis.interval", "48h"), "interval"),
    ("interval-words", setter("analysis.interval", "thirty seconds"), "interval"),
    ("max-duration-a-year", setter("analysis.maxDuration", "8760h"), "maxDuration"),
    ("min-above-max", setter("analysis.minDuration", "1h"), "minDuration"),
    ("too-many-looks", setter("analysis.maxDuration", "100h"), "looks"),
    ("fpr-above-one", setter("analysis.falsePositiveRate", 2), "falsePositiveRate"),
    ("fpr-string", setter("analysis.falsePositiveRate", "0.01"), "falsePositiveRate"),
    ("error-limit-huge", setter("analysis.errorLimit", 10**9), "errorLimit"),
    ("min-traffic-negative", setter("analysis.minTraffic.canary", -5), "minTraffic"),
    ("scoring-above-100", setter("scoring.pass", 150), "scoring"),
    ("no-metrics", setter("metrics", []), "metrics"),
    ("fifty-one-metrics", many_metrics, "metrics"),
    ("duplicate-metric-names", duplicate_metric, "unique"),
    ("metric-name-uppercase", setter("metrics.0.name", "Error_Rate"), "name"),
    ("all-metrics-dry-run", every_metric_dry_run, "dryRun"),
    ("target-kind-pod", setter("targetRef", {"apiVersion": "v1", "kind": "Pod", "name": "x"}), "targetRef"),
    ("target-other-namespace", setter("targetRef.namespace", "kube-system"), "namespace"),
    ("target-missing", setter("targetRef.name", "no-such-rollout"), "spec.targetRef"),
    ("stable-ref-with-rollout", setter("stableRef", {"name": "fraud"}), "stableRef"),
    ("prometheus-file-url", setter("prometheus.address", "file:///etc/passwd"), "address"),
    ("prometheus-timeout-words", setter("prometheus.timeout", "forever"), "timeout"),
    ("unknown-template-variable", setter("metrics.0.errorRate.total", "sum(x{ {{nope}} })"), "{{nope}}"),
    (
        "label-injection-in-histogram",
        setter(
            "metrics.0",
            {
                "name": "latency",
                "latency": {"histogram": "http_request_duration_seconds", "labels": 'app="x"} or vector(1) or x{a="b"'},
                "compare": {"direction": "Increase"},
            },
        ),
        "labels",
    ),
    (
        "metric-name-injection",
        setter(
            "metrics.0",
            {
                "name": "latency",
                "latency": {"histogram": "up) or vector(1", "labels": 'app="x"'},
                "compare": {"direction": "Increase"},
            },
        ),
        "histogram",
    ),
    (
        "selector-injection",
        setter("selectors", {"canary": 'a="{{canaryHash}}"} or up{b="c"', "baseline": 'a="{{stableHash}}"'}),
        "spec.selectors",
    ),
    (
        "selectors-identical",
        setter("selectors", {"canary": 'app="fraud"', "baseline": 'app="fraud"'}),
        "spec.selectors",
    ),
    ("huge-query", huge_query, "errorRate"),
]


def settled_rollout(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    """The Rollout once its controller has defaulted and observed it (it fills in e.g. `resources: {}`)."""
    deadline = time.monotonic() + 30
    while True:
        rollout_now = json_object(
            custom.get_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "rollouts", "fraud")
        )
        status = rollout_now.get("status") or {}
        if status.get("phase") == "Healthy" and status.get("observedGeneration") == str(
            rollout_now["metadata"]["generation"]
        ):
            return rollout_now
        assert time.monotonic() < deadline, f"the Rollout did not settle: {status}"
        time.sleep(0.2)


@pytest.mark.parametrize(("case", "mutate", "field"), HOSTILE, ids=[case for case, _, _ in HOSTILE])
def test_a_hostile_gate_is_rejected_or_invalid_and_touches_nothing(
    case: str, mutate: Mutation, field: str, kube_api: client.ApiClient, crd: Any, namespace: str
) -> None:
    custom = client.CustomObjectsApi(kube_api)
    custom.create_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "rollouts", rollout(namespace))
    before = settled_rollout(custom, namespace)
    body = gate(namespace, name="hostile")
    mutate(body)
    controller = Controller(Kube(kube_api))
    try:
        create(kube_api, body)
    except ApiException as error:
        assert error.status in (400, 413, 422), error.body
        assert field in str(error.body), f"{case}: the rejection does not name {field!r}: {str(error.body)[:500]}"
    else:
        controller.step(stored(kube_api, namespace, "hostile"))
        status = stored(kube_api, namespace, "hostile")["status"]
        assert status["phase"] == "Invalid", f"{case}: accepted and not Invalid: {status}"
        assert field in status["message"], f"{case}: the message does not name {field!r}: {status['message']}"
    after = json_object(custom.get_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "rollouts", "fraud"))
    assert after["spec"] == before["spec"] and after["metadata"]["generation"] == before["metadata"]["generation"]
    # A healthy gate in the same namespace is still served by the same controller.
    create(kube_api, gate(namespace, name="healthy"))
    controller.step(stored(kube_api, namespace, "healthy"))
    assert stored(kube_api, namespace, "healthy")["status"]["phase"] == "Pending"
