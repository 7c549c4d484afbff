"""Typed access to the local cluster and the loopback Prometheus of hack/ (plain scripts, not a package)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

HACK = Path(__file__).resolve().parents[2] / "hack"


class Cluster(Protocol):
    @property
    def kubeconfig(self) -> Path: ...

    @property
    def pids(self) -> dict[str, int]: ...

    def start(self, timeout: float = 180) -> None: ...

    def stop(self) -> None: ...


class Prometheus(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    def start(self) -> Prometheus: ...

    def stop(self) -> None: ...

    def query_value(self, promql: str, at: float | None = None) -> float | None: ...

    def wait_for_samples(
        self, query: str, min_value: float, timeout: float = 30.0, interval: float = 0.25
    ) -> float: ...


def _hack(name: str) -> ModuleType:
    if str(HACK) not in sys.path:
        sys.path.insert(0, str(HACK))
    return importlib.import_module(name)


def local_cluster(workdir: Path, nodes: int) -> Cluster:
    """Deployments as targets need no Argo Rollouts controller; kwok runs the pods on `nodes` fake nodes."""
    cluster: Cluster = _hack("localcluster").LocalCluster(
        workdir=workdir, rollouts=False, nodes=nodes, die_with_parent=True
    )
    return cluster


def prometheus(targets: Sequence[str], scrape_interval: str, max_lifetime: float) -> Prometheus:
    server: Prometheus = _hack("promlab").PrometheusServer(
        targets, scrape_interval=scrape_interval, max_lifetime=max_lifetime
    )
    return server


def die_with_parent_prefix() -> list[str]:
    prefix: list[str] = _hack("promlab").die_with_parent_prefix()
    return prefix


def free_port() -> int:
    port: int = _hack("promlab").free_port()
    return port


def gate_manifest(namespace: str, name: str, canary: str, stable: str, prometheus_url: str, app: str) -> dict[str, Any]:
    """hack/scenario.py's gate (error rate, latency p99 and prediction drift) on a Deployment pair, analysing
    every 10 s for an hour before any decision can be taken."""
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": canary}
    manifest: dict[str, Any] = _hack("scenario").gate_manifest(
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
    return manifest


def deployment_manifest(namespace: str, name: str, app: str, version: str, track: str) -> dict[str, Any]:
    manifest: dict[str, Any] = _hack("scenario").deployment_manifest(namespace, name, app, version, 1, track)
    return manifest
