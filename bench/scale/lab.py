"""The lab parts the scale benchmark uses: hack's local cluster, its loopback Prometheus and scenario's
manifests, with the benchmark's settings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hack import scenario
from hack.localcluster import LocalCluster
from hack.procs import die_with_parent_prefix, free_port
from hack.promlab import PrometheusServer

Cluster = LocalCluster
Prometheus = PrometheusServer
__all__ = ["Cluster", "Prometheus", "deployment_manifest", "die_with_parent_prefix", "free_port", "gate_manifest"]


def local_cluster(workdir: Path, nodes: int) -> LocalCluster:
    """Deployments as targets need no Argo Rollouts controller; kwok runs the pods on `nodes` fake nodes."""
    return LocalCluster(workdir=workdir, rollouts=False, nodes=nodes, die_with_parent=True)


def prometheus(targets: Sequence[str], scrape_interval: str, max_lifetime: float) -> PrometheusServer:
    return PrometheusServer(targets, scrape_interval=scrape_interval, max_lifetime=max_lifetime)


def gate_manifest(namespace: str, name: str, canary: str, stable: str, prometheus_url: str, app: str) -> dict[str, Any]:
    """hack/scenario.py's gate (error rate, latency p99 and prediction drift) on a Deployment pair, analysing
    every 10 s for an hour before any decision can be taken."""
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": canary}
    return scenario.gate_manifest(
        namespace,
        name,
        target,
        prometheus_url,
        app=app,
        stable=stable,
        label="pod_template_hash",
        interval="10s",
        min_duration="1h",
        max_duration="2h",
    )


def deployment_manifest(namespace: str, name: str, app: str, version: str, track: str) -> dict[str, Any]:
    return scenario.deployment_manifest(namespace, name, app, version, 1, track)
