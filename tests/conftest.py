"""The local Kubernetes cluster shared by the k8s and e2e tiers (hack/localcluster/): etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, kwok fake nodes and the Argo Rollouts
controller, all on 127.0.0.1.

``cluster`` (session scope) starts one cluster the first time a test asks for it and stops it at the
end; its processes also get SIGTERM from the kernel if pytest itself dies. Missing binaries fail the
run with a pointer to ``make cluster-build``: these tests are never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hack.localcluster import ClusterError, LocalCluster
from kubernetes import client, config


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
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield api
    finally:
        api.close()
