"""The end-to-end tier: the shared local cluster (tests/conftest.py) with the real Argo Rollouts
controller, the CRD, and the operator as a child process that tests may kill and restart."""

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

from localcluster import LocalCluster, testbin, versions  # noqa: E402
from scenario import Kubectl, Operator  # noqa: E402


@pytest.fixture(scope="session")
def crd(cluster: LocalCluster) -> None:
    """The RobustnessGate CRD, applied as a user would (kubectl server-side apply) and Established."""
    kubectl = str(testbin() / "bin" / f"kubectl-{versions()['KUBE_VERSION']}")
    for args in (["apply", "--server-side"], ["wait", "--for=condition=Established", "--timeout=60s"]):
        subprocess.run(
            [kubectl, "--kubeconfig", str(cluster.kubeconfig), *args, "-f", str(ROOT / "crds")],
            check=True, capture_output=True, timeout=90,
        )


@pytest.fixture(scope="session")
def kube(cluster: LocalCluster, crd: None) -> Kubectl:
    return Kubectl(config.new_client_from_config(config_file=str(cluster.kubeconfig)))


@pytest.fixture(scope="session")
def operator(cluster: LocalCluster, crd: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    process = Operator(cluster.kubeconfig, tmp_path_factory.mktemp("operator")).start()
    process.wait_ready()
    try:
        yield process
    finally:
        process.stop()
        # The operator's log goes into the test report when something failed.
        print(process.logs()[-20000:])
