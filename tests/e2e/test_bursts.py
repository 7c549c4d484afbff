"""Error bursts on one pod: a healthy canary whose pod fails 15 % of its requests for a while is promoted,
and a canary with twice the baseline's error rate under the same bursts is still rolled back.

Each version runs as one model server (its one pod) under real load, scraped by a real Prometheus, with
the real Argo Rollouts controller acting on the operator's decision. The bursts are shown to have
reached Prometheus, so the verdicts are on the bursty data, not on a burst that never happened."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import pytest
from e2e_helpers import LABEL, namespace_for
from hack.canarylab import Behaviour
from hack.scenario import Kubectl, Operator, Traffic, gate_manifest, rollout_ref, start_rollout_canaries, wait_for

INTERVAL = 10  # seconds between looks: a 20 s burst spans two or three looks
CANARY_BURST = (35.0, 20.0)  # (start, seconds) after the model servers start: inside the analysis
BASELINE_BURST = (95.0, 20.0)
MAX_DURATION = "4m"


def _gate(namespace: str, name: str, prometheus: str) -> dict[str, Any]:
    target = rollout_ref(name)
    return gate_manifest(
        namespace,
        f"{name}-gate",
        target,
        prometheus,
        app="fraud",
        interval=f"{INTERVAL}s",
        min_duration="60s",
        max_duration=MAX_DURATION,
    )


def _decided(kube: Kubectl, namespace: str, gate: str) -> dict[str, Any] | None:
    status = ((kube.gate(namespace, gate) or {}).get("status")) or {}
    if status.get("phase") not in (None, "Pending", "Analyzing") and (status.get("decision") or {}).get("applied"):
        return status
    return None


def _peak_error_rate(traffic: Traffic, pod_hash: str) -> float:
    """The highest error rate Prometheus saw for this version over 10 s windows, since the servers started."""
    assert traffic.prometheus is not None
    selector = f'app="fraud",{LABEL}="{pod_hash}"'
    errors = f'sum(rate(http_requests_total{{{selector},code="500"}}[10s]))'
    ratio = f"{errors} / sum(rate(http_requests_total{{{selector}}}[10s]))"
    value = traffic.prometheus.query_value(f"max_over_time(({ratio})[6m:2s])")
    return float(value or 0.0)


def test_bursts_on_one_pod_do_not_roll_back_a_healthy_canary_and_a_regression_is_still_caught(
    kube: Kubectl, operator: Operator, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    namespace = kube.namespace(namespace_for(request.node.name))
    hashes = start_rollout_canaries(kube, namespace, ("steady", "regressed"))
    traffic = Traffic(tmp_path / "traffic", "fraud", LABEL, rate=60.0, duration=420.0).start()
    try:
        canary_bursts = Behaviour(bursts=(CANARY_BURST,))
        baseline_bursts = Behaviour(bursts=(BASELINE_BURST,))
        traffic.serve(
            {
                hashes["steady"][0]: baseline_bursts,
                hashes["steady"][1]: canary_bursts,
                hashes["regressed"][0]: baseline_bursts,
                hashes["regressed"][1]: Behaviour(error_rate=0.05, bursts=(CANARY_BURST,)),
            }
        )
        for name in hashes:
            kube.create_gate(_gate(namespace, name, traffic.url))
        started = time.monotonic()
        outcomes = wait_for(
            "both gates' decisions",
            lambda: (
                # Read again once all() saw every gate decided: a decided gate stays decided, so none is None.
                cast("dict[str, dict[str, Any]]", {name: _decided(kube, namespace, f"{name}-gate") for name in hashes})
                if all(_decided(kube, namespace, f"{name}-gate") for name in hashes)
                else None
            ),
            330,
        )
        elapsed = time.monotonic() - started
        steady, regressed = outcomes["steady"], outcomes["regressed"]
        # The bursts were real and reached the operator's Prometheus: 15 % errors against 1 % outside them.
        for pod_hash in (hashes["steady"][1], hashes["steady"][0], hashes["regressed"][1]):
            assert _peak_error_rate(traffic, pod_hash) >= 0.08, pod_hash
        first_look_after_burst = (CANARY_BURST[0] + CANARY_BURST[1]) / INTERVAL
        assert steady["phase"] == "Promoted", steady
        assert steady["decision"]["operation"] == "Promote" and steady["looks"] > first_look_after_burst
        assert regressed["phase"] == "RolledBack", regressed
        failed = {m["name"] for m in regressed["metrics"] if m["verdict"] == "Fail"}
        assert "error-rate" in failed, regressed["metrics"]
        rollout = kube.rollout(namespace, "regressed")
        assert (rollout.get("status") or {}).get("abort") is True
        wait_for(
            "the steady Rollout to finish with its canary as stable",
            lambda: (kube.rollout(namespace, "steady").get("status") or {}).get("stableRS") == hashes["steady"][1],
            90,
        )
        print(
            f"decided within {elapsed:.0f}s: steady {steady['decision']['reason']}; regressed "
            f"{regressed['decision']['reason']}"
        )
    finally:
        traffic.stop()
