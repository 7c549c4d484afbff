"""LocalCluster: starts the components in order, waits until each is ready, records them in state.json, adopts
a cluster another process left running, and stops everything again."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from hack.localcluster import bootstrap, components, pki
from hack.localcluster.bootstrap import Api, Check, http_get, https_get, in_background, ok
from hack.localcluster.config import (
    OWNED_ENTRIES,
    ROLLOUTS_NAMESPACE,
    ClusterError,
    binaries,
    crd_dir,
    stages_file,
    versions,
)
from hack.localcluster.processes import Proc, alive, find_leftovers, free_ports, read_state, rss_mib, stop_all
from hack.localcluster.processes import write_state as write_state_file
from hack.procs import die_with_parent, tail

POLL_SECONDS = 0.1
_CLIENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]


@dataclass
class LocalCluster:
    """A local cluster rooted at ``workdir``. start() brings it up (or adopts one already running there)."""

    workdir: Path
    rollouts: bool = True
    nodes: int = 2
    # True: children get SIGTERM from the kernel when the starting process dies, so a killed test run cannot
    # leave a cluster behind. The CLI's `up` uses False so the cluster outlives it. The kernel watches the
    # *thread* that called start(), so call it from a thread that lives as long as the cluster should.
    die_with_parent: bool = False
    timings: dict[str, float] = field(default_factory=dict, init=False)
    _procs: list[Proc] = field(default_factory=list, init=False, repr=False)
    _ports: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _ready: bool = field(default=False, init=False, repr=False)
    _api_client: Api | None = field(default=None, init=False, repr=False)
    adopted: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).expanduser().absolute()

    # ----- public -----------------------------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (client cert in system:masters), absolute paths to the PKI files."""
        return self.workdir / "admin.kubeconfig"

    @property
    def server(self) -> str:
        if "apiserver" not in self._ports:
            raise ClusterError("kube-apiserver", f"the cluster in {self.workdir} has not been started")
        return f"https://127.0.0.1:{self._ports['apiserver']}"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def pids(self) -> dict[str, int]:
        """Component name -> pid of the processes started (or adopted)."""
        return {p.name: p.pid for p in self._procs}

    @property
    def processes(self) -> list[Proc]:
        return list(self._procs)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 180) -> None:
        """Start every component and wait until all are ready; no-op if this cluster is already up.

        A cluster left running in ``workdir`` by another process (e.g. ``python -m hack.localcluster up``) is
        adopted. On any failure everything started here is stopped again and ClusterError names the component and
        its log tail.
        """
        if self._ready and all(alive(p) for p in self._procs):
            return
        if self._procs:  # partly dead: start over
            self.stop()
        if self._adopt():
            return
        t0 = time.monotonic()
        deadline = t0 + timeout
        self.timings = {}
        self._ready = False
        self.adopted = False
        try:
            self._check_prerequisites()
            for attempt in range(3):
                self._clean_workdir()
                try:
                    self._start(t0, deadline)
                    break
                except ClusterError as exc:
                    # Ports are checked free before use, but another cluster starting at the same moment may
                    # take one first; start again on new ports then.
                    if attempt == 2 or exc.log is None or "address already in use" not in tail(exc.log, 200):
                        raise
                    print(f"localcluster: {exc.component}: port taken meanwhile; starting again", file=sys.stderr)
                    self._stop_processes()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self._stop_processes()
            if isinstance(exc, ClusterError) or not isinstance(exc, Exception):
                raise
            raise ClusterError("cluster", f"start failed: {exc!r}") from exc
        self.timings["total"] = time.monotonic() - t0
        self._ready = True
        self._write_state()

    def stop(self) -> None:
        """SIGTERM in reverse start order, wait (bounded), SIGKILL; then make sure nothing is left running."""
        if not self._procs:
            self.load_state()
        t0 = time.monotonic()
        self._stop_processes()
        with contextlib.suppress(OSError):
            (self.workdir / "state.json").unlink()
        self._ready = False
        self.timings["stop"] = time.monotonic() - t0

    def restart_apiserver(self, downtime: float = 0.0, timeout: float = 60.0) -> float:
        """SIGKILL kube-apiserver, leave it down `downtime` seconds, start it again with the same flags (etcd
        keeps the data). Returns the seconds from the new launch until /readyz answers ok."""
        old = next((p for p in self._procs if p.name == "kube-apiserver"), None)
        if old is None or old.popen is None:
            raise ClusterError("kube-apiserver", "only a cluster started by this process can restart its apiserver")
        old.popen.kill()
        old.popen.wait(10)
        self._procs.remove(old)
        old.log.replace(old.log.with_name(f"kube-apiserver.{int(time.time())}.log"))
        time.sleep(downtime)
        new = self._launch("kube-apiserver", old.cmd)
        ctx = pki.ssl_context(self.pki)
        port = self._ports["apiserver"]
        self._wait(
            [Check("kube-apiserver", "kube-apiserver", lambda: ok(https_get(port, "/readyz", ctx)), new.launched)],
            time.monotonic() + timeout,
        )
        return time.monotonic() - new.launched

    def rss_mib(self) -> dict[str, float]:
        """Resident memory of each running component process, in MiB."""
        out: dict[str, float] = {}
        for p in self._procs:
            rss = rss_mib(p.pid) if alive(p) else None
            if rss is not None:
                out[p.name] = rss
        return out

    def ready(self) -> bool:
        """Every recorded process runs and the apiserver's /readyz answers ok."""
        if not self._procs or not all(alive(p) for p in self._procs) or "apiserver" not in self._ports:
            return False
        try:
            return https_get(self._ports["apiserver"], "/readyz", pki.ssl_context(self.pki)) == (200, "ok")
        except (OSError, http.client.HTTPException):
            return False

    def load_state(self) -> dict[str, Any] | None:
        """The state.json another process (or this one) wrote; its processes and ports become this cluster's."""
        loaded = read_state(self.workdir)
        if loaded is None:
            return None
        state, self._procs = loaded
        self._ports = {k: int(v) for k, v in state.get("ports", {}).items()}
        self.timings = {k: float(v) for k, v in state.get("timings", {}).items()}
        return state

    # ----- start --------------------------------------------------------------------------------------------------

    @property
    def _api(self) -> Api:
        if self._api_client is None:
            raise ClusterError("kube-apiserver", "no API connection (cluster not started)")
        return self._api_client

    def _check_prerequisites(self) -> None:
        missing = [str(p) for p in binaries(rollouts=self.rollouts).values() if not os.access(p, os.X_OK)]
        if not stages_file().is_file():
            missing.append(str(stages_file()))
        if self.rollouts and not sorted(crd_dir().glob("*-crd.yaml")):
            missing.append(f"{crd_dir()}/*-crd.yaml")
        if missing:
            raise ClusterError(
                "binaries",
                "missing: " + ", ".join(missing) + "\n-> run `make cluster-build` (hack/cluster/build.sh) first",
            )
        if shutil.which("openssl") is None:
            raise ClusterError("pki", "openssl is not installed (run `make deps` or apt-get install -y openssl)")
        if self.nodes < 1:
            raise ClusterError("kwok", f"nodes must be >= 1, got {self.nodes}")

    def _clean_workdir(self) -> None:
        # Leftovers of a crashed run in the same directory would hold the etcd data dir and the ports' owners.
        for pid in find_leftovers(self.workdir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name in OWNED_ENTRIES:
            path = self.workdir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        (self.workdir / "logs").mkdir()

    def _launch(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.workdir / "logs" / f"{name}.log"
        with open(log, "wb") as fh:
            popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                # Own session: a Ctrl-C in the terminal that ran `up` does not reach the cluster.
                start_new_session=True,
                preexec_fn=die_with_parent if self.die_with_parent else None,
            )
        proc = Proc(name=name, pid=popen.pid, cmd=args, log=log, launched=time.monotonic(), popen=popen)
        self._procs.append(proc)
        self._write_state()  # record the pid at once, so `down` finds it even if start() never returns
        return proc

    def _start(self, t0: float, deadline: float) -> None:
        b = binaries(rollouts=self.rollouts)
        w = self.workdir
        names = [*components.PORT_NAMES, *(components.ROLLOUTS_PORT_NAMES if self.rollouts else ())]
        self._ports = dict(zip(names, free_ports(len(names)), strict=True))
        port = self._ports

        # etcd first: it needs no PKI, so it starts while openssl runs.
        etcd = self._launch("etcd", components.etcd(b["etcd"], w, port))
        t_pki = time.monotonic()

        def make_pki() -> None:
            pki.make_pki(self.pki, w / "logs" / "openssl.log")
            pki.write_kubeconfig(self.kubeconfig, self.server, self.pki)

        pki_done = in_background("pki", "openssl", make_pki, w / "logs" / "openssl.log")

        def etcd_ready() -> bool:
            status, body = http_get(port["etcd"], "/health")
            return ok((status, body), None) and json.loads(body).get("health") == "true"

        self._wait([Check("etcd", "etcd", etcd_ready, etcd.launched), Check("pki", "pki", pki_done, t_pki)], deadline)

        api = self._launch("kube-apiserver", components.apiserver(b["kube-apiserver"], self.pki, port))
        ctx = pki.ssl_context(self.pki)
        self._api_client = Api(port["apiserver"], ctx)

        def api_ready() -> bool:
            return ok(https_get(port["apiserver"], "/readyz", ctx))

        self._wait([Check("kube-apiserver", "kube-apiserver", api_ready, api.launched)], deadline)

        kubeconfig = self.kubeconfig
        kcm = self._launch(
            "kube-controller-manager",
            components.controller_manager(b["kube-controller-manager"], kubeconfig, self.pki, port),
        )
        sched = self._launch("kube-scheduler", components.scheduler(b["kube-scheduler"], kubeconfig, self.pki, port))
        kwok = self._launch("kwok", components.kwok(b["kwok"], kubeconfig, self.pki, stages_file(), port))

        t_nodes = time.monotonic()

        def create_nodes() -> None:
            for i in range(self.nodes):
                self._api.ok("POST", "/api/v1/nodes", bootstrap.node_manifest(f"kwok-node-{i}"))

        nodes_created = in_background(
            "kube-apiserver", "creating the Nodes", create_nodes, w / "logs" / "kube-apiserver.log"
        )

        def healthz(p: int) -> Callable[[], bool]:
            return lambda: ok(https_get(p, "/healthz", ctx))

        checks = [
            Check("kube-controller-manager", "kube-controller-manager", healthz(port["kcm"]), kcm.launched),
            Check("kube-scheduler", "kube-scheduler", healthz(port["scheduler"]), sched.launched),
            Check("kwok", "kwok", lambda: ok(http_get(port["kwok"], "/healthz"), None), kwok.launched),
            Check("nodes", "kwok", lambda: nodes_created() and bootstrap.nodes_ready(self._api, self.nodes), t_nodes),
            # Pods are rejected by ServiceAccount admission until the controller-manager made this SA.
            Check(
                "default-serviceaccount",
                "kube-controller-manager",
                lambda: self._api.ok("GET", "/api/v1/namespaces/default/serviceaccounts/default") is not None,
                kcm.launched,
            ),
        ]
        if self.rollouts:
            t_crds = time.monotonic()
            crd_names: list[str] = []

            def apply() -> None:
                self._api.ok(
                    "POST", "/api/v1/namespaces", {"metadata": {"name": ROLLOUTS_NAMESPACE}}, accept=(201, 409)
                )
                crd_names.extend(bootstrap.apply_crds(self._api, crd_dir()))

            applied = in_background(
                "kube-apiserver", "applying the Argo Rollouts CRDs", apply, w / "logs" / "kube-apiserver.log"
            )
            checks.append(
                Check(
                    "rollouts-crds",
                    "kube-apiserver",
                    lambda: applied() and bootstrap.crds_established(self._api, crd_names),
                    t_crds,
                    on_ready=lambda: self._start_rollouts(b["rollouts-controller"]),
                )
            )
        self._wait(checks, deadline)

    def _start_rollouts(self, binary: Path) -> list[Check]:
        port = self._ports
        # The controller keeps its config maps and (disabled) leader lease in POD_NAMESPACE.
        env = dict(os.environ, POD_NAMESPACE=ROLLOUTS_NAMESPACE)
        ro = self._launch("rollouts-controller", components.rollouts_controller(binary, self.kubeconfig, port), env=env)

        def ready() -> bool:
            # /healthz answers as soon as the listener is up; the workers start only after the informer caches
            # synced, which the controller logs.
            ok(http_get(port["ro-healthz"], "/healthz"))
            if "Started rollout workers" not in ro.log.read_text(errors="replace"):
                raise RuntimeError("no 'Started rollout workers' in its log yet")
            return True

        return [Check("rollouts-controller", "rollouts-controller", ready, ro.launched)]

    def _wait(self, checks: list[Check], deadline: float) -> None:
        """Polls all checks together, so each one's time is its own, not the sum of those polled before it."""
        pending = list(checks)
        while pending:
            for check in list(pending):
                self._assert_running()
                try:
                    ready = check.probe()
                    check.last_error = "" if ready else "still in progress"
                except ClusterError:
                    raise
                except (OSError, ValueError, RuntimeError, http.client.HTTPException) as exc:
                    ready, check.last_error = False, f"{type(exc).__name__}: {exc}"
                if ready:
                    self.timings[check.name] = time.monotonic() - check.since
                    pending.remove(check)
                    if check.on_ready is not None:
                        pending.extend(check.on_ready())
            if not pending:
                break
            if time.monotonic() > deadline:
                check = pending[0]
                waited = time.monotonic() - check.since
                why = f" (last error: {check.last_error})" if check.last_error else ""
                raise ClusterError(
                    check.component, f"{check.name} not ready after {waited:.1f}s{why}", self._log_of(check.component)
                )
            time.sleep(POLL_SECONDS)

    def _assert_running(self) -> None:
        for p in self._procs:
            if not alive(p):
                code = p.popen.returncode if p.popen is not None else "?"
                raise ClusterError(p.name, f"exited during start-up (exit code {code})", p.log)

    def _log_of(self, component: str) -> Path | None:
        log = self.workdir / "logs" / f"{component}.log"
        return log if log.exists() else None

    # ----- state, adoption, stop ----------------------------------------------------------------------------------

    def _write_state(self) -> None:
        state = {
            "workdir": str(self.workdir),
            "rollouts": self.rollouts,
            "nodes": self.nodes,
            "ready": self._ready,
            "server": f"https://127.0.0.1:{self._ports['apiserver']}" if "apiserver" in self._ports else None,
            "kubeconfig": str(self.kubeconfig),
            "ports": self._ports,
            "timings": self.timings,
            "versions": versions(),
        }
        write_state_file(self.workdir, state, self._procs)

    def _adopt(self) -> bool:
        """Reuse a fully started cluster that another process left running in workdir; False if there is none."""
        state = self.load_state()
        if state is None:
            return False
        expected = [*_CLIENTS, *(["rollouts-controller"] if state.get("rollouts") else [])]
        running = state.get("ready") and [p.name for p in self._procs] == expected and self.ready()
        if running:
            self._api_client = Api(self._ports["apiserver"], pki.ssl_context(self.pki))
        else:
            self._stop_processes()  # a stale or half-started cluster: clear it away, then start afresh
            return False
        if bool(state.get("rollouts")) != self.rollouts or int(state.get("nodes", 0)) != self.nodes:
            self._procs, self._ports = [], {}  # not ours to stop
            raise ClusterError(
                "cluster",
                f"a cluster with rollouts={state.get('rollouts')} nodes={state.get('nodes')}"
                f" is already running in {self.workdir}; stop it first (python -m hack.localcluster down)",
            )
        self._ready = True
        self.adopted = True
        return True

    def _stop_processes(self) -> None:
        procs, self._procs = list(self._procs), []
        stop_all(procs, self.workdir)
