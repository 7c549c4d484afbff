"""The end-to-end tier: the shared local cluster (tests/conftest.py) with the real Argo Rollouts
controller, the CRD, and the operator as a child process that tests may kill and restart."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import LABEL, namespace_for
from hack.canarylab import Behaviour
from hack.localcluster import LocalCluster, testbin, versions
from hack.scenario import Kubectl, Operator, OwnOperators, Traffic, start_rollout_canaries
from kubernetes import config

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def crd(cluster: LocalCluster) -> None:
    """The RobustnessGate CRD, applied as a user would (kubectl server-side apply) and Established."""
    kubectl = str(testbin() / "bin" / f"kubectl-{versions()['KUBE_VERSION']}")
    for args in (["apply", "--server-side"], ["wait", "--for=condition=Established", "--timeout=60s"]):
        subprocess.run(
            [kubectl, "--kubeconfig", str(cluster.kubeconfig), *args, "-f", str(ROOT / "crds")],
            check=True,
            capture_output=True,
            timeout=90,
        )


@pytest.fixture(scope="session")
def kube(cluster: LocalCluster, crd: None) -> Kubectl:
    return Kubectl(config.new_client_from_config(config_file=str(cluster.kubeconfig)))  # type: ignore[no-untyped-call]


class Inbox:
    """A loopback webhook receiver: the decision notifications the operator posted."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                inbox.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/decisions"

    def texts(self) -> list[str]:
        return [str(body.get("text")) for body in self.bodies]


@pytest.fixture(scope="session")
def inbox() -> Iterator[Inbox]:
    receiver = Inbox()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


@pytest.fixture(scope="session")
def operator(
    cluster: LocalCluster, crd: None, inbox: Inbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    process = Operator(
        cluster.kubeconfig, tmp_path_factory.mktemp("operator"), env={"RG_NOTIFY_WEBHOOK_URL": inbox.url}
    ).start()
    process.wait_ready()
    try:
        yield process
    finally:
        process.stop()
        # The operator's log goes into the test report when something failed.
        print(process.logs()[-20000:])


@pytest.fixture
def own_operators(kube: Kubectl, operator: Operator, inbox: Inbox) -> Iterator[OwnOperators]:
    """The shared cluster-wide operator steps aside while this test runs its own (namespaced) ones."""
    own = OwnOperators(operator.kubeconfig, {"RG_NOTIFY_WEBHOOK_URL": inbox.url})
    operator.stop()
    try:
        yield own
    finally:
        for process in own.started:
            process.stop()
            print(process.logs()[-5000:])
        operator.start()
        operator.wait_ready()


@pytest.fixture
def two_canaries(kube: Kubectl, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Two Rollouts paused on their canaries, one healthy and one failing 6 % of requests, under load."""
    namespace = kube.namespace(namespace_for(request.node.name))
    hashes = start_rollout_canaries(kube, namespace, ("healthy", "bad"))
    traffic = Traffic(tmp_path / "traffic", "fraud", LABEL).start()
    try:
        traffic.serve(
            {
                hashes["healthy"][0]: Behaviour(),
                hashes["healthy"][1]: Behaviour(),
                hashes["bad"][0]: Behaviour(),
                hashes["bad"][1]: Behaviour(error_rate=0.06),
            }
        )
        yield namespace, hashes, traffic
    finally:
        traffic.stop()
