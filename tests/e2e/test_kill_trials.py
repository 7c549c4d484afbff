"""The operator SIGKILLed again and again while ten gates analyse and act: every restart resumes
from status, every revision ends with exactly one action, and no analysis restarts."""

from __future__ import annotations

import random
import time
from functools import partial
from pathlib import Path
from typing import Any

from e2e_helpers import ACTED, namespace_for, stable_is
from hack.canarylab import Behaviour
from hack.scenario import Kubectl, Operator, Traffic, gate_manifest, rollout_ref, start_rollout_canaries, wait_for

GATES = 10
KILLS = 30


def test_thirty_sigkills_during_analyses_and_actions_lose_nothing_and_act_once(
    kube: Kubectl, operator: Operator, tmp_path: Path, request: Any
) -> None:
    namespace = kube.namespace(namespace_for(request.node.name))
    names = [f"model-{i}" for i in range(GATES)]
    hashes = start_rollout_canaries(kube, namespace, names, replicas=2)
    stable = {n: hashes[n][0] for n in names}
    canary = {n: hashes[n][1] for n in names}
    bad = set(names[::2])  # half the canaries fail 20 % of requests
    traffic = Traffic(tmp_path / "traffic", "fraud", "rollouts_pod_template_hash", rate=12).start()
    versions = {stable[n]: Behaviour() for n in names}
    versions |= {canary[n]: Behaviour(error_rate=0.2) if n in bad else Behaviour() for n in names}
    traffic.serve(versions)
    rng = random.Random(20261123)
    kills = 0
    kills_while_analysing = 0
    started_at: dict[str, str] = {}
    try:
        for name in names:
            target = rollout_ref(name)
            gate = gate_manifest(
                namespace,
                name,
                target,
                traffic.url,
                app="fraud",
                interval="2s",
                min_duration="40s",
                # At 12 req/s a healthy canary is often shown safe only near here: then "no harm shown by
                # maxDuration" promotes it, the other way to a promotion.
                max_duration="4m",
                min_traffic=50,
            )
            kube.create_gate(gate)
        deadline = time.monotonic() + 540
        while kills < KILLS or not all(_phase(kube, namespace, n) in ACTED for n in names):
            assert time.monotonic() < deadline, {n: _phase(kube, namespace, n) for n in names}
            time.sleep(rng.uniform(1.0, 5.0))
            for name in names:
                status = (kube.gate(namespace, name) or {}).get("status") or {}
                if status.get("startedAt"):
                    started_at.setdefault(name, status["startedAt"])
                    assert status["startedAt"] == started_at[name], f"{name}: the analysis restarted"
            if kills < KILLS:
                analysing = any(_phase(kube, namespace, n) == "Analyzing" for n in names)
                operator.kill()
                kills += 1
                kills_while_analysing += analysing
                time.sleep(rng.uniform(0.0, 2.0))
                operator.start()
        for name in names:
            gate = kube.gate(namespace, name) or {}
            status = gate["status"]
            assert status["phase"] == ("RolledBack" if name in bad else "Promoted"), (name, _explain(status))
            assert status["decision"]["applied"] is True and status["revision"] == canary[name]
            assert status["startedAt"] == started_at[name]
            reasons = [e["reason"] for e in kube.events(namespace, name)]
            assert reasons.count("Rollback") + reasons.count("Promote") == 1, (name, reasons)
            assert reasons.count("AnalysisStarted") == 1, (name, reasons)
            rollout = _status(kube, namespace, name)
            if name in bad:
                assert rollout.get("abort") is True and rollout.get("stableRS") == stable[name]
            else:
                wait_for(f"{name} promoted", partial(stable_is, kube, namespace, name, canary[name]), 60)
        print(
            f"kill trials: {kills} SIGKILLs ({kills_while_analysing} while a gate was analysing), "
            f"{GATES} gates, 0 wrong or repeated actions"
        )
        assert kills >= KILLS and kills_while_analysing >= 10
    finally:
        operator.start() if operator.proc is None or operator.proc.poll() is not None else None
        traffic.stop()


def _status(kube: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    return dict(kube.rollout(namespace, name).get("status") or {})


def _explain(status: dict[str, Any]) -> dict[str, Any]:
    """The decision and each metric's verdict and message: enough to tell why a gate decided."""
    return {
        "decision": status.get("decision"),
        "metrics": [(m.get("name"), m.get("verdict"), m.get("message")) for m in status.get("metrics") or []],
        "looks": status.get("looks"),
    }


def _phase(kube: Kubectl, namespace: str, name: str) -> str:
    return str(((kube.gate(namespace, name) or {}).get("status") or {}).get("phase"))
