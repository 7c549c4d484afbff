"""The Helm chart on the local cluster: its manifests pass the apiserver's server-side dry run, `helm install`
brings up the operator pod, the chart's ServiceAccount may do exactly what the operator does and nothing more, and
the operator, logged in with that ServiceAccount's token, rolls back a bad canary through the real Argo Rollouts
controller without a single denied request."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shlex
import subprocess
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hack import localcluster
from hack.canarylab import Behaviour
from hack.localcluster import LocalCluster
from hack.scenario import (
    ROLLOUT_HASH_LABEL,
    Kubectl,
    Operator,
    Traffic,
    gate_manifest,
    rollout_ref,
    start_rollout_canary,
    wait_for,
)
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from robustness_gate.api import RobustnessGateSpec
from robustness_gate.errors import KubeError
from robustness_gate.kube import Kube, api_client
from robustness_gate.leader import LeaderElector

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "robustness-gate"
EXAMPLE_TEMPLATE = CHART / "examples" / "analysis-template.yaml"
LABEL = ROLLOUT_HASH_LABEL
GATES = ("robustness.dev", "v1alpha1", "robustnessgates")
# What an RBAC denial looks like anywhere in the operator's log (kopf's, the kubernetes client's or its own).
DENIED = re.compile(r"\bforbidden\b|\b403 forbidden|status=403|'code': 403|\bcannot \w+ resource\b", re.IGNORECASE)


class Tools:
    """helm and kubectl on the local cluster; helm keeps its cache and config in a scratch directory."""

    def __init__(self, cluster: LocalCluster, home: Path) -> None:
        bin_dir, pinned = localcluster.testbin() / "bin", localcluster.versions()
        self.helm_bin = bin_dir / f"helm-{pinned['HELM_VERSION']}"
        self.kubectl_bin = bin_dir / f"kubectl-{pinned['KUBE_VERSION']}"
        for binary in (self.helm_bin, self.kubectl_bin):
            if not os.access(binary, os.X_OK):
                pytest.fail(f"no {binary}: run `make cluster-build`", pytrace=False)
        self.kubeconfig = str(cluster.kubeconfig)
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, binary: Path, args: list[str], stdin: str | None, check: bool) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(binary), "--kubeconfig", self.kubeconfig, *args],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"{binary.name} {shlex.join(args)} exited {result.returncode}:\n{result.stderr}{result.stdout}",
                pytrace=False,
            )
        return result

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(self.helm_bin, list(args), None, check)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(self.kubectl_bin, list(args), stdin, check)

    def get(self, *args: str) -> Any:
        """`kubectl get ... -o json`, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)


@dataclass
class Release:
    name: str
    namespace: str
    account: str
    notes: str
    watched: list[str] = field(default_factory=list)

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.account}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def tools(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Tools:
    return Tools(cluster, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="module")
def admin(cluster: LocalCluster) -> Iterator[Kubectl]:
    api = api_client(str(cluster.kubeconfig))
    try:
        yield Kubectl(api)
    finally:
        api.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def namespaces(admin: Kubectl) -> Iterator[Callable[[str], str]]:
    """Factory: a fresh namespace whose `default` ServiceAccount exists; all are deleted after the module."""
    made: list[str] = []

    def make(prefix: str) -> str:
        name = admin.namespace(unique(prefix))
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            admin.core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture(scope="module")
def chart_crd(tools: Tools) -> None:
    """The chart's CRD, applied first (server-side, as a user upgrading the chart would) and Established."""
    tools.kubectl("apply", "--server-side", "-f", str(CHART / "crds"))
    tools.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CHART / "crds"))


@pytest.fixture(scope="module")
def install(tools: Tools, namespaces: Callable[[str], str], chart_crd: None) -> Iterator[Callable[..., Release]]:
    """Factory: `helm install --wait` of the chart into its own namespace; uninstalled after the module."""
    installed: list[Release] = []

    def make(prefix: str, *values: str, watched: list[str] | None = None) -> Release:
        namespace = namespaces(prefix)
        name = unique("rg")
        args = ["install", name, str(CHART), "--namespace", namespace, "--wait", "--timeout", "120s"]
        for value in values:
            args += ["--set-json", value]
        if watched:
            args += ["--set-json", f"watchNamespaces={json.dumps(watched)}"]
        output = tools.helm(*args).stdout
        release = Release(name, namespace, f"{name}-robustness-gate", output.partition("NOTES:")[2], watched or [])
        installed.append(release)
        return release

    yield make
    for release in installed:
        tools.helm("uninstall", release.name, "--namespace", release.namespace, "--wait", "--timeout", "60s")


@pytest.fixture(scope="module")
def cluster_release(install: Callable[..., Release]) -> Release:
    return install("rg-default")


@pytest.fixture(scope="module")
def options_release(install: Callable[..., Release]) -> Release:
    return install("rg-options", 'rbac.secretNames=["prom-auth"]', "leaderElection.enabled=true", "replicas=2")


@pytest.fixture(scope="module")
def namespaced_release(install: Callable[..., Release], namespaces: Callable[[str], str]) -> Release:
    return install("rg-ns", watched=[namespaces("watched")])


def can_i(tools: Tools, user: str, check: str) -> bool:
    """`kubectl auth can-i` for one "verb resource [-n namespace | -A] [--subresource=...]" line."""
    result = tools.kubectl("auth", "can-i", *check.split(), "--as", user, check=False)
    answer = result.stdout.strip()
    if result.returncode not in (0, 1) or answer not in ("yes", "no"):
        pytest.fail(
            f"kubectl auth can-i {check} --as {user}: exit {result.returncode}: {result.stderr}{answer}", pytrace=False
        )
    return answer == "yes"


def assert_access(tools: Tools, user: str, allowed: list[str], denied: list[str]) -> None:
    checks = allowed + denied
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = dict(zip(checks, pool.map(lambda c: can_i(tools, user, c), checks), strict=True))
    wrong = {c: "allowed" if answers[c] else "denied" for c in checks if answers[c] != (c in allowed)}
    assert not wrong, f"{user}: unexpected answers {wrong}"


def operator_access(namespace: str) -> list[str]:
    """The operator's API calls in one namespace."""
    ns = f"-n {namespace}"
    return [
        f"get robustnessgates.robustness.dev {ns}",
        f"list robustnessgates.robustness.dev {ns}",
        f"watch robustnessgates.robustness.dev {ns}",
        f"get robustnessgates.robustness.dev {ns} --subresource=status",
        f"patch robustnessgates.robustness.dev {ns} --subresource=status",
        f"create events {ns}",
        f"patch events {ns}",
        f"create events.events.k8s.io {ns}",
        f"get rollouts.argoproj.io {ns}",
        f"patch rollouts.argoproj.io {ns}",
        f"patch rollouts.argoproj.io {ns} --subresource=status",
        f"get deployments.apps {ns}",
        f"list deployments.apps {ns}",
        f"watch deployments.apps {ns}",
        f"patch deployments.apps {ns}",
        f"list replicasets.apps {ns}",
        f"watch replicasets.apps {ns}",
    ]


def beyond_operator(namespace: str) -> list[str]:
    """Requests the operator never makes, in one namespace."""
    ns = f"-n {namespace}"
    return [
        f"get secrets {ns}",
        f"get secrets/prom-auth {ns}",
        f"list secrets {ns}",
        f"delete rollouts.argoproj.io {ns}",
        f"update rollouts.argoproj.io {ns}",
        f"create rollouts.argoproj.io {ns}",
        f"list rollouts.argoproj.io {ns}",
        f"delete deployments.apps {ns}",
        f"update deployments.apps {ns}",
        f"create deployments.apps {ns}",
        f"patch deployments.apps {ns} --subresource=scale",
        f"update robustnessgates.robustness.dev {ns}",
        f"patch robustnessgates.robustness.dev {ns}",
        f"create robustnessgates.robustness.dev {ns}",
        f"delete robustnessgates.robustness.dev {ns}",
        f"update robustnessgates.robustness.dev {ns} --subresource=status",
        f"create pods {ns}",
        f"get pods {ns}",
        f"create pods/exec {ns}",
        f"patch replicasets.apps {ns}",
        f"delete events {ns}",
        f"get configmaps {ns}",
        f"create analysisruns.argoproj.io {ns}",
        f"create rolebindings.rbac.authorization.k8s.io {ns}",
    ]


CLUSTER_SCOPED_DENIED = [
    "list namespaces",
    "list customresourcedefinitions.apiextensions.k8s.io",
    "create clusterrolebindings.rbac.authorization.k8s.io",
    "get nodes",
    "create serviceaccounts/token -n kube-system",
    "* *",
]


def token_kubeconfig(tools: Tools, cluster: LocalCluster, release: Release, path: Path) -> Path:
    """A kubeconfig that logs in as the release's ServiceAccount: a bound token, the admin kubeconfig's server and
    CA, no client certificate."""
    token = tools.kubectl("create", "token", release.account, "-n", release.namespace, "--duration=1h").stdout.strip()
    admin_config = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin_config["clusters"][0]["cluster"]
    body = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": server["server"], "certificate-authority": server["certificate-authority"]},
            }
        ],
        "users": [{"name": release.account, "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": release.account}}],
        "current-context": "sa",
    }
    path.write_text(yaml.safe_dump(body))
    path.chmod(0o600)
    return path


def deployment_args(admin: Kubectl, release: Release) -> list[str]:
    deployment = admin.deployment(release.namespace, f"{release.name}-robustness-gate")
    args: list[str] = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    return args


# ---------------------------------------------------------------- tests


def test_rendered_chart_passes_server_side_dry_run(
    tools: Tools, chart_crd: None, namespaces: Callable[[str], str]
) -> None:
    namespace = namespaces("dry-run")
    variants = [
        [],
        [f'watchNamespaces=["{namespace}"]', 'rbac.secretNames=["prom-auth"]'],
        ["leaderElection.enabled=true", "replicas=3", 'serviceAccount.annotations={"example.com/role":"rg"}'],
        [
            'rbac.secretNames=["prom-auth","prom-basic"]',
            'notifications.webhookSecret={"name":"slack","key":"url"}',
            'podAnnotations={"example.com/team":"delivery"}',
            "replicas=0",
        ],
    ]
    for values in variants:
        args = ["template", "dry", str(CHART), "--namespace", namespace]
        for value in values:
            args += ["--set-json", value]
        manifest = tools.helm(*args).stdout
        kinds = [doc["kind"] for doc in yaml.safe_load_all(manifest) if doc]
        applied = tools.kubectl(
            "apply", "--server-side", "--dry-run=server", "--field-manager=helm-chart-test", "-f", "-", stdin=manifest
        ).stdout
        lines = [line for line in applied.splitlines() if line.strip()]
        assert len(lines) == len(kinds) and all(
            line.endswith("serverside-applied (server dry run)") for line in lines
        ), applied
        assert {"Deployment", "ServiceAccount", "Service"} <= set(kinds)
    # Nothing was created by the dry runs.
    assert "NotFound" in tools.kubectl("get", "clusterrole", "dry-robustness-gate", check=False).stderr
    assert "NotFound" in tools.kubectl("get", "deployment", "dry-robustness-gate", "-n", namespace, check=False).stderr
    # The example AnalysisTemplate is valid for the Argo Rollouts CRDs of the cluster.
    applied = tools.kubectl(
        "apply", "--server-side", "--dry-run=server", "-n", namespace, "-f", str(EXAMPLE_TEMPLATE)
    ).stdout
    assert "analysistemplate.argoproj.io/robustness-gate serverside-applied (server dry run)" in applied


def test_helm_install_runs_the_operator_pod(cluster_release: Release, tools: Tools) -> None:
    release = cluster_release
    status = json.loads(tools.helm("status", release.name, "-n", release.namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    pods = tools.get("pods", "-n", release.namespace, "-l", f"app.kubernetes.io/instance={release.name}")["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["status"]["phase"] == "Running", pod["status"]
    assert pod["spec"]["serviceAccountName"] == release.account
    [main] = pod["spec"]["containers"]
    assert main["image"] == "robustness-gate:0.1.0"
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    service = tools.get("service", f"{release.name}-robustness-gate", "-n", release.namespace)
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 8080, "metrics": 9090}
    endpoints = tools.get("endpoints", service["metadata"]["name"], "-n", release.namespace)
    backends = [a["targetRef"]["name"] for s in endpoints.get("subsets") or [] for a in s.get("addresses") or []]
    assert backends == [pod["metadata"]["name"]]
    url = f"http://{release.name}-robustness-gate.{release.namespace}.svc:8080/api/v1/verdict/{{namespace}}/{{gate}}"
    assert url in release.notes, release.notes
    assert "all namespaces" in release.notes and "cannot read any Secret" in release.notes


def test_the_gate_in_the_notes_is_valid(cluster_release: Release, tools: Tools) -> None:
    block = re.search(r"<<'YAML'\n(.*?)\n\s*YAML\n", cluster_release.notes, re.DOTALL)
    assert block, cluster_release.notes
    text = textwrap.dedent(block.group(1)).replace("<gate>", "fraud-model").replace("<rollout>", "fraud-model")
    gate = yaml.safe_load(text)
    assert gate["kind"] == "RobustnessGate"
    RobustnessGateSpec.model_validate(gate["spec"])  # what the operator accepts
    applied = tools.kubectl(
        "apply", "--server-side", "--dry-run=server", "-n", cluster_release.namespace, "-f", "-", stdin=text
    ).stdout  # what the CRD accepts
    assert "robustnessgate.robustness.dev/fraud-model serverside-applied (server dry run)" in applied


def test_cluster_wide_service_account_may_do_what_the_operator_does_and_no_more(
    cluster_release: Release, tools: Tools
) -> None:
    anywhere = unique("anywhere")  # the ClusterRole applies to namespaces that do not exist yet
    assert_access(
        tools,
        cluster_release.user,
        allowed=[
            *operator_access(anywhere),
            *operator_access("default"),
            "list robustnessgates.robustness.dev -A",
            "watch robustnessgates.robustness.dev -A",
        ],
        denied=[*beyond_operator(anywhere), *beyond_operator(cluster_release.namespace), *CLUSTER_SCOPED_DENIED],
    )


def test_namespaced_release_is_confined_to_its_namespaces(
    namespaced_release: Release, tools: Tools, namespaces: Callable[[str], str]
) -> None:
    release = namespaced_release
    [watched] = release.watched
    other = namespaces("unwatched")
    selector = f"app.kubernetes.io/instance={release.name}"
    assert tools.get("clusterroles,clusterrolebindings", "-l", selector)["items"] == []
    grants = tools.get("roles,rolebindings", "-A", "-l", selector)["items"]
    assert sorted((g["kind"], g["metadata"]["namespace"]) for g in grants) == [
        ("Role", watched),
        ("RoleBinding", watched),
    ]
    assert_access(
        tools,
        release.user,
        allowed=operator_access(watched),
        denied=[
            *beyond_operator(watched),
            *operator_access(other),
            *operator_access(release.namespace),
            "list robustnessgates.robustness.dev -A",
            *CLUSTER_SCOPED_DENIED,
        ],
    )
    assert f"It watches RobustnessGates in: {watched}" in release.notes


def test_secret_names_allow_reading_only_those_secrets(
    options_release: Release,
    cluster_release: Release,
    tools: Tools,
    cluster: LocalCluster,
    admin: Kubectl,
    namespaces: Callable[[str], str],
    tmp_path: Path,
) -> None:
    namespace = namespaces("prom-auth")
    for name in ("prom-auth", "other"):
        admin.core.create_namespaced_secret(
            namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=name), data={"token": base64.b64encode(b"s3cret").decode()}
            ),
        )
    assert_access(
        tools,
        options_release.user,
        allowed=[f"get secrets/prom-auth -n {namespace}", f"get secrets/prom-auth -n {unique('anywhere')}"],
        denied=[
            f"get secrets/other -n {namespace}",
            f"get secrets -n {namespace}",
            f"list secrets -n {namespace}",
            f"watch secrets -n {namespace}",
            f"update secrets/prom-auth -n {namespace}",
            f"create secrets -n {namespace}",
        ],
    )
    # The operator's own code path (Kube.secret_value), logged in as each release's ServiceAccount.
    kube = Kube(api_client(str(token_kubeconfig(tools, cluster, options_release, tmp_path / "options.kubeconfig"))))
    assert kube.secret_value(namespace, "prom-auth", "token") == "s3cret"
    with pytest.raises(KubeError) as denied:
        kube.secret_value(namespace, "other", "token")
    assert denied.value.status == 403
    default = Kube(api_client(str(token_kubeconfig(tools, cluster, cluster_release, tmp_path / "default.kubeconfig"))))
    with pytest.raises(KubeError) as denied:
        default.secret_value(namespace, "prom-auth", "token")
    assert denied.value.status == 403


def test_leader_election_may_hold_only_its_own_lease(
    options_release: Release, tools: Tools, cluster: LocalCluster, admin: Kubectl, tmp_path: Path
) -> None:
    release = options_release
    lease = f"{release.name}-robustness-gate"
    pods = tools.get("pods", "-n", release.namespace, "-l", f"app.kubernetes.io/instance={release.name}")["items"]
    assert [pod["status"]["phase"] for pod in pods] == ["Running", "Running"]
    args = deployment_args(admin, release)
    assert args[-4:] == [
        "--leader-elect",
        f"--lease-namespace={release.namespace}",
        f"--lease-name={lease}",
        "--lease-duration=15",
    ]
    other = unique("elsewhere")
    ns = f"-n {release.namespace}"
    assert_access(
        tools,
        release.user,
        allowed=[
            f"create leases.coordination.k8s.io {ns}",
            f"get leases.coordination.k8s.io/{lease} {ns}",
            f"update leases.coordination.k8s.io/{lease} {ns}",
        ],
        denied=[
            f"get leases.coordination.k8s.io/kube-scheduler {ns}",
            f"update leases.coordination.k8s.io {ns}",
            f"list leases.coordination.k8s.io {ns}",
            f"delete leases.coordination.k8s.io/{lease} {ns}",
            f"create leases.coordination.k8s.io -n {other}",
            f"get leases.coordination.k8s.io/{lease} -n {other}",
            "get leases.coordination.k8s.io/kube-controller-manager -n kube-system",
        ],
    )
    # The operator's own election code, logged in as the ServiceAccount: create, renew, and keep others out.
    kube = Kube(api_client(str(token_kubeconfig(tools, cluster, release, tmp_path / "lease.kubeconfig"))))
    first = LeaderElector(kube, release.namespace, lease, "replica-a", 15)
    assert first.try_once() is True  # creates the Lease
    assert first.try_once() is True  # renews it (read, then update with its resourceVersion)
    assert LeaderElector(kube, release.namespace, lease, "replica-b", 15).try_once() is False
    assert LeaderElector(kube, release.namespace, "someone-else", "replica-a", 15).try_once() is None  # 403
    assert LeaderElector(kube, other, lease, "replica-a", 15).try_once() is None  # 403
    stored = tools.get("lease", lease, "-n", release.namespace)
    assert stored["spec"]["holderIdentity"] == "replica-a" and stored["spec"]["leaseDurationSeconds"] == 15


def assert_no_denials(operator: Operator) -> None:
    denials = [line for line in operator.logs().splitlines() if DENIED.search(line)]
    assert not denials, "denied requests in the operator's log:\n" + "\n".join(denials)


def _no_other_gates(admin: Kubectl, namespace: str) -> bool:
    listing: Any = admin.custom.list_cluster_custom_object(*GATES)
    gates: list[dict[str, Any]] = listing["items"]
    return all(gate["metadata"]["namespace"] == namespace for gate in gates)


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_operator_with_the_charts_rbac_rolls_back_a_bad_canary(
    mode: str,
    request: pytest.FixtureRequest,
    cluster: LocalCluster,
    tools: Tools,
    admin: Kubectl,
    namespaces: Callable[[str], str],
    tmp_path: Path,
) -> None:
    release: Release = request.getfixturevalue("cluster_release" if mode == "cluster-wide" else "namespaced_release")
    namespace = release.watched[0] if release.watched else namespaces("canary")
    # The operator runs with the chart's --namespace flags and the ServiceAccount's token, outside the cluster.
    args = deployment_args(admin, release)
    watch = [arg.removeprefix("--namespace=") for arg in args if arg.startswith("--namespace=")]
    assert watch == release.watched
    kubeconfig = token_kubeconfig(tools, cluster, release, tmp_path / "operator.kubeconfig")
    if not watch:  # a cluster-wide operator would also act on gates other tests left behind
        wait_for("no RobustnessGate outside this test's namespace", lambda: _no_other_gates(admin, namespace), 60)
    (tmp_path / "operator").mkdir()
    operator = Operator(kubeconfig, tmp_path / "operator", namespaces=watch)
    traffic: Traffic | None = None
    try:
        operator.start()
        operator.wait_ready(60)
        stable, canary = start_rollout_canary(admin, namespace, "fraud")
        traffic = Traffic.pair(tmp_path / "traffic", "fraud", LABEL, stable, canary, Behaviour(error_rate=0.05))
        target = rollout_ref("fraud")
        admin.create_gate(gate_manifest(namespace, "fraud-gate", target, traffic.url, app="fraud"))

        def decided() -> dict[str, Any] | None:
            assert_no_denials(operator)  # fail at the first denied request, not after the timeout
            status = (admin.gate(namespace, "fraud-gate") or {}).get("status") or {}
            return (
                status
                if status.get("phase") == "RolledBack" and (status.get("decision") or {}).get("applied")
                else None
            )

        status = wait_for("the gate to roll the canary back", decided, 150)
        assert status["revision"] == canary and status["decision"]["operation"] == "Rollback", status

        def aborted() -> dict[str, Any] | None:
            rollout = admin.rollout(namespace, "fraud")
            canary_sets = admin.replica_sets(namespace, f"rollouts-pod-template-hash={canary}")
            done = (rollout.get("status") or {}).get("abort") and rollout["status"].get("phase") == "Degraded"
            return rollout if done and canary_sets and canary_sets[0]["spec"].get("replicas") == 0 else None

        rollout = wait_for("the Rollout aborted with its canary scaled down", aborted, 60)
        assert rollout["status"]["stableRS"] == stable
        reasons = [event["reason"] for event in admin.events(namespace, "fraud-gate")]
        assert "Rollback" in reasons, reasons
        time.sleep(1)  # requests still in flight after the decision land in the log too
    finally:
        operator.stop()
        if traffic is not None:
            traffic.stop()
        with contextlib.suppress(ApiException):
            admin.custom.delete_namespaced_custom_object(*GATES[:2], namespace, GATES[2], "fraud-gate")
        print(operator.logs()[-20000:])  # in the report when the test fails
    assert_no_denials(operator)
    assert f"{namespace}/fraud-gate" in operator.logs(), "this operator never logged about the gate"
