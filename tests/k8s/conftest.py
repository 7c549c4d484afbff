"""Fixtures that run a real local Kubernetes cluster (hack/localcluster.py): etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok fake nodes and the Argo Rollouts controller, all on 127.0.0.1.

``cluster`` (session scope) starts one cluster for the whole run and stops it at the end; its processes also get
SIGTERM from the kernel if pytest itself dies. Missing binaries fail the run with a pointer to
``make cluster-build``: these tests are never skipped.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

HACK_DIR = Path(__file__).resolve().parents[2] / "hack"
if str(HACK_DIR) not in sys.path:
    sys.path.insert(0, str(HACK_DIR))

from localcluster import ClusterError, LocalCluster  # noqa: E402


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(workdir=tmp_path_factory.mktemp("cluster"), die_with_parent=True)
    try:
        c.start()
    except ClusterError as exc:
        pytest.fail(f"the local cluster did not start:\n{exc}", pytrace=False)
    try:
        yield c
    finally:
        c.stop()  # raises if a process outlived it


@pytest.fixture(scope="session")
def kube_api(cluster: LocalCluster) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace, usable once the controller-manager created its ``default`` ServiceAccount (until then the
    ServiceAccount admission plugin rejects pods); deleted afterwards without waiting."""
    core = client.CoreV1Api(kube_api)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 60
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                pytest.fail(f"no ServiceAccount {name}/default after 60 s: {exc.status} {exc.reason}", pytrace=False)
        time.sleep(0.1)
    try:
        yield name
    finally:
        core.delete_namespace(name)
