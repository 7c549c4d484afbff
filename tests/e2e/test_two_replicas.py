"""Two operator replicas with leader election: only the Lease holder acts; when it is SIGKILLed the
other takes over, resumes the analysis from status, and the revision gets exactly one action."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import namespace_for
from hack.canarylab import Behaviour
from hack.scenario import Kubectl, Operator, Traffic, gate_manifest, rollout_ref, start_rollout_canary, wait_for
from kubernetes import client

LEASE_SECONDS = 10


@pytest.fixture
def replicas(
    kube: Kubectl, operator: Operator, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[str, list[Operator]]]:
    """The shared cluster-wide operator steps aside; two leader-electing replicas watch one namespace."""
    namespace = kube.namespace(namespace_for(request.node.name))
    operator.stop()
    args = ["--leader-elect", "--lease-namespace", namespace, "--lease-duration", str(LEASE_SECONDS)]
    pair = [
        Operator(operator.kubeconfig, tmp_path, [namespace], extra_args=args, name=f"replica-{i}").start()
        for i in (0, 1)
    ]
    try:
        for replica in pair:
            replica.wait_ready()
        yield namespace, pair
    finally:
        for replica in pair:
            replica.stop()
            print(replica.logs()[-5000:])
        operator.start()
        operator.wait_ready()


def holder(kube: Kubectl, namespace: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(kube.core.api_client).read_namespaced_lease("robustness-gate", namespace)
    except client.ApiException:
        return None
    return str(lease.spec.holder_identity) if lease.spec and lease.spec.holder_identity else None


def test_only_the_leader_acts_and_the_standby_takes_over_after_a_sigkill(
    kube: Kubectl, replicas: tuple[str, list[Operator]], tmp_path: Path
) -> None:
    namespace, pair = replicas
    stable, canary = start_rollout_canary(kube, namespace, "fraud")
    traffic = Traffic.pair(tmp_path / "traffic", "fraud", "rollouts_pod_template_hash", stable, canary, Behaviour())
    try:
        target = rollout_ref("fraud")
        kube.create_gate(gate_manifest(namespace, "fraud-gate", target, traffic.url, app="fraud", min_duration="60s"))
        leader_id = wait_for("a Lease holder", lambda: holder(kube, namespace), 30)
        by_pid = {f"-{replica.proc.pid}": replica for replica in pair if replica.proc is not None}
        leader = next(r for suffix, r in by_pid.items() if leader_id.endswith(suffix))
        standby = next(r for r in pair if r is not leader)

        def looks() -> dict[str, Any] | None:
            status = (kube.gate(namespace, "fraud-gate") or {}).get("status") or {}
            return status if status.get("looks", 0) >= 3 else None

        before = wait_for("a few looks by the leader", looks, 60)
        assert "analysing canary" not in standby.logs()  # the standby has not stepped the gate
        killed = time.monotonic()
        leader.kill()
        new_holder = wait_for(
            "the standby to take the Lease", lambda: h if (h := holder(kube, namespace)) != leader_id else None, 60
        )
        failover = time.monotonic() - killed
        assert standby.proc is not None and new_holder.endswith(f"-{standby.proc.pid}")
        last_look = before.get("lastLook")
        wait_for(
            "a look by the new leader",
            lambda: ((kube.gate(namespace, "fraud-gate") or {}).get("status") or {}).get("lastLook") != last_look,
            60,
        )
        resumed = time.monotonic() - killed
        status = wait_for(
            "the promotion",
            lambda: (
                s if (s := (kube.gate(namespace, "fraud-gate") or {})["status"]).get("phase") == "Promoted" else None
            ),
            200,
        )
        assert status["startedAt"] == before["startedAt"]  # resumed, not restarted
        reasons = [e["reason"] for e in kube.events(namespace, "fraud-gate")]
        assert reasons.count("Promote") == 1 and reasons.count("AnalysisStarted") == 1, reasons
        print(
            f"failover: Lease taken {failover:.1f}s after SIGKILL, next look {resumed:.1f}s after "
            f"(lease {LEASE_SECONDS}s) at {dt.datetime.now(dt.UTC).isoformat()}"
        )
        assert failover <= LEASE_SECONDS + 5
    finally:
        traffic.stop()
