"""Helpers shared by the k8s tests, so that test modules never import each other (named apart from any
other tier's helpers: pytest puts every test directory on one sys.path)."""

from __future__ import annotations

from typing import Any, TypeVar, cast

from kubernetes import client

from robustness_gate.api import GROUP, PLURAL, VERSION

T = TypeVar("T")


def present(value: T | None) -> T:
    """A field the apiserver always fills in, which the client's models type as optional: reading one that is
    missing fails the test, as reading an attribute of None would."""
    assert value is not None
    return value


def json_object(answer: object) -> dict[str, Any]:
    """A custom-objects API answer: the decoded JSON object, which the client types as `object`."""
    return cast("dict[str, Any]", answer)


def gate(namespace: str, name: str = "fraud", **spec_changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RobustnessGate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "targetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "fraud"},
            "prometheus": {"address": "http://127.0.0.1:9"},
            "analysis": {"interval": "5s", "minDuration": "30s", "maxDuration": "5m"},
            "metrics": [
                {
                    "name": "error-rate",
                    "errorRate": {
                        "errors": 'sum(increase(http_requests_total{code=~"5..",{{selector}}}[{{window}}]))',
                        "total": "sum(increase(http_requests_total{ {{selector}} }[{{window}}]))",
                    },
                    "compare": {"direction": "Increase"},
                }
            ],
        },
    }
    body["spec"].update(spec_changes)
    return body


def create(kube_api: client.ApiClient, body: dict[str, Any], strict: bool = True) -> dict[str, Any]:
    custom = client.CustomObjectsApi(kube_api)
    created = custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        body["metadata"]["namespace"],
        PLURAL,
        body,
        field_validation="Strict" if strict else None,
    )
    return json_object(created)


def stored(kube_api: client.ApiClient, namespace: str, name: str = "fraud") -> dict[str, Any]:
    result = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return json_object(result)


def rollout(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "fraud", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "fraud"}},
            "template": {
                "metadata": {"labels": {"app": "fraud"}},
                "spec": {"containers": [{"name": "model", "image": "registry.invalid/fraud:v1"}]},
            },
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        },
    }
