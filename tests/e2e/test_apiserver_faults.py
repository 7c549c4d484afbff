"""API server faults on the operator's own API path, against the real cluster: an operator that reaches the
kube-apiserver through a fault-injecting HTTPS proxy (hack/apiproxy.py) gets real 409 Conflict answers to its
gate status patches and to its Rollout patches (the abort and the promote), and 503s to every 2nd read of a gate,
while it analyses a healthy canary and one failing 6 % of requests. Each is retried with backoff: one correct
action per canary, one Event each, and the operator keeps running."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import DECIDED
from hack.apiproxy import ApiFaultProxy
from hack.localcluster import LocalCluster
from hack.scenario import Kubectl, Operator, gate_manifest, rollout_ref, wait_for

CONFLICTS = 2  # K: 409s on the first K status patches of each gate, and on the first K patches of each Rollout
AFTER_ACTION = 1  # 409s on each gate's status patches right after its Rollout patch went through
UNAVAILABLE_EVERY = 2  # every 2nd GET of a gate answers 503 (a step reads its gate only when the watch lags) ...
UNAVAILABLE_SECONDS = 60.0  # ... for the first minute of the analyses


@pytest.fixture
def shared_operator_aside(operator: Operator) -> Iterator[None]:
    """The shared cluster-wide operator steps aside, so that only the proxied one acts on this test's gates."""
    operator.stop()
    try:
        yield
    finally:
        operator.start()
        operator.wait_ready()


def _reasons(kube: Kubectl, namespace: str, name: str) -> list[str]:
    return [event["reason"] for event in kube.events(namespace, name)]


def _decided(kube: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    status = (kube.gate(namespace, name) or {}).get("status") or {}
    if status.get("phase") in DECIDED and (status.get("decision") or {}).get("applied"):
        return dict(status)
    return None


def test_conflicts_and_unavailable_answers_are_retried_and_act_once(
    cluster: LocalCluster, kube: Kubectl, shared_operator_aside: None, two_canaries: Any, tmp_path: Path
) -> None:
    namespace, hashes, traffic = two_canaries
    began = time.monotonic()
    proxy = ApiFaultProxy(cluster.server, cluster.workdir / "pki")
    for name in hashes:
        proxy.conflicts[("gates", name)] = CONFLICTS
        proxy.conflicts[("rollouts", name)] = CONFLICTS
    proxy.unavailable_every = UNAVAILABLE_EVERY
    proxy.after_target_patch = AFTER_ACTION
    workdir = tmp_path / "proxied"
    workdir.mkdir()
    proxied = Operator(
        proxy.write_kubeconfig(workdir / "proxied.kubeconfig"), workdir, namespaces=[namespace], name="proxied"
    )
    try:
        proxied.start()
        proxied.wait_ready(60)
        for name in hashes:
            target = rollout_ref(name)
            kube.create_gate(
                gate_manifest(
                    namespace,
                    name,
                    target,
                    traffic.url,
                    app="fraud",
                    interval="2s",
                    min_duration="20s",
                    max_duration="6m",
                )
            )
        calm = threading.Timer(UNAVAILABLE_SECONDS, lambda: setattr(proxy, "unavailable_every", 0))
        calm.daemon = True
        calm.start()
        statuses = {
            name: wait_for(f"gate {name} decided and applied", partial(_decided, kube, namespace, name), 240)
            for name in hashes
        }
        # Both actions took effect on the real Rollouts.
        wait_for(
            "the bad Rollout aborted", lambda: (kube.rollout(namespace, "bad").get("status") or {}).get("abort"), 90
        )
        wait_for(
            "the healthy canary to become stable",
            lambda: (kube.rollout(namespace, "healthy").get("status") or {}).get("stableRS") == hashes["healthy"][1],
            120,
        )
        time.sleep(3 * 2)  # a few more intervals in which a repeated action would show
        assert proxied.proc is not None and proxied.proc.poll() is None, "the proxied operator exited"
    finally:
        proxied.stop()
        proxy.unavailable_every = 0
        proxy.stop()
        print(proxied.logs()[-6000:])

    for name, phase, action in (("healthy", "Promoted", "Promote"), ("bad", "RolledBack", "Rollback")):
        status = statuses[name]
        assert status["phase"] == phase, status
        assert status["revision"] == hashes[name][1], status
        reasons = _reasons(kube, namespace, name)
        assert reasons.count(action) == 1 and reasons.count("AnalysisStarted") == 1, reasons
        wrong = {"Promote", "Rollback", "Inconclusive"} - {action}
        assert not wrong & set(reasons), reasons
        assert (kube.gate(namespace, name) or {})["status"]["phase"] == phase
    # The healthy Rollout was never aborted; the bad one never promoted.
    assert not (kube.rollout(namespace, "healthy").get("status") or {}).get("abort")
    assert (kube.rollout(namespace, "bad").get("status") or {}).get("stableRS") == hashes["bad"][0]

    # The faults really reached the operator.
    gate_conflicts, rollout_conflicts = proxy.count(409, "gates"), proxy.count(409, "rollouts")
    unavailable = proxy.count(503, "gate-get")
    assert gate_conflicts >= len(hashes) * (CONFLICTS + AFTER_ACTION), proxy.injected
    assert rollout_conflicts >= len(hashes) * CONFLICTS, proxy.injected
    assert unavailable >= 2, proxy.injected
    # A promote is not idempotent: it went through exactly once. An abort may be sent again (it is idempotent).
    promotes = [p for p in proxy.patched if p[1] == "healthy"]
    aborts = [p for p in proxy.patched if p[1] == "bad"]
    assert len(promotes) == 1, promotes
    assert 1 <= len(aborts) <= 1 + AFTER_ACTION, aborts

    logs = proxied.logs()
    # No traceback through the operator's own code (a log record starts with its timestamp).
    blocks = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", logs)
    ours = [block for block in blocks if "Traceback" in block and "robustness_gate/" in block]
    assert not ours, ours
    assert "step failed" not in logs, logs[-6000:]
    retries = len(re.findall(r"retrying in", logs))
    assert retries >= len(hashes) * (CONFLICTS + AFTER_ACTION) + CONFLICTS, retries

    # From the first 409 on a Rollout patch to the patch going through, and to the status that records it.
    recovery: dict[str, tuple[float, float]] = {}
    for name in hashes:
        first = proxy.first(409, "rollouts", name)
        assert first is not None
        sent = min(at for at, patched, _, _ in proxy.patched if patched == name)
        recorded = min(at for at, written in proxy.status_writes if written == name and at > sent)
        recovery[name] = (sent - first.at, recorded - first.at)
    decided = {name: datetime.fromisoformat(s["decision"]["at"].replace("Z", "+00:00")) for name, s in statuses.items()}
    print(
        f"apiserver 409/503: {gate_conflicts} 409s on gate status patches, {rollout_conflicts} 409s on Rollout "
        f"patches, {unavailable} 503s on gate reads ({sum(proxy.gate_gets.values())} gate reads); "
        f"{retries} 'retrying in' warnings; 0 wrong or repeated actions (1 Rollback, 1 Promote; "
        f"{len(aborts)} abort patch(es) sent, 1 promote patch); first Rollout 409 to action sent / recorded: "
        + ", ".join(f"{n} {sent:.1f}s / {recorded:.1f}s" for n, (sent, recorded) in recovery.items())
        + f"; decided at {', '.join(f'{n} {d:%H:%M:%S}' for n, d in decided.items())}; "
        f"{time.monotonic() - began:.0f}s in all; operator still running; {len(proxy.errors)} relays cut short"
    )
