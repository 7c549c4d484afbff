"""The end-to-end tier: a full local cluster (etcd, kube-apiserver, controller-manager, scheduler,
kwok fake nodes, the real Argo Rollouts controller), the CRD, and the operator as a child process.

Missing binaries fail the run with the command that builds them: these tests are never skipped.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import config

ROOT = Path(__file__).resolve().parents[2]
HACK = ROOT / "hack"
if str(HACK) not in sys.path:
    sys.path.insert(0, str(HACK))

from localcluster import ClusterError, LocalCluster, testbin, versions  # noqa: E402
from scenario import Kubectl, Operator  # noqa: E402


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("cluster"), rollouts=True, die_with_parent=True)
    try:
        local.start()
    except ClusterError as error:
        pytest.fail(f"the local cluster did not start (build it with `make cluster-build`): {error}")
    kubectl = str(testbin() / "bin" / f"kubectl-{versions()['KUBE_VERSION']}")
    try:
        subprocess.run(
            [kubectl, "--kubeconfig", str(local.kubeconfig), "apply", "--server-side", "-f",
             str(ROOT / "crds")],
            check=True, capture_output=True, timeout=60,
        )
        subprocess.run(
            [kubectl, "--kubeconfig", str(local.kubeconfig), "wait", "--for=condition=Established",
             "--timeout=60s", "-f", str(ROOT / "crds")],
            check=True, capture_output=True, timeout=90,
        )
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def kube(cluster: LocalCluster) -> Kubectl:
    return Kubectl(config.new_client_from_config(config_file=str(cluster.kubeconfig)))


@pytest.fixture(scope="session")
def operator(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    process = Operator(cluster.kubeconfig, tmp_path_factory.mktemp("operator")).start()
    try:
        yield process
    finally:
        process.stop()
        # The operator's log goes into the test report when something failed.
        print(process.logs()[-20000:])
