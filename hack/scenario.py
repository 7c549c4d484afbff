"""Canary releases on a local cluster, for the end-to-end tests and the demo.

Builds the workloads (an Argo Rollout, a Deployment pair, a single Deployment), rolls out a new
version, and stands in for the pods with real model servers on 127.0.0.1 that export metrics
labelled with the real pod-template hashes, scraped by a real Prometheus, under bounded load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from hack.canarylab import Behaviour, LoadGenerator, ModelServer
from hack.procs import die_with_parent_prefix, free_port, terminate
from hack.promlab import PrometheusServer, write_file_sd

T = TypeVar("T")
ROLLOUTS = ("argoproj.io", "v1alpha1", "rollouts")
GATES = ("robustness.dev", "v1alpha1", "robustnessgates")
HEALTHY = Behaviour()
SCRAPE_INTERVAL = "1s"
# The label Argo Rollouts puts on a revision's pods, as a Prometheus pod scrape names it.
ROLLOUT_HASH_LABEL = "rollouts_pod_template_hash"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Poll until `probe` returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


class Kubectl:
    """Thin typed helpers over the Kubernetes client for building and inspecting scenarios."""

    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.apps = client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def namespace(self, name: str) -> str:
        try:
            body: Any = {"metadata": {"name": name}}
            self.core.create_namespace(body)
        except ApiException as error:
            if error.status != 409:
                raise
        wait_for(f"ServiceAccount default in {name}", lambda: self._has_default_sa(name), 60)
        return name

    def _has_default_sa(self, namespace: str) -> bool:
        try:
            self.core.read_namespaced_service_account("default", namespace)
            return True
        except ApiException:
            return False

    def rollout(self, namespace: str, name: str) -> dict[str, Any]:
        result: Any = self.custom.get_namespaced_custom_object(*ROLLOUTS[:2], namespace, ROLLOUTS[2], name)
        return dict(result)

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        response: Any = self.apps.read_namespaced_deployment(name, namespace, _preload_content=False)
        data: dict[str, Any] = json.loads(response.data)
        return data

    def replica_sets(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        response: Any = self.apps.list_namespaced_replica_set(
            namespace, label_selector=selector, _preload_content=False
        )
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def gate(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: Any = self.custom.get_namespaced_custom_object(*GATES[:2], namespace, GATES[2], name)
            return dict(result)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def create_gate(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(*GATES[:2], body["metadata"]["namespace"], GATES[2], body)

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        response: Any = self.core.list_namespaced_event(
            namespace,
            field_selector=f"involvedObject.name={name},involvedObject.kind=RobustnessGate",
            _preload_content=False,
        )
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return sorted(items, key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))


# ---------------------------------------------------------------- manifests


def rollout_ref(name: str) -> dict[str, str]:
    """A gate's targetRef to the Argo Rollout `name`."""
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": name}


def pod_template(app: str, version: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app, **(labels or {})}},
        "spec": {
            "containers": [
                {
                    "name": "model",
                    "image": f"registry.invalid/{app}:{version}",  # kwok runs no image
                    "env": [{"name": "MODEL_VERSION", "value": version}],
                }
            ]
        },
    }


def rollout_manifest(
    namespace: str, name: str, version: str, replicas: int = 4, steps: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name, version),
            "strategy": {"canary": {"steps": steps or [{"setWeight": 25}, {"pause": {}}]}},
        },
    }


def deployment_manifest(
    namespace: str,
    name: str,
    app: str,
    version: str,
    replicas: int,
    track: str | None = None,
    min_ready_seconds: int = 0,
) -> dict[str, Any]:
    labels = {"track": track} if track else {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready_seconds,
            "progressDeadlineSeconds": max(600, min_ready_seconds + 60),
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {"app": app, **labels}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": pod_template(app, version, labels),
        },
    }


def gate_manifest(
    namespace: str,
    name: str,
    target: dict[str, str],
    prometheus: str,
    *,
    app: str,
    stable: str | None = None,
    label: str = ROLLOUT_HASH_LABEL,
    interval: str = "2s",
    min_duration: str = "20s",
    max_duration: str = "3m",
    dry_run: bool = False,
    min_traffic: int = 100,
    feature_nulls: bool = False,
) -> dict[str, Any]:
    """Availability, latency and prediction-drift checks of a fraud-scoring model; with `feature_nulls`, also
    the null rate of each of its input features (at most 5%)."""
    selector = f'app="{app}",{{{{selector}}}}'
    spec: dict[str, Any] = {
        "targetRef": target,
        "selectors": {"canary": f'{label}="{{{{canaryHash}}}}"', "baseline": f'{label}="{{{{stableHash}}}}"'},
        "prometheus": {"address": prometheus, "timeout": "5s"},
        "analysis": {
            "interval": interval,
            "minDuration": min_duration,
            "maxDuration": max_duration,
            "falsePositiveRate": 0.01,
            "minTraffic": {"canary": min_traffic, "baseline": min_traffic},
        },
        "metrics": [
            {
                "name": "error-rate",
                "critical": True,
                "errorRate": {
                    "errors": "sum by ({{by}}) (increase(http_requests_total{"
                    + selector
                    + ',code=~"5.."}[{{window}}]))',
                    "total": "sum by ({{by}}) (increase(http_requests_total{" + selector + "}[{{window}}]))",
                },
                "slo": {"max": 0.05},
                "compare": {"direction": "Increase", "tolerance": 0.2},
            },
            {
                "name": "latency-p99",
                "critical": True,
                "latency": {"histogram": "http_request_duration_seconds", "labels": f'app="{app}"'},
                "slo": {"quantile": 0.99, "max": 0.25},
                "compare": {"direction": "Increase", "tolerance": 0.1},
            },
            {
                "name": "prediction-drift",
                "critical": True,
                "drift": {"histogram": "model_prediction_score", "labels": f'app="{app}"', "effect": "PSI", "max": 0.2},
            },
        ],
        "dryRun": dry_run,
    }
    if feature_nulls:
        spec["metrics"].append(
            {
                "name": "feature-nulls",
                "critical": True,
                "ratio": {
                    "numerator": "sum by ({{by}}) (increase(model_feature_null_total{" + selector + "}[{{window}}]))",
                    "denominator": "sum by ({{by}}) (increase(model_feature_observations_total{"
                    + selector
                    + "}[{{window}}]))",
                },
                "features": {"label": "feature"},
                "slo": {"max": 0.05},
            }
        )
    if stable is not None:
        spec["stableRef"] = {"name": stable}
    return {
        "apiVersion": "robustness.dev/v1alpha1",
        "kind": "RobustnessGate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


# ---------------------------------------------------------------- traffic


@dataclass
class Traffic:
    """Model servers standing in for each version's pods, a Prometheus scraping them, and bounded load.

    Versions can be added while it runs: the servers are Prometheus file_sd targets, and the load
    generator is restarted over the current set of servers.
    """

    workdir: Path
    app: str
    label: str
    rate: float = 40.0
    duration: float = 300.0
    servers: dict[str, ModelServer] = field(default_factory=dict)
    prometheus: PrometheusServer | None = None
    load: LoadGenerator | None = None

    @classmethod
    def pair(cls, workdir: Path, app: str, label: str, stable: str, canary: str, behaviour: Behaviour) -> Traffic:
        """A healthy stable version and a canary that behaves as given, both under load."""
        traffic = cls(workdir, app, label).start()
        try:
            return traffic.serve({stable: HEALTHY, canary: behaviour})
        except BaseException:
            traffic.stop()
            raise

    def start(self) -> Traffic:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.targets_file.write_text("[]")
        # Scraped twice per 2 s look: the operator's per-look counts are exact counter changes, which
        # increase() over so few samples would not be (see docs/statistics.md).
        self.prometheus = PrometheusServer(
            file_sd=self.targets_file, scrape_interval=SCRAPE_INTERVAL, max_lifetime=self.duration + 300
        ).start()
        return self

    @property
    def targets_file(self) -> Path:
        return self.workdir / "targets.json"

    def serve(self, versions: dict[str, Behaviour]) -> Traffic:
        """Run these versions (label value -> behaviour) under load, alone; wait until Prometheus sees them."""
        assert self.prometheus is not None, "start() first"
        if self.load is not None:
            self.load.stop()
        for value in list(self.servers):
            if value not in versions:
                self.servers.pop(value).stop()
        for seed, (value, behaviour) in enumerate(versions.items(), start=len(self.servers) + 1):
            if value not in self.servers:
                server = ModelServer(
                    self.workdir, self.app, self.label, value, behaviour, seed, max_lifetime=self.duration + 120
                )
                self.servers[value] = server.start()
        write_file_sd(self.targets_file, [server.target for server in self.servers.values()])
        self.load = LoadGenerator(
            self.workdir, [server.url for server in self.servers.values()], self.rate, self.duration, workers=10
        ).start()
        prometheus = self.prometheus
        for value in versions:
            query = f'sum(http_requests_total{{app="{self.app}",{self.label}="{value}"}})'

            def scraped(q: str = query) -> bool:
                return (prometheus.query_value(q) or 0) > 0

            wait_for(f"Prometheus scraping version {value}", scraped, 60)
        return self

    @property
    def url(self) -> str:
        assert self.prometheus is not None
        return self.prometheus.url

    def stop(self) -> None:
        if self.load is not None:
            self.load.stop()
        for server in self.servers.values():
            server.stop()
        if self.prometheus is not None:
            self.prometheus.stop()


# ---------------------------------------------------------------- rollouts


def start_rollout_canaries(
    kube: Kubectl,
    namespace: str,
    names: Sequence[str],
    steps: list[dict[str, Any]] | None = None,
    replicas: int = 4,
) -> dict[str, tuple[str, str]]:
    """Rollouts at v1, then at v2, all at once: name -> (stable hash, canary hash) once every canary is paused
    (or, with other steps than the default pause, once every canary exists)."""
    for name in names:
        manifest = rollout_manifest(namespace, name, "v1", replicas=replicas, steps=steps)
        kube.custom.create_namespaced_custom_object(*ROLLOUTS[:2], namespace, ROLLOUTS[2], manifest)
    stable = {
        name: wait_for(f"Rollout {name} v1 healthy", partial(_healthy_hash_of, kube, namespace, name), 90)
        for name in names
    }
    for name in names:
        kube.custom.patch_namespaced_custom_object(
            *ROLLOUTS[:2],
            namespace,
            ROLLOUTS[2],
            name,
            {"spec": {"template": pod_template(name, "v2")}},
            _content_type="application/merge-patch+json",
        )
    paused = steps is None
    return {
        name: (
            stable[name],
            wait_for(
                f"Rollout {name} v2 canary",
                partial(_canary_hash_of, kube, namespace, name, stable[name], paused),
                90,
            ),
        )
        for name in names
    }


def start_rollout_canary(
    kube: Kubectl, namespace: str, name: str, steps: list[dict[str, Any]] | None = None
) -> tuple[str, str]:
    """A Rollout at v1, then v2: (stable hash, canary hash), as start_rollout_canaries."""
    return start_rollout_canaries(kube, namespace, [name], steps=steps)[name]


def _healthy_hash_of(kube: Kubectl, namespace: str, name: str) -> str | None:
    return _healthy_hash(kube.rollout(namespace, name))


def _canary_hash_of(kube: Kubectl, namespace: str, name: str, stable: str, paused: bool) -> str | None:
    return _paused_canary(kube.rollout(namespace, name), stable, paused=paused)


def _healthy_hash(rollout: dict[str, Any]) -> str | None:
    status = rollout.get("status") or {}
    if (
        status.get("phase") == "Healthy"
        and status.get("stableRS")
        and status.get("stableRS") == status.get("currentPodHash")
    ):
        return str(status["stableRS"])
    return None


def _paused_canary(rollout: dict[str, Any], stable: str, paused: bool = True) -> str | None:
    status = rollout.get("status") or {}
    current = status.get("currentPodHash")
    if current and current != stable and (status.get("pauseConditions") or not paused):
        return str(current)
    return None


def pod_hash(replica_set: dict[str, Any], label: str) -> str:
    return str(replica_set["metadata"]["labels"][label])


# ---------------------------------------------------------------- the operator process


class Operator:
    """`robustness-gate run` as a child process, so tests can kill and restart it.

    Its verdict API and metrics listen on free loopback ports (`http_url`, `metrics_url`).
    """

    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        namespaces: Sequence[str] = (),
        env: dict[str, str] | None = None,
        extra_args: Sequence[str] = (),
        name: str = "operator",
    ) -> None:
        self.kubeconfig, self.workdir, self.namespaces = kubeconfig, workdir, list(namespaces)
        self.env = env or {}
        self.extra_args, self.name = list(extra_args), name
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.http_port, self.metrics_port = free_port(), free_port()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> Operator:
        self.starts += 1
        log = open(self.workdir / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115 - the child owns it
        command = [
            *die_with_parent_prefix(),
            sys.executable,
            "-m",
            "robustness_gate.cli",
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--http-address",
            f"127.0.0.1:{self.http_port}",
            "--metrics-address",
            f"127.0.0.1:{self.metrics_port}",
        ]
        for namespace in self.namespaces:
            command += ["--namespace", namespace]
        command += self.extra_args
        self.proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env={**os.environ, **self.env}
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        """Until /readyz answers 200 (the operator watches gates)."""

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.http_url}/readyz", timeout=2) as response:
                    return bool(response.status == 200)
            except (urllib.error.URLError, OSError):
                return False

        wait_for("the operator's /readyz", ready, timeout, 0.2)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, grace=15.0)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob(f"{self.name}-*.log")))


class OwnOperators:
    """Operators this test starts (each watching only the given namespaces), all stopped at its end."""

    def __init__(self, kubeconfig: Path, env: dict[str, str]) -> None:
        self.kubeconfig, self.env = kubeconfig, env
        self.started: list[Operator] = []

    def start(self, workdir: Path, namespaces: list[str], args: list[str], name: str) -> Operator:
        workdir.mkdir(parents=True, exist_ok=True)
        process = Operator(self.kubeconfig, workdir, namespaces, env=self.env, extra_args=args, name=name)
        self.started.append(process.start())
        process.wait_ready()
        return process
