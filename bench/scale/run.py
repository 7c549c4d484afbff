"""One measurement per gate count: targets, synthetic series, Prometheus, gates, the operator, then a window.

Per N, in its own namespace of one local cluster: N canary/stable Deployment pairs (kwok runs the
pods), an exporter serving every pair's series, a Prometheus scraping it, the operator watching that
namespace, and N gates created evenly over one analysis interval (as gates started by independent
releases would be, so their looks do not all land on the same second). After a warm-up, the operator's
CPU time, its counters and Prometheus' own request counter are read at both ends of a fixed window.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from bench.scale import measure
from bench.scale.exporter import Pair
from bench.scale.lab import (
    Cluster,
    Prometheus,
    deployment_manifest,
    die_with_parent_prefix,
    gate_manifest,
    local_cluster,
    prometheus,
)
from bench.scale.operator_process import OperatorProcess, http_text
from bench.scale.profile import Profile, record

T = TypeVar("T")
GATES = ("robustness.dev", "v1alpha1", "robustnessgates")
INTERVAL_SECONDS = 10.0
METRICS_PER_GATE = 3  # error rate, latency p99, prediction drift
STEP_HISTOGRAM = "robustness_gate_analysis_step_seconds"
LATENESS_HISTOGRAM = "robustness_gate_step_lateness_seconds"
SCRAPE_INTERVAL = "2s"
PODS_PER_NODE = 100
CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "robustnessgates.robustness.dev.yaml"


@dataclass(frozen=True)
class Config:
    gates: tuple[int, ...] = (10, 100, 500)
    warmup_seconds: float = 30.0
    window_seconds: float = 120.0
    profile_seconds: float = 30.0  # py-spy on the largest N, after its window; 0: no profile
    # tmpfs: etcd fsyncs every write, and on a disk shared with other jobs that alone made the apiserver take
    # seconds per request at 500 gates; a production etcd has a disk of its own.
    workdir: Path = Path("/dev/shm/robustness-gate-bench-scale")


QUICK = Config(warmup_seconds=20.0, window_seconds=40.0, profile_seconds=20.0)


STEP_CPU_COUNTER = "robustness_gate_step_cpu_seconds_total"
STEP_CPU_PARTS = ("read", "prometheus", "judge", "status", "other")
MACHINE = "machine"  # machine_cpu's key for the busy time of all CPUs


@dataclass(frozen=True)
class Measurement:
    gates: int
    window_seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    steps: float
    step_buckets: list[tuple[float, float]]
    prometheus_queries: float  # counted by the operator
    prometheus_query_range_requests: float  # counted by Prometheus
    api_requests: dict[str, float]  # "verb kind" -> count
    prometheus_errors: float
    analysing: int  # gates in phase Analyzing at the end
    creation_seconds: float
    mean_looks: float  # looks per gate at the end: each step judges all of them again
    # From a step falling due to a worker thread starting it (robustness_gate_step_lateness_seconds)
    lateness_buckets: list[tuple[float, float]] = field(default_factory=list)
    # CPU seconds of steps by part, from robustness_gate_step_cpu_seconds_total (the threads' own CPU time)
    step_cpu: dict[str, float] = field(default_factory=dict)
    # CPU seconds over the window of each process of the set-up, and MACHINE: all CPUs busy, whoever ran
    machine_cpu: dict[str, float] = field(default_factory=dict)
    cpus: int = 0  # the machine's CPUs (0: not recorded)
    profile: Profile | None = None

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.window_seconds

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.window_seconds

    @property
    def expected_steps_per_second(self) -> float:
        return self.gates / INTERVAL_SECONDS

    @property
    def step_p50(self) -> float:
        return measure.quantile(0.5, self.step_buckets)

    @property
    def step_p99(self) -> float:
        return measure.quantile(0.99, self.step_buckets)

    @property
    def mean_step_seconds(self) -> float:
        return measure.mean(self.step_buckets)

    @property
    def cpu_per_step(self) -> float:
        return self.cpu_seconds / self.steps if self.steps else math.nan

    @property
    def in_flight(self) -> float:
        """Steps under way at any moment (Little's law): counted at one edge of the window but not the other."""
        return self.steps_per_second * self.mean_step_seconds

    @property
    def within_one_second(self) -> float:
        return measure.share_at_most(1.0, self.step_buckets)

    def per_step(self, count: float) -> float:
        return count / self.steps if self.steps else math.nan

    @property
    def queries_per_metric_step(self) -> float:
        return self.per_step(self.prometheus_queries) / METRICS_PER_GATE

    @property
    def api_requests_per_step(self) -> float:
        return self.per_step(sum(self.api_requests.values()))


@dataclass
class _Stack:
    """What one gate count started; stopped in reverse order."""

    stops: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for stop in reversed(self.stops):
            with contextlib.suppress(Exception):
                stop()
        self.stops.clear()


def process_cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """utime + stime of each named process still running (one that is gone is left out)."""
    found = {}
    for name, pid in pids.items():
        with contextlib.suppress(OSError, ValueError, IndexError):
            found[name] = measure.cpu_seconds(Path(f"/proc/{pid}/stat").read_text())
    return found


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Bench:
    def __init__(self, config: Config, log: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> None:
        self.config = config
        self.log = log
        self.cluster: Cluster | None = None
        self.api: Any = None

    @contextlib.contextmanager
    def cluster_up(self) -> Iterator[None]:
        pods = 2 * sum(self.config.gates)
        cluster = local_cluster(self.config.workdir / "cluster", nodes=max(2, math.ceil(pods / PODS_PER_NODE)))
        started = time.monotonic()
        cluster.start()
        self.cluster = cluster
        self.log(f"cluster up in {time.monotonic() - started:.0f}s")
        try:
            self.api = config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
            self._crd()
            yield
        finally:
            if self.api is not None:
                self.api.close()
            cluster.stop()
            self.cluster = None

    def _crd(self) -> None:
        extensions = client.ApiextensionsV1Api(self.api)
        body: Any = yaml.safe_load(CRD_FILE.read_text())
        with contextlib.suppress(ApiException):  # 409: already there
            extensions.create_custom_resource_definition(body)

        def established() -> bool:
            stored: Any = extensions.read_custom_resource_definition(body["metadata"]["name"])
            return any(c.type == "Established" and c.status == "True" for c in stored.status.conditions or [])

        wait_for("the RobustnessGate CRD Established", established, 30, 0.2)
        time.sleep(1)  # the first requests after Established can still see "storage is (re)initializing"

    # ------------------------------------------------------------ setup of one gate count

    def _namespace(self, name: str) -> None:
        core = client.CoreV1Api(self.api)
        body: Any = {"metadata": {"name": name}}
        with contextlib.suppress(ApiException):
            core.create_namespace(body)

        def has_account() -> bool:
            try:
                core.read_namespaced_service_account("default", name)
                return True
            except ApiException:
                return False

        wait_for(f"ServiceAccount default in {name}", has_account, 60)

    def _targets(self, namespace: str, count: int) -> list[Pair]:
        apps = client.AppsV1Api(self.api)
        manifests = []
        for index in range(count):
            app = f"g{index}"
            manifests.append(deployment_manifest(namespace, f"{app}-stable", app, "v1", "stable"))
            manifests.append(deployment_manifest(namespace, f"{app}-canary", app, "v2", "canary"))
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda body: apps.create_namespaced_deployment(namespace, body), manifests))

        def hashes() -> dict[str, str] | None:
            listing: Any = apps.list_namespaced_replica_set(namespace, _preload_content=False)
            found = {}
            for item in json.loads(listing.data)["items"]:
                owners = item["metadata"].get("ownerReferences") or [{}]
                found[owners[0].get("name", "")] = item["metadata"]["labels"]["pod-template-hash"]
            return found if len(found) >= 2 * count else None

        by_owner = wait_for(f"{2 * count} ReplicaSets", hashes, 300, 2.0)
        return [Pair(f"g{i}", by_owner[f"g{i}-canary"], by_owner[f"g{i}-stable"]) for i in range(count)]

    def _exporter(self, pairs: list[Pair], directory: Path, lifetime: float, stack: _Stack) -> tuple[str, int]:
        (directory / "pairs.json").write_text(json.dumps([pair.__dict__ for pair in pairs]))
        port_file = directory / "exporter.port"
        port_file.unlink(missing_ok=True)
        command = [
            *die_with_parent_prefix(),
            sys.executable,
            "-m",
            "bench.scale.exporter",
            "--pairs",
            str(directory / "pairs.json"),
            "--port-file",
            str(port_file),
            "--max-lifetime",
            str(lifetime),
        ]
        with (directory / "exporter.log").open("wb") as log:
            proc = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=Path(__file__).resolve().parents[2],
            )

        def stop() -> None:
            proc.terminate()
            proc.wait(10)

        stack.stops.append(stop)
        port = wait_for("the exporter's port", lambda: port_file.exists() and port_file.read_text().strip(), 30, 0.1)
        return f"127.0.0.1:{port}", proc.pid

    def _gates(self, namespace: str, pairs: list[Pair], prometheus_url: str) -> float:
        """Create one gate per pair, evenly over one interval (or as fast as the API takes them)."""
        custom = client.CustomObjectsApi(self.api)
        started = time.monotonic()
        for index, pair in enumerate(pairs):
            delay = started + index * INTERVAL_SECONDS / len(pairs) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = gate_manifest(
                namespace, pair.app, f"{pair.app}-canary", f"{pair.app}-stable", prometheus_url, pair.app
            )
            custom.create_namespaced_custom_object(*GATES[:2], namespace, GATES[2], body)
        return time.monotonic() - started

    def _analysing(self, namespace: str, min_looks: int = 1) -> int:
        custom = client.CustomObjectsApi(self.api)
        listing: Any = custom.list_namespaced_custom_object(*GATES[:2], namespace, GATES[2])
        return sum(
            1
            for item in listing["items"]
            if (item.get("status") or {}).get("phase") == "Analyzing"
            and int((item.get("status") or {}).get("looks") or 0) >= min_looks
        )

    # ------------------------------------------------------------ one gate count

    def measure(self, count: int, profile: bool) -> Measurement:
        assert self.cluster is not None, "inside cluster_up() only"
        cfg = self.config
        namespace = f"scale-{count}"
        directory = cfg.workdir / namespace
        directory.mkdir(parents=True, exist_ok=True)
        stack = _Stack()
        try:
            self._namespace(namespace)
            started = time.monotonic()
            pairs = self._targets(namespace, count)
            self.log(f"N={count}: {2 * count} Deployments and their ReplicaSets in {time.monotonic() - started:.0f}s")
            lifetime = 1800.0 + count
            target, exporter_pid = self._exporter(pairs, directory, lifetime, stack)
            server: Prometheus = prometheus([target], SCRAPE_INTERVAL, lifetime).start()
            stack.stops.append(server.stop)
            server.wait_for_samples("count(http_requests_total)", 4 * count, timeout=60)
            operator = OperatorProcess(self.cluster.kubeconfig, namespace, directory / "operator.log").start()
            stack.stops.append(operator.stop)
            creation = self._gates(namespace, pairs, server.url)
            self.log(f"N={count}: gates created over {creation:.1f}s; warming up")
            try:
                wait_for(
                    f"all {count} gates analysing",
                    lambda: self._analysing(namespace) >= count,
                    max(120.0, count / 2),
                    2.0,
                )
            except TimeoutError as error:  # an operator that cannot keep up is measured all the same
                self.log(f"N={count}: {error}; measuring anyway")
            time.sleep(cfg.warmup_seconds)
            pids = {**self.cluster.pids, "prometheus": server.pid, "exporter": exporter_pid, "operator": operator.pid}
            processes = {name: pid for name, pid in pids.items() if pid is not None}
            before = self._snapshot(operator, server, processes)
            time.sleep(cfg.window_seconds)
            after = self._snapshot(operator, server, processes)
            if not operator.alive():
                raise RuntimeError(f"the operator died during the window; see {directory / 'operator.log'}")
            peak = operator.peak_rss_mib()
            analysing = self._analysing(namespace)
            result = _difference(count, before, after, peak, analysing, creation)
            if profile and cfg.profile_seconds > 0:
                self.log(f"N={count}: profiling for {cfg.profile_seconds:.0f}s")
                found = record(operator.pid, cfg.profile_seconds, directory / "py-spy.txt")
                result = Measurement(**{**result.__dict__, "profile": found})
            return result
        finally:
            stack.close()

    def _snapshot(self, operator: OperatorProcess, server: Prometheus, processes: dict[str, int]) -> _Snapshot:
        return _Snapshot(
            time.monotonic(),
            operator.cpu_seconds(),
            measure.parse_exposition(operator.metrics()),
            measure.parse_exposition(http_text(f"{server.url}/metrics")),
            {**process_cpu_seconds(processes), MACHINE: measure.machine_busy_seconds(Path("/proc/stat").read_text())},
        )

    def run(self) -> tuple[list[Measurement], dict[int, str]]:
        """The measurements, and why a gate count could not be measured (the others still are)."""
        results: list[Measurement] = []
        failures: dict[int, str] = {}
        with self.cluster_up():
            for count in self.config.gates:
                try:
                    results.append(self.measure(count, profile=count == max(self.config.gates)))
                except Exception as error:
                    failures[count] = f"{type(error).__name__}: {error}"
                    self.log(f"N={count}: not measured: {failures[count]}")
                    continue
                self.log(_summary(results[-1]))
        return results, failures


@dataclass(frozen=True)
class _Snapshot:
    at: float
    cpu: float
    operator: list[measure.Sample]
    prometheus: list[measure.Sample]
    machine_cpu: dict[str, float]  # CPU seconds so far per process, and MACHINE's busy seconds


def _difference(
    count: int, before: _Snapshot, after: _Snapshot, peak: float, analysing: int, creation: float
) -> Measurement:
    def delta(name: str, which: str = "operator", **labels: str) -> float:
        return measure.total(getattr(after, which), name, **labels) - measure.total(
            getattr(before, which), name, **labels
        )

    api_after = _api_requests(after.operator)
    api_before = _api_requests(before.operator)
    return Measurement(
        gates=count,
        window_seconds=after.at - before.at,
        cpu_seconds=after.cpu - before.cpu,
        peak_rss_mib=peak,
        steps=delta(f"{STEP_HISTOGRAM}_count"),
        step_buckets=measure.difference(
            measure.buckets(after.operator, STEP_HISTOGRAM), measure.buckets(before.operator, STEP_HISTOGRAM)
        ),
        prometheus_queries=delta("robustness_gate_prometheus_queries_total"),
        prometheus_query_range_requests=delta(
            "prometheus_http_requests_total", "prometheus", handler="/api/v1/query_range"
        ),
        api_requests={key: value - api_before.get(key, 0.0) for key, value in api_after.items()},
        prometheus_errors=delta("robustness_gate_prometheus_errors_total"),
        analysing=analysing,
        creation_seconds=creation,
        mean_looks=_mean([s.value for s in after.operator if s.name == "robustness_gate_looks"]),
        lateness_buckets=measure.difference(
            measure.buckets(after.operator, LATENESS_HISTOGRAM), measure.buckets(before.operator, LATENESS_HISTOGRAM)
        ),
        step_cpu={
            part: value - measure.by_label(before.operator, STEP_CPU_COUNTER, "part").get(part, 0.0)
            for part, value in measure.by_label(after.operator, STEP_CPU_COUNTER, "part").items()
        },
        cpus=os.cpu_count() or 0,
        machine_cpu={
            name: value - before.machine_cpu[name]
            for name, value in after.machine_cpu.items()
            if name in before.machine_cpu
        },
    )


def to_json(results: list[Measurement]) -> str:
    return json.dumps([dataclasses.asdict(m) for m in results], indent=1)


def from_json(text: str) -> list[Measurement]:
    """Measurements saved by `to_json` (the report can be rendered again without measuring again)."""
    results = []
    for item in json.loads(text):
        profile = item.pop("profile")
        item["step_buckets"] = [tuple(pair) for pair in item["step_buckets"]]
        item["lateness_buckets"] = [tuple(pair) for pair in item.get("lateness_buckets", [])]
        if profile is not None:
            profile = Profile(
                profile["samples"], [tuple(x) for x in profile["layers"]], [tuple(x) for x in profile["functions"]]
            )
        results.append(Measurement(**item, profile=profile))
    return results


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _api_requests(samples: list[measure.Sample]) -> dict[str, float]:
    return {
        f"{s.labels.get('verb')} {s.labels.get('kind')}": s.value
        for s in samples
        if s.name == "robustness_gate_api_requests_total"
    }


def _summary(result: Measurement) -> str:
    return (
        f"N={result.gates}: CPU {result.cpu_share:.2f} cores, peak RSS {result.peak_rss_mib:.0f} MiB, "
        f"{result.steps_per_second:.1f} steps/s (expected {result.expected_steps_per_second:.1f}), "
        f"step p50 {result.step_p50:.3f}s p99 {result.step_p99:.3f}s, "
        f"{result.queries_per_metric_step:.2f} queries per metric and step, "
        f"{result.api_requests_per_step:.2f} API requests per step"
    )
