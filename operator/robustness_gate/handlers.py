"""kopf wiring: watch RobustnessGates and keep one worker thread per gate; watch Deployments and
ReplicaSets into the targets' cache.

Handlers only start, wake and stop workers, and feed the cache. A worker steps on the stored status,
never on a stale watch copy: it steps on the watch's copy of its gate only when that copy is the very
version its own last status write produced, and reads the gate from the API otherwise. No finalizer
is used: deleting a gate stops its worker and leaves the target as it is, even while the operator is
down.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import kopf
from urllib3.exceptions import HTTPError as TransportError

from robustness_gate.api import GROUP, PLURAL, VERSION
from robustness_gate.controller import Controller
from robustness_gate.kube import Kube, KubeError
from robustness_gate.telemetry import Telemetry
from robustness_gate.watched import WatchedObjects

log = logging.getLogger("robustness_gate.handlers")
API_RETRY_SECONDS = 2.0  # first retry after an API failure; doubled per failure in a row
API_RETRY_MAX_SECONDS = 60.0
CRASH_RETRY_SECONDS = 30.0
STANDBY_POLL_SECONDS = 1.0


@dataclass
class _Worker:
    namespace: str
    name: str
    uid: str
    generation: Any
    phase: str = "Pending"
    # The watch's latest copy of the gate, as compact JSON (parsed only to step on it), and its resourceVersion.
    seen_body: str | None = None
    seen_version: str | None = None
    thread: threading.Thread | None = None
    wake: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)


class GateWorkers:
    """One thread per gate, each looping `Controller.step` at the delay the step asks for."""

    def __init__(
        self,
        kube: Kube,
        controller: Controller,
        telemetry: Telemetry | None = None,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.kube = kube
        self.controller = controller
        self.telemetry = telemetry
        self.leading = leading  # with several replicas, only the Lease holder steps gates
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        if telemetry is not None:
            telemetry.watch_phases(self.phases)

    def phases(self) -> list[str]:
        with self._lock:
            return [worker.phase for worker in self._workers.values()]

    def seen(self, body: dict[str, Any], deleted: bool) -> None:
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid"))
        with self._lock:
            worker = self._workers.get(uid)
            if deleted:
                if worker is not None:
                    worker.stop.set()
                    worker.wake.set()
                    del self._workers[uid]
                    if self.telemetry is not None:
                        self.telemetry.forget(worker.namespace, worker.name)
                    log.info("gate %s/%s deleted: its analysis stopped", worker.namespace, worker.name)
                return
            phase = str((body.get("status") or {}).get("phase") or "Pending")
            if worker is None:
                worker = _Worker(
                    str(meta.get("namespace")), str(meta.get("name")), uid, meta.get("generation"), phase
                )
                worker.seen_body, worker.seen_version = json.dumps(body), str(meta.get("resourceVersion"))
                worker.thread = threading.Thread(
                    target=self._run, args=(worker,), name=f"gate-{worker.name}", daemon=True
                )
                self._workers[uid] = worker
                worker.thread.start()
                return
            worker.phase = phase
            worker.seen_body, worker.seen_version = json.dumps(body), str(meta.get("resourceVersion"))
            if meta.get("generation") != worker.generation:
                worker.generation = meta.get("generation")
                worker.wake.set()  # a changed spec is looked at now, not after the current delay

    def stop_all(self, timeout: float = 10.0) -> None:
        with self._lock:
            workers = list(self._workers.values())
            self._workers.clear()
        for worker in workers:
            worker.stop.set()
            worker.wake.set()
        for worker in workers:
            if worker.thread is not None:
                worker.thread.join(timeout)
        self.controller.close()  # a worker still in a step after the timeout loses its connection here

    def count(self) -> int:
        with self._lock:
            return len(self._workers)

    def _run(self, worker: _Worker) -> None:
        try:
            self._loop(worker)
        finally:
            # Deleted, gone or stopped: its Prometheus connection and cached looks go with the worker.
            self.controller.forget(worker.namespace, worker.name, worker.uid)
            self.kube.forget_written(worker.namespace, worker.name)

    def _loop(self, worker: _Worker) -> None:
        key = f"{worker.namespace}/{worker.name}"
        api_failures = 0
        while not worker.stop.is_set():
            if not self.leading():
                # A standby replica holds no connections; the leader has its own.
                self.controller.forget(worker.namespace, worker.name, worker.uid)
                worker.wake.wait(STANDBY_POLL_SECONDS)
                worker.wake.clear()
                continue
            delay = CRASH_RETRY_SECONDS
            try:
                body = self._current_body(worker)
                if body is None:
                    log.info("gate %s is gone: its analysis stopped", key)
                    return
                if worker.stop.is_set():
                    return
                started = time.monotonic()
                delay = self.controller.step(body)
                api_failures = 0
                if self.telemetry is not None:
                    self.telemetry.step_seconds.observe(time.monotonic() - started)
            # An apiserver that is down or restarting: refused connections and broken streams come up from
            # the HTTP library as they are, not as API answers.
            except (KubeError, TransportError, ConnectionError) as error:
                api_failures += 1
                delay = api_retry_delay(api_failures)
                log.warning("gate %s: %s; retrying in %.1fs", key, error, delay)
            except Exception:  # one gate's bug must not stop the others or the operator
                log.exception("gate %s: step failed; retrying in %.0fs", key, CRASH_RETRY_SECONDS)
            worker.wake.wait(delay)
            worker.wake.clear()


    def _current_body(self, worker: _Worker) -> dict[str, Any] | None:
        """The gate as stored: the watch's copy if it is the version our last status write made, else a GET."""
        with self._lock:
            text, version = worker.seen_body, worker.seen_version
        written = self.kube.written_version(worker.namespace, worker.name)
        if text is not None and written is not None and version == written:
            body: dict[str, Any] = json.loads(text)
            return body
        return self.kube.gate(worker.namespace, worker.name)


def api_retry_delay(failures: int, jitter: Callable[[], float] = random.random) -> float:
    """Exponential backoff with jitter after `failures` API errors in a row: an apiserver that is down
    or overloaded is not hammered by every gate at once, and comes back to a steady trickle."""
    base: float = min(API_RETRY_MAX_SECONDS, API_RETRY_SECONDS * 2.0 ** min(failures - 1, 16))
    return base * (0.5 + 0.5 * float(jitter()))


def registry(workers: GateWorkers, watched: WatchedObjects | None = None) -> kopf.OperatorRegistry:
    """The kopf handlers, bound to these workers (and feeding `watched`, if given)."""
    reg = kopf.OperatorRegistry()

    @kopf.on.startup(registry=reg)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        # Watch exactly the given namespaces (or all): no CRD or Namespace scanning, which least-privilege
        # RBAC does not grant.
        settings.scanning.disabled = True
        # One line per watch event would drown the decisions; handler failures still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        settings.watching.server_timeout = 300

    @kopf.on.login(registry=reg)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the service account; elsewhere: the kubeconfig in KUBECONFIG (or ~/.kube/config).
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(
            **kwargs
        )
        return info

    # The event handlers are coroutines: kopf runs a plain function in a thread pool, a handoff per event that
    # cost more than these few microseconds of bookkeeping (a gate's own status write is an event too).
    @kopf.on.event(GROUP, VERSION, PLURAL, registry=reg)
    async def gate_event(type: str, body: kopf.Body, **_: Any) -> None:
        workers.seen(dict(body), deleted=type == "DELETED" or bool(body.metadata.get("deletionTimestamp")))

    if watched is not None:

        @kopf.on.event("apps", "v1", "deployments", registry=reg)
        async def deployment_event(type: str, body: kopf.Body, **_: Any) -> None:
            watched.deployment_seen(dict(body), deleted=type == "DELETED")

        @kopf.on.event("apps", "v1", "replicasets", registry=reg)
        async def replica_set_event(type: str, body: kopf.Body, **_: Any) -> None:
            watched.replica_set_seen(dict(body), deleted=type == "DELETED")

    @kopf.on.cleanup(registry=reg)
    def stop(**_: Any) -> None:
        workers.stop_all()

    return reg


def run(
    workers: GateWorkers,
    namespaces: list[str],
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
    watched: WatchedObjects | None = None,
) -> None:
    """Run the operator until it is signalled to stop; `ready` is set once gates are being watched."""
    kopf.run(
        registry=registry(workers, watched),
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        ready_flag=ready,
        stop_flag=stop,
    )
