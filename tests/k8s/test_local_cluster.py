"""The local cluster does what the operator's tests rely on: Ready fake nodes, Deployments whose pods become Running
and Ready, and an Argo Rollouts controller that runs canary steps."""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hack.localcluster import ClusterError, LocalCluster
from k8s_helpers import json_object, present
from kubernetes import client
from kubernetes.client.exceptions import ApiException

POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
ROLLOUT_GROUP, ROLLOUT_VERSION, ROLLOUT_PLURAL = "argoproj.io", "v1alpha1", "rollouts"
# Upper bound for any single wait on the cluster (pods Ready, rollout phases, ...).
WAIT_SECONDS = 60.0
T = TypeVar("T")


def wait_for(fetch: Callable[[], T], ok: Callable[[T], bool], what: str, timeout: float = WAIT_SECONDS) -> T:
    """Polls fetch() until ok(value) and returns that value; after ``timeout`` seconds fails naming ``what`` and the
    last value (or API error) seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = fetch()
            last = value
            if ok(value):
                return value
        except ApiException as exc:
            last = f"ApiException {exc.status}: {exc.reason}"
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}", pytrace=False)
        time.sleep(0.2)


def _ready(conditions: list[Any] | None, kind: str = "Ready") -> bool:
    return any(c.type == kind and c.status == "True" for c in conditions or [])


def test_missing_binaries_fail_with_build_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESTBIN", str(tmp_path / "empty-testbin"))
    with pytest.raises(ClusterError, match=r"make cluster-build") as info:
        LocalCluster(workdir=tmp_path / "c").start()
    assert info.value.component == "binaries"
    assert not (tmp_path / "c" / "state.json").exists()


def test_nodes_ready(cluster: LocalCluster, kube_api: client.ApiClient) -> None:
    nodes = client.CoreV1Api(kube_api).list_node().items
    assert len(nodes) == cluster.nodes
    for node in nodes:
        status = present(node.status)
        assert _ready(status.conditions), f"{present(node.metadata).name}: {status.conditions}"
        addresses = {a.type: a.address for a in present(status.addresses)}
        assert addresses.get("InternalIP") == "127.0.0.1"


def test_processes_listen_on_loopback(cluster: LocalCluster) -> None:
    """Every listening socket of the cluster's processes is on 127.0.0.1, except rollouts-controller's healthz and
    metrics ports: v1.8.4 hard-codes 0.0.0.0 (controller/controller.go listenAddr) and has no address flag."""
    listening = _listening_sockets()
    for name, pid in cluster.pids.items():
        addrs = {listening[inode] for inode in _socket_inodes(pid) if inode in listening}
        assert addrs, f"{name} listens on nothing"
        if name == "rollouts-controller":
            assert {host for host, _ in addrs} <= {"0.0.0.0", "::"}, addrs
            assert len({port for _, port in addrs}) == 2, addrs
        else:
            assert {host for host, _ in addrs} == {"127.0.0.1"}, f"{name}: {addrs}"


def test_deployment_pods_become_ready(kube_api: client.ApiClient, namespace: str) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                # kwok pulls nothing, so any image string will do.
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="example.invalid/web:1")]),
                ),
            ),
        ),
    )

    def ready_pods() -> list[client.V1Pod]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        return [
            p
            for p in pods
            if (status := present(p.status)).phase == "Running" and _ready(status.conditions) and status.pod_ip
        ]

    pods = wait_for(ready_pods, lambda ready: len(ready) == 2, "2 Running+Ready pods of Deployment web")
    for pod in pods:
        assert ipaddress.ip_address(present(present(pod.status).pod_ip)) in POD_CIDR
        assert present(present(pod.spec).node_name).startswith("kwok-node-")
    wait_for(
        lambda: present(apps.read_namespaced_deployment_status("web", namespace).status),
        lambda st: st.available_replicas == 2,
        "Deployment web availableReplicas == 2",
    )


def _rollout(namespace: str, env_value: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{ROLLOUT_GROUP}/{ROLLOUT_VERSION}",
        "kind": "Rollout",
        "metadata": {"name": "canary", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "canary"}},
            "template": {
                "metadata": {"labels": {"app": "canary"}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "example.invalid/app:1",
                            "env": [{"name": "VERSION", "value": env_value}],
                        }
                    ]
                },
            },
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}},
        },
    }


def test_rollout_canary_pauses_at_step(kube_api: client.ApiClient, namespace: str) -> None:
    crd = client.CustomObjectsApi(kube_api)
    apps = client.AppsV1Api(kube_api)

    def rollout() -> dict[str, Any]:
        return json_object(
            crd.get_namespaced_custom_object(ROLLOUT_GROUP, ROLLOUT_VERSION, namespace, ROLLOUT_PLURAL, "canary")
        )

    def status() -> dict[str, Any]:
        return rollout().get("status") or {}

    crd.create_namespaced_custom_object(
        ROLLOUT_GROUP, ROLLOUT_VERSION, namespace, ROLLOUT_PLURAL, _rollout(namespace, "1")
    )
    healthy = wait_for(
        status,
        lambda s: s.get("phase") == "Healthy" and s.get("availableReplicas") == 2,
        "Rollout canary to become Healthy with 2 available replicas",
    )
    stable_hash = healthy["stableRS"]
    assert healthy["currentPodHash"] == stable_hash

    # A new pod template starts the canary: step 0 sets weight 50, step 1 pauses indefinitely. Custom objects take
    # JSON merge patches, which replace lists whole, so the patch carries the complete template.
    crd.patch_namespaced_custom_object(
        ROLLOUT_GROUP,
        ROLLOUT_VERSION,
        namespace,
        ROLLOUT_PLURAL,
        "canary",
        {
            "spec": {"template": _rollout(namespace, "2")["spec"]["template"]},
        },
    )
    paused = wait_for(
        status,
        lambda s: s.get("phase") == "Paused" and bool(s.get("pauseConditions")),
        "Rollout canary to pause at its pause step",
    )
    assert paused["pauseConditions"][0]["reason"] == "CanaryPauseStep"
    assert paused["currentStepIndex"] == 1
    assert paused["stableRS"] == stable_hash
    canary_hash = paused["currentPodHash"]
    assert canary_hash != stable_hash

    # Two ReplicaSets, told apart by the pod-template-hash label; with 2 replicas at weight 50 each has one pod.
    def replica_sets() -> dict[str, int]:
        items = apps.list_namespaced_replica_set(namespace, label_selector="app=canary").items
        return {
            present(present(rs.metadata).labels)["rollouts-pod-template-hash"]: present(rs.status).ready_replicas or 0
            for rs in items
        }

    wait_for(
        replica_sets,
        lambda ready: ready == {stable_hash: 1, canary_hash: 1},
        f"stable RS {stable_hash} and canary RS {canary_hash} with one ready pod each",
    )


# ---------------------------------------------------------------------------------------------------------------------


def _listening_sockets() -> dict[str, tuple[str, int]]:
    """inode -> (address, port) of every listening TCP socket, from /proc/net/tcp{,6}."""
    out: dict[str, tuple[str, int]] = {}
    for table, family in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 6)):
        if not os.path.exists(table):
            continue
        with open(table) as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                if fields[3] != "0A":  # TCP_LISTEN
                    continue
                hex_addr, hex_port = fields[1].split(":")
                raw = bytes.fromhex(hex_addr)
                if family == 4:
                    addr = str(ipaddress.IPv4Address(raw[::-1]))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    v6 = ipaddress.IPv6Address(words)
                    addr = str(v6.ipv4_mapped or v6)
                out[fields[9]] = (addr, int(hex_port, 16))
    return out


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes
