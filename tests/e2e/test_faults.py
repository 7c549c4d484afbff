"""Faults during real analyses: a fault-injecting proxy in front of the real Prometheus (down, slow,
5xx, malformed JSON, Inf values, empty answers, a restart that loses the data) and the kube-apiserver
restarted mid-analysis. Never a promotion while blind, no wrong or repeated action, and the analyses
carry on when the parts come back."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from e2e_helpers import DECIDED
from hack.localcluster import LocalCluster
from hack.promlab import PrometheusServer
from hack.promproxy import DROP, Answer, PrometheusProxy, Request
from hack.scenario import SCRAPE_INTERVAL, Kubectl, Operator, gate_manifest, rollout_ref, wait_for

TIMEOUT_SECONDS = 5  # the gates' prometheus.timeout
FAULT_SECONDS = 12.0  # each fault lasts six 2 s looks: more than errorLimit
ERROR_LIMIT = 3
# What the gate's status must say during each fault (lower case).
FAULTS: dict[str, tuple[str, ...]] = {
    "refuse": ("cannot reach prometheus",),
    "slow": ("did not answer",),
    "5xx": ("http 503",),
    "malformed": ("malformed",),
    "inf": ("inf",),
    "empty": ("not enough traffic", "no data", "no metric has enough data"),
}


class FaultProxy(PrometheusProxy):
    """Answers with the fault set in `mode` ("pass" forwards)."""

    def __init__(self, upstream: str) -> None:
        self.mode = "pass"
        self.served: dict[str, int] = {}
        super().__init__(upstream, timeout=TIMEOUT_SECONDS)

    def answer(self, request: Request) -> Answer | str | None:
        mode = self.mode
        self.served[mode] = self.served.get(mode, 0) + 1
        if mode == "refuse":
            return DROP
        if mode == "slow":
            time.sleep(TIMEOUT_SECONDS + 1.5)  # bounded: the client has given up by then
            return Answer(503, b'{"status":"error","error":"too late"}')
        if mode == "5xx":
            return Answer(503, b'{"status":"error","errorType":"unavailable","error":"injected"}')
        if mode == "malformed":
            return Answer(200, b'{"status": "success", "data": {"resultType": "matr')
        if mode == "empty":
            return Answer(200, b'{"status":"success","data":{"resultType":"matrix","result":[]}}')
        forwarded = self.forward(request)
        if mode == "inf" and forwarded.status == 200:
            document = json.loads(forwarded.body)
            for series in document.get("data", {}).get("result", []):
                series["values"] = [[point[0], "+Inf"] for point in series.get("values", [])]
            return Answer(200, json.dumps(document).encode())
        return forwarded


@dataclass
class Watch:
    """Samples both gates and Rollouts every 0.5 s in the background, tagged with the fault then active."""

    kube: Kubectl
    namespace: str
    names: list[str]
    proxy: FaultProxy
    samples: list[dict[str, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            for name in self.names:
                try:
                    gate = self.kube.gate(self.namespace, name) or {}
                    rollout = self.kube.rollout(self.namespace, name)
                except Exception:  # a sample lost to an API hiccup is not a finding
                    continue
                status = gate.get("status") or {}
                self.samples.append(
                    {
                        "mode": self.proxy.mode,
                        "name": name,
                        "phase": status.get("phase"),
                        "message": str(status.get("message") or ""),
                        "decision": (status.get("decision") or {}).get("action"),
                        "paused": bool((rollout.get("spec") or {}).get("paused")),
                        "stableRS": (rollout.get("status") or {}).get("stableRS"),
                        "abort": bool((rollout.get("status") or {}).get("abort")),
                    }
                )

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def _gate(namespace: str, name: str, prometheus: str) -> dict[str, Any]:
    target = rollout_ref(name)
    gate = gate_manifest(namespace, name, target, prometheus, app="fraud", min_duration="20s", max_duration="10m")
    gate["spec"]["analysis"]["errorLimit"] = ERROR_LIMIT
    return gate


def _reasons(kube: Kubectl, namespace: str, name: str) -> list[str]:
    return [event["reason"] for event in kube.events(namespace, name)]


def _decided_status(kube: Kubectl, namespace: str, name: str) -> dict[str, Any] | None:
    """The gate's status once it is decided and its decision applied."""
    return (
        s
        if (s := (kube.gate(namespace, name) or {}).get("status") or {}).get("phase") in DECIDED
        and (s.get("decision") or {}).get("applied")
        else None
    )


def _started_once_analysing(kube: Kubectl, namespace: str, name: str) -> str | None:
    """The gate's startedAt once it is Analyzing and has looked at least twice."""
    started: str | None = (
        s.get("startedAt")
        if (s := (kube.gate(namespace, name) or {}).get("status") or {}).get("phase") == "Analyzing"
        and s.get("looks", 0) >= 2
        else None
    )
    return started


def _assert_one_correct_action_each(
    kube: Kubectl, namespace: str, hashes: dict[str, tuple[str, str]], since: datetime
) -> dict[str, float]:
    """Each gate's one correct action; returns the seconds from `since` to each decision."""
    after: dict[str, float] = {}
    for name, phase, action in (("healthy", "Promoted", "Promote"), ("bad", "RolledBack", "Rollback")):
        status = wait_for(f"gate {name} decided and applied", partial(_decided_status, kube, namespace, name), 300)
        assert status["phase"] == phase, status
        assert status["revision"] == hashes[name][1]
        reasons = _reasons(kube, namespace, name)
        assert reasons.count(action) == 1 and reasons.count("AnalysisStarted") == 1, reasons
        decided_at = datetime.fromisoformat(status["decision"]["at"].replace("Z", "+00:00"))
        after[name] = (decided_at - since).total_seconds()
    return after


def test_prometheus_faults_never_promote_and_analyses_resume(
    kube: Kubectl, operator: Operator, two_canaries: Any
) -> None:
    namespace, hashes, traffic = two_canaries
    proxy = FaultProxy(traffic.url)
    proxy.mode = "refuse"  # blind from the first look
    for name in hashes:
        kube.create_gate(_gate(namespace, name, proxy.url))
    watch = Watch(kube, namespace, list(hashes), proxy)
    try:
        for mode in FAULTS:
            proxy.mode = mode
            time.sleep(FAULT_SECONDS)
        # A Prometheus restart that loses everything scraped so far: a new server, empty TSDB.
        assert traffic.prometheus is not None
        traffic.prometheus.stop()
        proxy.mode = "restart"
        fresh = PrometheusServer(
            file_sd=traffic.targets_file, scrape_interval=SCRAPE_INTERVAL, max_lifetime=900
        ).start()
        traffic.prometheus = fresh
        proxy.upstream = fresh.url
        proxy.mode = "pass"
        recovered_at, recovered = len(watch.samples), datetime.now(UTC)
        decided_after = _assert_one_correct_action_each(kube, namespace, hashes, recovered)
    finally:
        watch.close()
        proxy.stop()
    blind = watch.samples[:recovered_at]
    assert blind, "no samples while Prometheus was faulty"
    for sample in blind:
        assert sample["phase"] not in ("Promoted", "Passed", "RolledBack", "Failed"), sample
        assert sample["decision"] in (None, "Continue"), sample
        assert sample["stableRS"] == hashes[sample["name"]][0] and not sample["abort"], sample
    for mode, phrases in FAULTS.items():
        assert proxy.served.get(mode, 0) > 0, f"the proxy never served {mode}"
        messages = [s["message"].lower() for s in blind if s["mode"] == mode]
        assert any(p in m for m in messages for p in phrases), (mode, sorted(set(messages))[:5])
    # errorLimit consecutive errors paused both canaries (onError: Pause), and the gate undid its pause.
    for name in hashes:
        assert any(s["paused"] and s["phase"] == "Paused" for s in blind if s["name"] == name), name
    assert not (kube.rollout(namespace, "bad").get("spec") or {}).get("paused")
    wait_for(
        "the healthy canary to become stable",
        lambda: (kube.rollout(namespace, "healthy").get("status") or {}).get("stableRS") == hashes["healthy"][1],
        90,
    )
    assert operator.proc is not None and operator.proc.poll() is None, "the operator exited"
    print(
        f"prometheus faults: {len(FAULTS)} kinds + a restart; requests per fault {proxy.served}; decided "
        + ", ".join(f"{name} {seconds:.0f}s" for name, seconds in decided_after.items())
        + " after Prometheus came back"
    )


def test_apiserver_restart_mid_analysis_loses_nothing(
    cluster: LocalCluster, kube: Kubectl, operator: Operator, two_canaries: Any
) -> None:
    namespace, hashes, traffic = two_canaries
    for name in hashes:
        gate = _gate(namespace, name, traffic.url)
        gate["spec"]["analysis"]["minDuration"] = "40s"
        kube.create_gate(gate)
    started = {
        name: wait_for(f"gate {name} analysing", partial(_started_once_analysing, kube, namespace, name), 60)
        for name in hashes
    }
    down_at = time.monotonic()
    ready_after = cluster.restart_apiserver(downtime=5.0)
    back, down_for = datetime.now(UTC), time.monotonic() - down_at
    decided_after = _assert_one_correct_action_each(kube, namespace, hashes, back)
    print(
        f"apiserver restart: down {down_for:.1f}s in all, /readyz {ready_after:.1f}s after "
        "launch; decided " + ", ".join(f"{n} {s:.0f}s" for n, s in decided_after.items()) + " after it was back"
    )
    for name in hashes:
        status = (kube.gate(namespace, name) or {})["status"]
        assert status["startedAt"] == started[name], "the analysis restarted instead of resuming"
    assert operator.proc is not None and operator.proc.poll() is None, "the operator exited"
    assert "retrying in" in operator.logs(), "no API failure was seen: the restart did not hit the operator"
