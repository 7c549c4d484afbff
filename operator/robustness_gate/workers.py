"""The pool that steps gates: one worker per gate, each stepped when due on a few threads, with a backoff
after API errors. It steps on the stored status, never on a stale watch copy: it steps on the watch's
copy of its gate only when that copy is the very version its own last status write produced, and reads
the gate from the API otherwise. kopf's handlers (handlers.py) only start, wake and stop workers.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from urllib3.exceptions import HTTPError as TransportError

from robustness_gate.controller import Controller
from robustness_gate.defaults import DEFAULT_CONCURRENCY
from robustness_gate.errors import KubeError
from robustness_gate.kube import Kube
from robustness_gate.telemetry_sink import NULL_TELEMETRY, TelemetrySink

log = logging.getLogger("robustness_gate.workers")
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
    token: int = 0  # bumped at every (re)scheduling: older entries of the queue are stale
    running: bool = False
    woken: bool = False  # woken while stepping: step again as soon as this step ends
    stopped: bool = False
    api_failures: int = 0
    late: float = 0.0  # seconds between when the step now running fell due and when it started


class GateWorkers:
    """Steps every gate at the delay its last step asked for, on a small pool of threads.

    A thread per gate spent more on switching the GIL between hundreds of threads than on the steps;
    the pool runs at most `concurrency` steps at once (each mostly waits for Prometheus or the API),
    always the gate that has been due longest. A gate is stepped by one thread at a time.
    """

    def __init__(
        self,
        kube: Kube,
        controller: Controller,
        telemetry: TelemetrySink = NULL_TELEMETRY,
        leading: Callable[[], bool] = lambda: True,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.kube = kube
        self.controller = controller
        self.telemetry = telemetry
        self.leading = leading  # with several replicas, only the Lease holder steps gates
        self.concurrency = concurrency
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        self._due = threading.Condition(self._lock)
        self._queue: list[tuple[float, int, str, int]] = []  # (due, sequence, uid, token), a heap
        self._sequence = itertools.count()
        self._threads: list[threading.Thread] = []
        self._timing = False  # one idle thread waits for the queue's head to fall due; the others just wait
        self._stopping = False
        telemetry.watch_phases(self.phases)

    def phases(self) -> list[str]:
        with self._lock:
            return [worker.phase for worker in self._workers.values()]

    def seen(self, body: dict[str, Any], deleted: bool) -> None:
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid"))
        gone: _Worker | None = None
        with self._lock:
            worker = self._workers.get(uid)
            if deleted:
                if worker is not None:
                    worker.stopped = True
                    del self._workers[uid]
                    self.telemetry.forget(worker.namespace, worker.name)
                    log.info("gate %s/%s deleted: its analysis stopped", worker.namespace, worker.name)
                    if not worker.running:
                        gone = worker  # else the thread stepping it lets go of it when the step ends
            else:
                phase = str((body.get("status") or {}).get("phase") or "Pending")
                if worker is None:
                    worker = _Worker(
                        str(meta.get("namespace")), str(meta.get("name")), uid, meta.get("generation"), phase
                    )
                    self._workers[uid] = worker
                    self._schedule(worker, 0.0)
                    self._start_threads()
                else:
                    worker.phase = phase
                    if meta.get("generation") != worker.generation:
                        worker.generation = meta.get("generation")
                        self._wake(worker)  # a changed spec is looked at now, not after the current delay
                worker.seen_body, worker.seen_version = json.dumps(body), str(meta.get("resourceVersion"))
        if gone is not None:
            self._let_go(gone)

    def stop_all(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping = True
            workers = list(self._workers.values())
            self._workers.clear()
            self._queue.clear()
            threads = list(self._threads)
            self._due.notify_all()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            self.kube.forget_written(worker.namespace, worker.name)
        self.controller.close()  # a step still running after the timeout loses its connection here

    def count(self) -> int:
        with self._lock:
            return len(self._workers)

    # ------------------------------------------------------------ the pool (call with the lock held)

    def _schedule(self, worker: _Worker, delay: float) -> None:
        worker.token += 1
        entry = (time.monotonic() + delay, next(self._sequence), worker.uid, worker.token)
        heapq.heappush(self._queue, entry)
        if self._queue[0] is entry:
            self._due.notify_all()  # a new head: the thread timing the old one must look again

    def _wake(self, worker: _Worker) -> None:
        if worker.running:
            worker.woken = True
        else:
            self._schedule(worker, 0.0)

    def _start_threads(self) -> None:
        while len(self._threads) < min(self.concurrency, len(self._workers)) and not self._stopping:
            thread = threading.Thread(target=self._serve, name=f"gate-steps-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _next_due(self) -> _Worker | None:
        """Wait for the gate due longest (None: the operator is stopping)."""
        while not self._stopping:
            now = time.monotonic()
            while self._queue and self._queue[0][0] <= now:
                due, _, uid, token = heapq.heappop(self._queue)
                worker = self._workers.get(uid)
                if worker is not None and worker.token == token and not worker.running and not worker.stopped:
                    worker.running = True
                    worker.late = now - due
                    self._due.notify()  # another idle thread takes over timing the queue
                    return worker
            if self._queue and not self._timing:
                self._timing = True
                self._due.wait(self._queue[0][0] - now)
                self._timing = False
            else:
                self._due.wait()
        return None

    # ------------------------------------------------------------ pool threads

    def _serve(self) -> None:
        while True:
            with self._lock:
                worker = self._next_due()
            if worker is None:
                return
            self.telemetry.step_lateness.observe(worker.late)
            delay = self._step(worker)
            with self._lock:
                worker.running = False
                done = worker.stopped or self._stopping
                if not done:
                    self._schedule(worker, 0.0 if worker.woken else delay)
                    worker.woken = False
            if done:
                self._let_go(worker)

    def _let_go(self, worker: _Worker) -> None:
        """Deleted, gone or stopped: its Prometheus connection and cached looks go with the gate."""
        self.controller.forget(worker.namespace, worker.name, worker.uid)
        self.kube.forget_written(worker.namespace, worker.name)

    def _step(self, worker: _Worker) -> float:
        """One step of one gate; returns how long to wait before its next."""
        key = f"{worker.namespace}/{worker.name}"
        if not self.leading():
            # A standby replica holds no connections; the leader has its own.
            self.controller.forget(worker.namespace, worker.name, worker.uid)
            return STANDBY_POLL_SECONDS
        with self.telemetry.step_part("other"):  # what no inner part counts
            return self._step_counted(worker, key)

    def _step_counted(self, worker: _Worker, key: str) -> float:
        delay = CRASH_RETRY_SECONDS
        try:
            with self.telemetry.step_part("read"):
                body = self._current_body(worker)
            if body is None:
                log.info("gate %s is gone: its analysis stopped", key)
                with self._lock:
                    worker.stopped = True
                    if self._workers.get(worker.uid) is worker:
                        del self._workers[worker.uid]
                return 0.0
            started = time.monotonic()
            delay = self.controller.step(body)
            worker.api_failures = 0
            self.telemetry.step_seconds.observe(time.monotonic() - started)
        # An apiserver that is down or restarting: refused connections and broken streams come up from
        # the HTTP library as they are, not as API answers.
        except (KubeError, TransportError, ConnectionError) as error:
            worker.api_failures += 1
            delay = api_retry_delay(worker.api_failures)
            log.warning("gate %s: %s; retrying in %.1fs", key, error, delay)
        except Exception:  # one gate's bug must not stop the others or the operator
            log.exception("gate %s: step failed; retrying in %.0fs", key, CRASH_RETRY_SECONDS)
        return delay

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
