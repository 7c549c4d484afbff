"""`make demo`: the operator on a local cluster promotes a good canary and rolls back two bad ones.

1. starts a local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler,
   kwok fake nodes, the Argo Rollouts controller) on 127.0.0.1, installs the CRD, starts the operator;
2. deploys the fraud-scoring model v1 as an Argo Rollout, with model servers standing in for its
   pods, a Prometheus scraping them and bounded load, and applies examples/demo-gate.yaml;
3. releases v2 (more errors, slower, drifted scores): the operator aborts the Rollout;
4. releases v3 (healthy): the operator promotes it and the Rollout makes it stable;
5. releases v4, whose client stops sending one input feature: its null rate jumps, and the operator aborts
   the Rollout with a reason that names the feature.

Everything listens on 127.0.0.1 and stops at the end (or on Ctrl-C).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from kubernetes import config
from rich.console import Console

from hack.canarylab import Behaviour
from hack.localcluster import LocalCluster, testbin, versions
from hack.procs import REPO_ROOT as ROOT
from hack.scenario import (
    ROLLOUTS,
    Kubectl,
    Operator,
    Traffic,
    pod_template,
    rollout_manifest,
    wait_for,
)
from robustness_gate.outcomes import DECIDED_PHASES

GATE_FILE = ROOT / "examples" / "demo-gate.yaml"
NAMESPACE, NAME, APP, LABEL = "demo", "fraud-model", "fraud", "rollouts_pod_template_hash"
STABLE = Behaviour(error_rate=0.005, latency_median=0.03, score_mu=-1.0)
RELEASES = {
    "v2": (
        "bad canary: 4x errors, 2.5x slower, drifted scores",
        Behaviour(error_rate=0.02, latency_median=0.075, score_mu=-0.3),
    ),
    "v3": (
        "good canary: behaves like v1",
        Behaviour(error_rate=0.005, latency_median=0.03, score_mu=-1.0, null_rate=0.01),
    ),
    "v4": (
        "its client stops sending merchant_id: that feature's null rate jumps from 1% to 30%",
        Behaviour(
            error_rate=0.005,
            latency_median=0.03,
            score_mu=-1.0,
            null_rate=0.01,
            feature_null_rates=(("merchant_id", 0.3),),
        ),
    ),
}


def main() -> int:
    # A wide console when recorded to a file, so the verdict tables are not re-wrapped.
    console = Console() if sys.stdout.isatty() else Console(width=150)
    console.rule("[bold]robustness-gate demo")
    began = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="rg-demo-"))
    cluster = LocalCluster(workdir / "cluster", rollouts=True, die_with_parent=True)
    operator: Operator | None = None
    traffic: Traffic | None = None
    outcomes: dict[str, str] = {}
    try:
        with console.status(
            "starting the local cluster (etcd, apiserver, controller-manager, scheduler, kwok, Argo Rollouts)..."
        ):
            cluster.start()
        console.print(
            f"[green]✓[/] cluster up in {cluster.timings.get('total', 0):.1f}s at {cluster.server}"
            f"  (KUBECONFIG={cluster.kubeconfig})",
            highlight=False,
        )
        kubectl = str(testbin() / "bin" / f"kubectl-{versions()['KUBE_VERSION']}")
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
        subprocess.run(
            [kubectl, "apply", "--server-side", "-f", str(ROOT / "crds")],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [kubectl, "wait", "--for=condition=Established", "-f", str(ROOT / "crds"), "--timeout=60s"],
            env=env,
            check=True,
            capture_output=True,
            timeout=90,
        )
        operator = Operator(cluster.kubeconfig, workdir).start()
        console.print(f"[green]✓[/] CRD installed; operator running (log: {workdir}/operator-1.log)", highlight=False)

        kube = Kubectl(config.new_client_from_config(config_file=str(cluster.kubeconfig)))  # type: ignore[no-untyped-call]
        kube.namespace(NAMESPACE)
        kube.custom.create_namespaced_custom_object(
            *ROLLOUTS[:2], NAMESPACE, ROLLOUTS[2], rollout_manifest(NAMESPACE, NAME, "v1")
        )
        stable = wait_for(
            "v1 healthy", lambda: _status(kube).get("stableRS") if _status(kube).get("phase") == "Healthy" else None, 90
        )
        traffic = Traffic(workdir / "traffic", APP, LABEL, rate=60).start()
        traffic.serve({stable: STABLE})
        console.print(
            f"[green]✓[/] Rollout {NAMESPACE}/{NAME} v1 healthy (pod-template hash {stable}); model servers "
            f"under 60 req/s each, Prometheus {traffic.url}",
            highlight=False,
        )
        gate = yaml.safe_load(GATE_FILE.read_text())
        gate["spec"]["prometheus"]["address"] = traffic.url
        kube.create_gate(gate)
        console.print(
            f"[green]✓[/] gate {GATE_FILE.relative_to(ROOT)} applied: interval "
            f"{gate['spec']['analysis']['interval']}, minDuration {gate['spec']['analysis']['minDuration']}, "
            f"false-rollback budget {gate['spec']['analysis']['falsePositiveRate']:.0%}",
            highlight=False,
        )

        for version, (story, behaviour) in RELEASES.items():
            console.rule(f"release {version}: {story}")
            kube.custom.patch_namespaced_custom_object(
                *ROLLOUTS[:2],
                NAMESPACE,
                ROLLOUTS[2],
                NAME,
                {"spec": {"template": pod_template(NAME, version)}},
                _content_type="application/merge-patch+json",
            )
            canary = wait_for(f"{version} canary paused", partial(_paused_canary, kube, stable), 90)
            console.print(f"Argo Rollouts paused the canary {canary} at 25% of the pods", highlight=False)
            traffic.serve({stable: STABLE, canary: behaviour})
            outcomes[version] = _follow(console, kube, canary)
            _show(console, cluster)
            if outcomes[version] == "RolledBack":
                rollout = wait_for("the abort", lambda: _status(kube) if _status(kube).get("abort") else None, 60)
                console.print(
                    f"Rollout: phase {rollout.get('phase')}, {rollout.get('message')}; stable {stable} keeps serving",
                    highlight=False,
                )
            elif outcomes[version] == "Promoted":
                wait_for("the promotion", partial(_is_stable, kube, canary), 90)
                console.print(
                    f"Rollout: phase {_status(kube).get('phase')}, {canary} is the new stable", highlight=False
                )
                stable = canary
        ok = outcomes == {"v2": "RolledBack", "v3": "Promoted", "v4": "RolledBack"}
        verdict = (
            "bad canaries rolled back (model, data quality), good canary promoted" if ok else f"unexpected: {outcomes}"
        )
        console.rule(f"[bold {'green' if ok else 'red'}]{verdict} ({time.monotonic() - began:.0f}s)")
        return 0 if ok else 1
    finally:
        with console.status("stopping everything..."):
            if traffic is not None:
                traffic.stop()
            if operator is not None:
                operator.stop()
            cluster.stop()


def _status(kube: Kubectl) -> dict[str, Any]:
    return dict(kube.rollout(NAMESPACE, NAME).get("status") or {})


def _is_stable(kube: Kubectl, revision: str) -> bool:
    return _status(kube).get("stableRS") == revision


def _paused_canary(kube: Kubectl, stable: str) -> str | None:
    status = _status(kube)
    current = status.get("currentPodHash")
    return str(current) if current and current != stable and status.get("pauseConditions") else None


def _follow(console: Console, kube: Kubectl, canary: str) -> str:
    """Print each look as the operator records it, until it decides."""
    seen = -1
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = (kube.gate(NAMESPACE, "fraud-model") or {}).get("status") or {}
        if status.get("revision") == canary:
            looks = int(status.get("looks") or 0)
            phase = str(status.get("phase"))
            if looks != seen and status.get("metrics"):
                seen = looks
                verdicts = "  ".join(f"{m['name']} {m['verdict']}" for m in status["metrics"])
                console.print(f"  look {looks:>2}  score {status.get('score', 0):>6.2f}  {verdicts}", highlight=False)
            if phase in DECIDED_PHASES and (status.get("decision") or {}).get("applied"):
                style = "bold green" if phase == "Promoted" else "bold red"
                console.print(f"[{style}]{phase}[/]: {status['decision']['reason']}", highlight=False)
                return phase
        time.sleep(0.5)
    raise TimeoutError("the gate did not decide within 300 s")


def _show(console: Console, cluster: LocalCluster) -> None:
    command = ["robustness-gate", "status", "fraud-model", "-n", NAMESPACE]
    console.print(f"[bold]$ {' '.join(command)}", highlight=False)
    finished = subprocess.run(
        [str(Path(sys.executable).with_name("robustness-gate")), *command[1:], "--kubeconfig", str(cluster.kubeconfig)],
        text=True,
        capture_output=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "150"},
    )
    sys.stdout.write(finished.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
