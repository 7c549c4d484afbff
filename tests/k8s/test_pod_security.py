"""The chart's operator pod under the `restricted` Pod Security Standard, judged by the real apiserver's built-in
PodSecurity admission.

The chart is rendered with the real `helm template` (default values, `watchNamespaces`, leader election with two
replicas and a notification Secret) into a namespace labelled `enforce=restricted` (and `warn=restricted`, so that
a Deployment whose template would violate the profile gets a warning). Its Pod, built from the Deployment's
template, passes a server-side dry run; its Deployment draws no PodSecurity warning, and created for real its
ReplicaSet creates its pods. Negative controls in the same namespace prove admission is active: a privileged pod,
a pod that may run as root and a pod that keeps its capabilities are rejected, and such a Deployment is warned
about.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack import localcluster
from kubernetes import client
from kubernetes.client.exceptions import ApiException

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "robustness-gate"
PSA = "pod-security.kubernetes.io"
VALUES = {
    "default": [],
    "watch-namespaces": ['watchNamespaces=["team-a","team-b"]'],
    "leader-election": [
        "leaderElection.enabled=true",
        "replicas=2",
        'rbac.secretNames=["prom-auth"]',
        'notifications.webhookSecret={"name":"hooks","key":"url"}',
    ],
}


def helm_binary() -> Path:
    binary: Path = localcluster.testbin() / "bin" / f"helm-{localcluster.versions()['HELM_VERSION']}"
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no {binary}: run `make cluster-build`", pytrace=False)
    return binary


def render(namespace: str, values: list[str], home: Path) -> list[dict[str, Any]]:
    """`helm template` of the chart into `namespace`, as parsed manifests."""
    args = [str(helm_binary()), "template", "rg", str(CHART), "--namespace", namespace]
    for value in values:
        args += ["--set-json", value]
    env = {**os.environ, **{f"HELM_{kind}_HOME": str(home / kind.lower()) for kind in ("CACHE", "CONFIG", "DATA")}}
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, check=False)
    if result.returncode != 0:
        pytest.fail(f"helm template exited {result.returncode}:\n{result.stderr}", pytrace=False)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [m for m in manifests if m.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, rendered {[m.get('kind') for m in manifests]}"
    return found[0]


def pod_from(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    template = copy.deepcopy(deployment["spec"]["template"])
    metadata = {**template.get("metadata", {}), "name": name, "namespace": deployment["metadata"]["namespace"]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def warnings_of(response: Any) -> list[str]:
    """The apiserver's `Warning` headers of a raw (non-preloaded) response."""
    return [str(w) for w in response.headers.getlist("Warning")]


@pytest.fixture(scope="module")
def restricted(kube_api: client.ApiClient) -> Iterator[str]:
    """A namespace enforcing (and warning about) the restricted profile at the apiserver's own version."""
    core = client.CoreV1Api(kube_api)
    name = f"psa-{uuid.uuid4().hex[:8]}"
    labels = {
        f"{PSA}/enforce": "restricted",
        f"{PSA}/enforce-version": "latest",
        f"{PSA}/warn": "restricted",
        f"{PSA}/warn-version": "latest",
    }
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


@pytest.fixture(scope="module")
def rendered(restricted: str, helm_home: Path, kube_api: client.ApiClient) -> Callable[[str], list[dict[str, Any]]]:
    """Factory: the chart rendered with one of VALUES into the restricted namespace; its ServiceAccount created
    (pods naming a missing ServiceAccount are refused by another admission plugin)."""
    core = client.CoreV1Api(kube_api)
    cache: dict[str, list[dict[str, Any]]] = {}

    def make(case: str) -> list[dict[str, Any]]:
        if case not in cache:
            manifests = render(restricted, VALUES[case], helm_home)
            account: Any = one(manifests, "ServiceAccount")
            try:
                core.create_namespaced_service_account(restricted, account)
            except ApiException as error:
                if error.status != 409:
                    raise
            cache[case] = manifests
        return cache[case]

    return make


def create_pod(core: client.CoreV1Api, pod: dict[str, Any]) -> Any:
    body: Any = pod
    return core.create_namespaced_pod(pod["metadata"]["namespace"], body, dry_run="All", _preload_content=False)


def create_deployment(apps: client.AppsV1Api, deployment: dict[str, Any], dry_run: bool = True) -> Any:
    body: Any = deployment
    namespace = deployment["metadata"]["namespace"]
    if dry_run:
        return apps.create_namespaced_deployment(namespace, body, dry_run="All", _preload_content=False)
    return apps.create_namespaced_deployment(namespace, body, _preload_content=False)


@pytest.mark.parametrize("case", list(VALUES))
def test_the_chart_pod_is_admitted_under_enforced_restricted(
    case: str, rendered: Callable[[str], list[dict[str, Any]]], restricted: str, kube_api: client.ApiClient
) -> None:
    manifests = rendered(case)
    deployment = one(manifests, "Deployment")
    assert deployment["metadata"]["namespace"] == restricted
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    if case == "watch-namespaces":  # the values really changed the rendering
        assert "--namespace=team-a" in args and "--namespace=team-b" in args
    if case == "leader-election":
        assert "--leader-elect" in args and deployment["spec"]["replicas"] == 2
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)

    response = create_pod(core, pod_from(deployment, f"rg-{case}"))
    admitted = json.loads(response.data)
    assert admitted["kind"] == "Pod" and admitted["metadata"]["namespace"] == restricted
    assert not [w for w in warnings_of(response) if "PodSecurity" in w], warnings_of(response)

    response = create_deployment(apps, deployment)
    assert json.loads(response.data)["kind"] == "Deployment"
    assert not [w for w in warnings_of(response) if "PodSecurity" in w], warnings_of(response)


def test_the_chart_deployment_creates_its_pods_under_enforced_restricted(
    rendered: Callable[[str], list[dict[str, Any]]], restricted: str, kube_api: client.ApiClient
) -> None:
    """Created for real: the ReplicaSet controller's pod creations pass admission (kwok runs the pods)."""
    deployment = copy.deepcopy(one(rendered("default"), "Deployment"))
    deployment["metadata"]["name"] = "rg-real"
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    create_deployment(apps, deployment, dry_run=False)
    selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
    deadline = time.monotonic() + 60
    pods: list[Any] = []
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(restricted, label_selector=selector).items
        if pods:
            break
        time.sleep(0.5)
    failed = [e.message for e in core.list_namespaced_event(restricted).items if e.reason == "FailedCreate"]
    assert pods, f"no pod of the chart's Deployment after 60 s; FailedCreate events: {failed}"
    assert not failed
    assert pods[0].spec.security_context.run_as_non_root is True


def _privileged(pod: dict[str, Any]) -> None:
    # privileged: true with allowPrivilegeEscalation: false is refused by validation, before admission.
    pod["spec"]["containers"][0]["securityContext"].update(privileged=True, allowPrivilegeEscalation=True)


def _may_run_as_root(pod: dict[str, Any]) -> None:
    pod["spec"]["securityContext"].pop("runAsNonRoot")
    pod["spec"]["containers"][0]["securityContext"].pop("runAsNonRoot")


def _keeps_capabilities(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["securityContext"].pop("capabilities")


def _privilege_escalation(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True


def _host_path(pod: dict[str, Any]) -> None:
    pod["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/etc"}})


NOT_RESTRICTED: dict[str, Callable[[dict[str, Any]], None]] = {
    "privileged": _privileged,
    "may-run-as-root": _may_run_as_root,
    "keeps-capabilities": _keeps_capabilities,
    "privilege-escalation": _privilege_escalation,
    "host-path": _host_path,
}


@pytest.mark.parametrize("violation", list(NOT_RESTRICTED))
def test_admission_is_active_a_pod_that_is_not_restricted_is_rejected(
    violation: str, rendered: Callable[[str], list[dict[str, Any]]], restricted: str, kube_api: client.ApiClient
) -> None:
    deployment = copy.deepcopy(one(rendered("default"), "Deployment"))
    pod = pod_from(deployment, f"bad-{violation}")
    NOT_RESTRICTED[violation](pod)
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    with pytest.raises(ApiException) as rejected:
        create_pod(core, pod)
    assert rejected.value.status == 403, rejected.value.body
    message = json.loads(str(rejected.value.body))["message"]
    assert "violates PodSecurity" in message and '"restricted:latest"' in message, message
    # A Deployment with that template is stored (enforce applies to pods), with a warning naming the profile.
    deployment["spec"]["template"]["spec"] = pod["spec"]
    response = create_deployment(apps, deployment)
    assert [w for w in warnings_of(response) if "would violate PodSecurity" in w and "restricted:latest" in w], (
        warnings_of(response)
    )
