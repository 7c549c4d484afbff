#!/usr/bin/env python3
"""A throwaway local Kubernetes cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok fake
nodes and (optionally) the Argo Rollouts controller, all on 127.0.0.1 with free ports.

The binaries come from ``hack/cluster/build.sh`` (``make cluster-build``) and are looked up in :func:`testbin`.
Everything the cluster writes (PKI, etcd data, logs, the admin kubeconfig and ``state.json`` with the pids) lives in
one work directory, and every process has that directory on its command line, so leftovers can always be found.

Library use::

    with LocalCluster(workdir=Path("/tmp/c1")) as c:   # start() ... stop()
        client = kubernetes.config.new_client_from_config(str(c.kubeconfig))

Command line (the processes outlive ``up``; ``down`` stops them from ``state.json``)::

    python hack/localcluster.py up [--dir DIR] [--no-rollouts] [--nodes N]
    python hack/localcluster.py status [--dir DIR]
    python hack/localcluster.py down [--dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
VERSIONS_ENV = REPO_ROOT / "hack" / "cluster" / "versions.env"
DEFAULT_DIR = REPO_ROOT / ".cluster"

# Start order; stop() goes in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "rollouts-controller")
ROLLOUTS_NAMESPACE = "argo-rollouts"
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
FIELD_MANAGER = "robustness-gate-localcluster"
# kwok only manages nodes carrying this annotation, so it never touches a Node it did not get from us.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
ADMIN_CN = "robustness-gate-admin"
LOG_TAIL_LINES = 30
TERM_GRACE_SECONDS = 10.0
POLL_SECONDS = 0.1
# Files and directories start() owns inside the work directory; a fresh start removes only these.
OWNED_ENTRIES = ("pki", "etcd", "logs", "admin.kubeconfig", "state.json")


class ClusterError(RuntimeError):
    """A component failed to start, become ready or stop; the message ends with the tail of its log."""

    def __init__(self, component: str, problem: str, log: Path | None = None) -> None:
        self.component = component
        self.problem = problem
        self.log = log
        message = f"{component}: {problem}"
        if log is not None:
            message += f"\n----- last {LOG_TAIL_LINES} lines of {log} -----\n{_tail(log, LOG_TAIL_LINES)}"
        super().__init__(message)


def testbin() -> Path:
    """Where build.sh puts binaries, CRDs and kwok stages; ``TESTBIN`` overrides it as it does for build.sh."""
    env = os.environ.get("TESTBIN")
    return Path(env) if env else Path.home() / ".cache" / "robustness-gate" / "testbin"


def versions() -> dict[str, str]:
    """The pinned versions from hack/cluster/versions.env (plain KEY=value lines, # comments)."""
    out: dict[str, str] = {}
    for raw in VERSIONS_ENV.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip().strip("\"'")
    return out


def _tail(path: Path, lines: int) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------------------------------
# Processes


@dataclass
class _Proc:
    name: str
    pid: int
    cmd: list[str]
    log: Path
    launched: float  # time.monotonic() at launch
    popen: subprocess.Popen[bytes] | None = None  # None when loaded from state.json by another process


def _proc_state(pid: int) -> str | None:
    """The one-letter state from /proc/<pid>/stat, or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may contain spaces; the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _alive(proc: _Proc) -> bool:
    if proc.popen is not None:
        return proc.popen.poll() is None  # also reaps our own exited children
    # Not our child: a zombie (Z) or dead (X) process counts as gone, and a recycled pid is not ours.
    state = _proc_state(proc.pid)
    return state is not None and state not in ("Z", "X") and _cmdline(proc.pid)[:1] == proc.cmd[:1]


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _ancestors() -> set[int]:
    """This process and its ancestors: their command lines may name the work directory too (``down --dir``)."""
    pids: set[int] = set()
    pid = os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[2])
    return pids


def find_leftovers(workdir: Path) -> list[int]:
    """Pids of live cluster processes (one of COMPONENTS) whose command line refers to a file under workdir."""
    needle = str(workdir.resolve()) + os.sep
    skip = _ancestors()
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        pid = int(entry)
        args = _cmdline(pid)
        if not args or _proc_state(pid) in (None, "Z", "X"):
            continue
        # Only our binaries (bin/<component>-<version>), so e.g. a `tail -f DIR/logs/etcd.log` is left alone.
        if os.path.basename(args[0]).startswith(COMPONENTS) and any(needle in a for a in args[1:]):
            found.append(pid)
    return found


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: have the kernel SIGTERM the child when the process that started it exits (even on SIGKILL)."""
    libc: Any = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# ---------------------------------------------------------------------------------------------------------------------
# Ports and HTTP


def _port_is_free(port: int) -> bool:
    # Check both the loopback and the wildcard address: rollouts-controller binds 0.0.0.0.
    for host in ("127.0.0.1", "0.0.0.0"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def _free_ports(count: int) -> list[int]:
    """Distinct free ports below the ephemeral range, so no outgoing connection can take one meanwhile."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    lo, hi = (20000, low - 1) if low > 21000 else (low // 2, low - 1)
    ports: list[int] = []
    for _ in range(2000):
        p = random.randint(lo, hi)
        if p not in ports and _port_is_free(p):
            ports.append(p)
            if len(ports) == count:
                return ports
    raise ClusterError("ports", f"no {count} free ports found on 127.0.0.1 in {lo}-{hi}")


class _Api:
    """Just enough of a Kubernetes REST client for bootstrapping (the kubernetes package is slow to import)."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.port = port
        self.ctx = ctx

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=5)
        try:
            headers = {"Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed

    def ok(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        accept: Iterable[int] = (200, 201),
    ) -> Any:
        status, parsed = self.request(method, path, body, content_type)
        if status not in tuple(accept):
            raise RuntimeError(f"{method} {path} -> HTTP {status}: {str(parsed)[:300]}")
        return parsed


def _https_get(port: int, path: str, ctx: ssl.SSLContext) -> tuple[int, str]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def _http_get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def _ok(response: tuple[int, str], want: str | None = "ok") -> bool:
    """For probes: True on HTTP 200 (with body ``want``); otherwise raises, so the timeout message shows why."""
    status, body = response
    if status != 200 or (want is not None and body.strip() != want):
        # /readyz and /healthz list every check; the failing ones start with "[-]".
        failing = [line for line in body.splitlines() if line.startswith("[-]")]
        raise RuntimeError(f"HTTP {status}: {'; '.join(failing) if failing else body.strip()[:300]}")
    return True


def _condition(obj: Any, kind: str) -> bool:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conds)


def _in_background(component: str, what: str, fn: Callable[[], None], log: Path | None = None) -> Callable[[], bool]:
    """Runs fn in a thread while the main thread keeps polling the processes; the returned probe is True once fn
    has finished and raises ClusterError if it failed."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the main thread by probe()
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"localcluster-{component}", daemon=True)
    thread.start()

    def probe() -> bool:
        if thread.is_alive():
            return False
        if errors:
            if isinstance(errors[0], ClusterError):
                raise errors[0]
            raise ClusterError(component, f"{what} failed: {errors[0]!r}", log) from errors[0]
        return True

    return probe


# ---------------------------------------------------------------------------------------------------------------------
# Readiness


@dataclass
class _Check:
    """One readiness condition, polled until ``probe`` returns True; failures are blamed on ``component``."""

    name: str  # key in LocalCluster.timings
    component: str
    probe: Callable[[], bool]
    since: float  # monotonic start of what is being timed
    on_ready: Callable[[], list[_Check]] | None = None  # may start the next component and add its checks
    last_error: str = ""


# ---------------------------------------------------------------------------------------------------------------------


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
    _procs: list[_Proc] = field(default_factory=list, init=False, repr=False)
    _ports: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _ready: bool = field(default=False, init=False, repr=False)
    _api_client: _Api | None = field(default=None, init=False, repr=False)
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
    def _api(self) -> _Api:
        if self._api_client is None:
            raise ClusterError("kube-apiserver", "no API connection (cluster not started)")
        return self._api_client

    @property
    def pids(self) -> dict[str, int]:
        """Component name -> pid of the processes started (or adopted)."""
        return {p.name: p.pid for p in self._procs}

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout: float = 180) -> None:
        """Start every component and wait until all are ready; no-op if this cluster is already up.

        A cluster left running in ``workdir`` by another process (e.g. ``localcluster.py up``) is adopted. On any
        failure everything started here is stopped again and ClusterError names the component and its log tail.
        """
        if self._ready and all(_alive(p) for p in self._procs):
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
                    if attempt == 2 or exc.log is None or "address already in use" not in _tail(exc.log, 200):
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
            self._load_state()
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
        ctx = self._ssl_context(self.workdir / "pki")
        port = self._ports["apiserver"]
        self._wait(
            [_Check("kube-apiserver", "kube-apiserver", lambda: _ok(_https_get(port, "/readyz", ctx)), new.launched)],
            time.monotonic() + timeout,
        )
        return time.monotonic() - new.launched

    def rss_mib(self) -> dict[str, float]:
        """Resident memory of each running component process, in MiB."""
        out: dict[str, float] = {}
        for p in self._procs:
            rss = _rss_mib(p.pid) if _alive(p) else None
            if rss is not None:
                out[p.name] = rss
        return out

    # ----- start --------------------------------------------------------------------------------------------------

    def _binaries(self) -> dict[str, Path]:
        v = versions()
        bin_dir = testbin() / "bin"
        names = {
            "etcd": f"etcd-{v['ETCD_VERSION']}",
            "kube-apiserver": f"kube-apiserver-{v['KUBE_VERSION']}",
            "kube-controller-manager": f"kube-controller-manager-{v['KUBE_VERSION']}",
            "kube-scheduler": f"kube-scheduler-{v['KUBE_VERSION']}",
            "kwok": f"kwok-{v['KWOK_VERSION']}",
        }
        if self.rollouts:
            names["rollouts-controller"] = f"rollouts-controller-{v['ROLLOUTS_VERSION']}"
        return {k: bin_dir / n for k, n in names.items()}

    def _stages_file(self) -> Path:
        return testbin() / "kwok" / f"kwok-{versions()['KWOK_VERSION']}-stages.yaml"

    def _crd_dir(self) -> Path:
        return testbin() / "crds" / f"argo-rollouts-{versions()['ROLLOUTS_VERSION']}"

    def _check_prerequisites(self) -> None:
        missing = [str(p) for p in self._binaries().values() if not os.access(p, os.X_OK)]
        if not self._stages_file().is_file():
            missing.append(str(self._stages_file()))
        if self.rollouts and not sorted(self._crd_dir().glob("*-crd.yaml")):
            missing.append(f"{self._crd_dir()}/*-crd.yaml")
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

    def _launch(self, name: str, args: list[str], env: dict[str, str] | None = None) -> _Proc:
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
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        proc = _Proc(name=name, pid=popen.pid, cmd=args, log=log, launched=time.monotonic(), popen=popen)
        self._procs.append(proc)
        self._write_state()  # record the pid at once, so `down` finds it even if start() never returns
        return proc

    def _start(self, t0: float, deadline: float) -> None:
        b = self._binaries()
        w = self.workdir
        pki = w / "pki"
        names = ["etcd", "peer", "apiserver", "kcm", "scheduler", "kwok"]
        if self.rollouts:
            names += ["ro-healthz", "ro-metrics"]
        self._ports = dict(zip(names, _free_ports(len(names)), strict=True))
        port = self._ports

        # etcd first: it needs no PKI, so it starts while openssl runs.
        etcd = self._launch(
            "etcd",
            [
                str(b["etcd"]),
                "--name=node0",
                f"--data-dir={w / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{port['etcd']}",
                f"--advertise-client-urls=http://127.0.0.1:{port['etcd']}",
                f"--listen-peer-urls=http://127.0.0.1:{port['peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{port['peer']}",
                f"--initial-cluster=node0=http://127.0.0.1:{port['peer']}",
                "--unsafe-no-fsync=true",
                "--auto-compaction-retention=1",
                "--quota-backend-bytes=8589934592",
                "--log-level=warn",
            ],
        )
        t_pki = time.monotonic()

        def make_pki() -> None:
            self._make_pki(pki)
            self._write_kubeconfig(pki)

        pki_done = _in_background("pki", "openssl", make_pki, w / "logs" / "openssl.log")

        def etcd_ready() -> bool:
            status, body = _http_get(port["etcd"], "/health")
            return _ok((status, body), None) and json.loads(body).get("health") == "true"

        self._wait([_Check("etcd", "etcd", etcd_ready, etcd.launched), _Check("pki", "pki", pki_done, t_pki)], deadline)

        # ServiceAccount admission stays on (the default), since kube-controller-manager creates the SAs.
        # A loopback advertise address needs --endpoint-reconciler-type=none (no valid Endpoints IP).
        api = self._launch(
            "kube-apiserver",
            [
                str(b["kube-apiserver"]),
                f"--etcd-servers=http://127.0.0.1:{port['etcd']}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port['apiserver']}",
                f"--cert-dir={pki}",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                # Without a request-header CA the extension-apiserver-authentication config map lacks one, and the
                # controller-manager and scheduler log an error about it every few seconds. The admin cert doubles as
                # the front-proxy client (as in kwokctl); it may do everything anyway.
                f"--requestheader-client-ca-file={pki / 'ca.crt'}",
                f"--requestheader-allowed-names={ADMIN_CN}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki / 'admin.crt'}",
                f"--proxy-client-key-file={pki / 'admin.key'}",
            ],
        )
        ctx = self._ssl_context(pki)
        self._api_client = _Api(port["apiserver"], ctx)

        def api_ready() -> bool:
            return _ok(_https_get(port["apiserver"], "/readyz", ctx))

        self._wait([_Check("kube-apiserver", "kube-apiserver", api_ready, api.launched)], deadline)

        kubeconfig = str(self.kubeconfig)
        # Both serve HTTPS with the cluster's serving cert, so the probes can verify them against our CA.
        common = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            "--bind-address=127.0.0.1",
            f"--tls-cert-file={pki / 'serving.crt'}",
            f"--tls-private-key-file={pki / 'serving.key'}",
            "--leader-elect=false",
        ]
        kcm = self._launch(
            "kube-controller-manager",
            [
                str(b["kube-controller-manager"]),
                *common,
                f"--secure-port={port['kcm']}",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--use-service-account-credentials=false",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
            ],
        )
        sched = self._launch(
            "kube-scheduler",
            [
                str(b["kube-scheduler"]),
                *common,
                f"--secure-port={port['scheduler']}",
            ],
        )
        # kwok serves healthz (plain HTTP; TLS on the same port via cmux) and the fake kubelet endpoint.
        kwok = self._launch(
            "kwok",
            [
                str(b["kwok"]),
                f"--kubeconfig={kubeconfig}",
                f"--config={self._stages_file()}",
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION[0]}={KWOK_NODE_ANNOTATION[1]}",
                f"--cidr={POD_CIDR}",
                "--node-ip=127.0.0.1",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{port['kwok']}",
                f"--node-port={port['kwok']}",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
            ],
        )

        t_nodes = time.monotonic()

        def create_nodes() -> None:
            for i in range(self.nodes):
                self._api.ok("POST", "/api/v1/nodes", self._node(f"kwok-node-{i}"))

        nodes_created = _in_background(
            "kube-apiserver", "creating the Nodes", create_nodes, w / "logs" / "kube-apiserver.log"
        )

        def healthz(p: int) -> Callable[[], bool]:
            return lambda: _ok(_https_get(p, "/healthz", ctx))

        checks = [
            _Check("kube-controller-manager", "kube-controller-manager", healthz(port["kcm"]), kcm.launched),
            _Check("kube-scheduler", "kube-scheduler", healthz(port["scheduler"]), sched.launched),
            _Check("kwok", "kwok", lambda: _ok(_http_get(port["kwok"], "/healthz"), None), kwok.launched),
            _Check("nodes", "kwok", lambda: nodes_created() and self._nodes_ready(), t_nodes),
            # Pods are rejected by ServiceAccount admission until the controller-manager made this SA.
            _Check(
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
                crd_names.extend(self._apply_crds())

            applied = _in_background(
                "kube-apiserver", "applying the Argo Rollouts CRDs", apply, w / "logs" / "kube-apiserver.log"
            )
            checks.append(
                _Check(
                    "rollouts-crds",
                    "kube-apiserver",
                    lambda: applied() and self._crds_established(crd_names),
                    t_crds,
                    on_ready=lambda: self._start_rollouts(b["rollouts-controller"]),
                )
            )
        self._wait(checks, deadline)

    def _start_rollouts(self, binary: Path) -> list[_Check]:
        port = self._ports
        # The controller keeps its config maps and (disabled) leader lease in POD_NAMESPACE.
        env = dict(os.environ, POD_NAMESPACE=ROLLOUTS_NAMESPACE)
        ro = self._launch(
            "rollouts-controller",
            [
                str(binary),
                f"--kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                f"--healthzPort={port['ro-healthz']}",
                f"--metricsport={port['ro-metrics']}",
                "--loglevel=info",
            ],
            env=env,
        )

        def ready() -> bool:
            # /healthz answers as soon as the listener is up; the workers start only after the informer caches
            # synced, which the controller logs.
            _ok(_http_get(port["ro-healthz"], "/healthz"))
            if "Started rollout workers" not in ro.log.read_text(errors="replace"):
                raise RuntimeError("no 'Started rollout workers' in its log yet")
            return True

        return [_Check("rollouts-controller", "rollouts-controller", ready, ro.launched)]

    def _wait(self, checks: list[_Check], deadline: float) -> None:
        """Polls all checks together, so each one's time is its own, not the sum of those polled before it."""
        pending = list(checks)
        while pending:
            for check in list(pending):
                self._assert_running()
                try:
                    ok = check.probe()
                    check.last_error = "" if ok else "still in progress"
                except ClusterError:
                    raise
                except (OSError, ValueError, RuntimeError, http.client.HTTPException) as exc:
                    ok, check.last_error = False, f"{type(exc).__name__}: {exc}"
                if ok:
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
            if not _alive(p):
                code = p.popen.returncode if p.popen is not None else "?"
                raise ClusterError(p.name, f"exited during start-up (exit code {code})", p.log)

    def _log_of(self, component: str) -> Path | None:
        log = self.workdir / "logs" / f"{component}.log"
        return log if log.exists() else None

    # ----- PKI, kubeconfig, API objects ---------------------------------------------------------------------------

    def _make_pki(self, pki: Path) -> None:
        """A CA, one serving cert (SAN 127.0.0.1) for every component, an admin client cert in system:masters
        and the service-account key pair. The explicit CA/SKI/AKI extensions satisfy strict TLS clients."""
        pki.mkdir(parents=True)
        (pki / "srv.ext").write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
        )
        (pki / "cli.ext").write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid,issuer\n"
        )
        days = "365"
        steps = [
            [
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-sha256",
                "-days",
                days,
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-subj",
                "/CN=robustness-gate-local-ca",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-addext",
                "subjectKeyIdentifier=hash",
            ],
            [
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "serving.key",
                "-out",
                "serving.csr",
                "-subj",
                "/CN=kube-apiserver",
            ],
            [
                "x509",
                "-req",
                "-sha256",
                "-days",
                days,
                "-in",
                "serving.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "srv.ext",
                "-out",
                "serving.crt",
            ],
            [
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "admin.key",
                "-out",
                "admin.csr",
                "-subj",
                f"/O=system:masters/CN={ADMIN_CN}",
            ],
            [
                "x509",
                "-req",
                "-sha256",
                "-days",
                days,
                "-in",
                "admin.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                "cli.ext",
                "-out",
                "admin.crt",
            ],
            ["genrsa", "-out", "sa.key", "2048"],
            ["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
        ]
        log = self.workdir / "logs" / "openssl.log"
        with open(log, "ab") as fh:
            for step in steps:
                rc = subprocess.run(
                    ["openssl", *step],
                    cwd=pki,
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    check=False,
                ).returncode
                if rc != 0:
                    raise ClusterError("pki", f"openssl {' '.join(step[:2])} failed (exit {rc})", log)

    def _write_kubeconfig(self, pki: Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self._ports['apiserver']}",
                        "certificate-authority": str(pki / "ca.crt"),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {"client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")},
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin", "namespace": "default"}}],
            "current-context": "local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))

    def _ssl_context(self, pki: Path) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    @staticmethod
    def _node(name: str) -> dict[str, Any]:
        # Node status may be set on create (that is how kubelets register); kwok's node-initialize stage then
        # adds the Ready conditions, the InternalIP (--node-ip) and the kubelet port (--node-port).
        resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {"node.alpha.kubernetes.io/ttl": "0", KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1]},
                "labels": {
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "status": {"allocatable": resources, "capacity": resources},
        }

    def _nodes_ready(self) -> bool:
        items = self._api.ok("GET", "/api/v1/nodes")["items"]
        not_ready = [n["metadata"]["name"] for n in items if not _condition(n, "Ready")]
        if len(items) < self.nodes or not_ready:
            raise RuntimeError(f"{len(items)} of {self.nodes} nodes exist; not Ready: {not_ready}")
        return True

    def _apply_crds(self) -> list[str]:
        # Server-side apply: the CRDs are too big for client-side apply's last-applied annotation.
        names: list[str] = []
        for path in sorted(self._crd_dir().glob("*-crd.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                if not doc:
                    continue
                name = doc["metadata"]["name"]
                self._api.ok(
                    "PATCH",
                    f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
                    f"?fieldManager={FIELD_MANAGER}&force=true",
                    doc,
                    "application/apply-patch+yaml",
                )
                names.append(name)
        return names

    def _crds_established(self, names: list[str]) -> bool:
        for name in names:
            crd = self._api.ok("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            if not _condition(crd, "Established"):
                raise RuntimeError(f"CRD {name} is not Established yet")
        return True

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
            "processes": [{"name": p.name, "pid": p.pid, "cmd": p.cmd, "log": str(p.log)} for p in self._procs],
            "timings": self.timings,
            "versions": versions(),
        }
        tmp = self.workdir / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.workdir / "state.json")

    def _load_state(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads((self.workdir / "state.json").read_text())
        except (OSError, ValueError):
            return None
        self._ports = {k: int(v) for k, v in state.get("ports", {}).items()}
        self.timings = {k: float(v) for k, v in state.get("timings", {}).items()}
        self._procs = [
            _Proc(name=p["name"], pid=int(p["pid"]), cmd=list(p["cmd"]), log=Path(p["log"]), launched=0.0)
            for p in state.get("processes", [])
        ]
        return state

    def _adopt(self) -> bool:
        """Reuse a fully started cluster that another process left running in workdir; False if there is none."""
        state = self._load_state()
        if state is None:
            return False
        expected = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
        if state.get("rollouts"):
            expected.append("rollouts-controller")
        running = (
            state.get("ready") and [p.name for p in self._procs] == expected and all(_alive(p) for p in self._procs)
        )
        if running:
            try:
                self._api_client = _Api(self._ports["apiserver"], self._ssl_context(self.workdir / "pki"))
                running = _https_get(self._ports["apiserver"], "/readyz", self._api.ctx) == (200, "ok")
            except (OSError, KeyError, http.client.HTTPException):
                running = False
        if not running:
            self._stop_processes()  # a stale or half-started cluster: clear it away, then start afresh
            return False
        if bool(state.get("rollouts")) != self.rollouts or int(state.get("nodes", 0)) != self.nodes:
            self._procs, self._ports = [], {}  # not ours to stop
            raise ClusterError(
                "cluster",
                f"a cluster with rollouts={state.get('rollouts')} nodes={state.get('nodes')}"
                f" is already running in {self.workdir}; stop it first (localcluster.py down)",
            )
        self._ready = True
        self.adopted = True
        return True

    def _stop_processes(self) -> None:
        procs = list(self._procs)
        # Clients first, all at once (reverse start order); then the apiserver while etcd is still there; then etcd.
        clients = [p for p in reversed(procs) if p.name not in ("kube-apiserver", "etcd")]
        self._terminate(clients)
        self._terminate([p for p in procs if p.name == "kube-apiserver"])
        self._terminate([p for p in procs if p.name == "etcd"])
        self._procs = []
        # Anything else of ours still running with workdir on its command line (e.g. from a start that crashed
        # before state.json was written) is killed; only a process that survives SIGKILL is an error.
        left = find_leftovers(self.workdir)
        if left:
            print(f"localcluster: killing leftover processes of {self.workdir}: {left}", file=sys.stderr)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            end = time.monotonic() + 5
            while time.monotonic() < end and find_leftovers(self.workdir):
                time.sleep(0.05)
            still = find_leftovers(self.workdir)
            if still:
                raise ClusterError("stop", f"processes {still} survived SIGKILL")

    @staticmethod
    def _terminate(procs: list[_Proc]) -> None:
        for p in procs:
            if _alive(p):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)
        end = time.monotonic() + TERM_GRACE_SECONDS
        while time.monotonic() < end and any(_alive(p) for p in procs):
            time.sleep(0.05)
        for p in procs:
            if _alive(p):
                print(
                    f"localcluster: {p.name} (pid {p.pid}) ignored SIGTERM for {TERM_GRACE_SECONDS:.0f}s; killing it",
                    file=sys.stderr,
                )
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
            if p.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.popen.wait(timeout=5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_alive(p) for p in procs):
            time.sleep(0.05)


# ---------------------------------------------------------------------------------------------------------------------
# CLI


def _print_timings(timings: dict[str, float]) -> None:
    for name, secs in timings.items():
        print(f"  {name:<26} {secs:6.2f} s")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"work directory (default: {DEFAULT_DIR})")
    parser.add_argument("--no-rollouts", action="store_true", help="without the Argo Rollouts controller and CRDs")
    parser.add_argument("--nodes", type=int, default=2, help="number of kwok fake nodes (default: 2)")
    parser.add_argument("--timeout", type=float, default=180, help="start-up timeout in seconds (default: 180)")
    args = parser.parse_args(argv)
    cluster = LocalCluster(workdir=args.dir, rollouts=not args.no_rollouts, nodes=args.nodes)

    if args.command == "up":
        # Ctrl-C or a SIGTERM while starting: stop what was started (start() does that on any exception).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            cluster.start(timeout=args.timeout)
        except ClusterError as exc:
            print(f"localcluster: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("localcluster: interrupted; stopped what had been started", file=sys.stderr)
            return 130
        if cluster.adopted:
            print(f"cluster already running in {cluster.workdir} (server {cluster.server}); its start-up times:")
        else:
            print(f"cluster up in {cluster.workdir} (server {cluster.server})")
        print("ready after (each from its own start; total from the beginning):")
        _print_timings(cluster.timings)
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        return 0

    if args.command == "down":
        try:
            cluster.stop()
        except ClusterError as exc:
            print(f"localcluster: {exc}", file=sys.stderr)
            return 1
        print(f"stopped in {cluster.timings['stop']:.2f} s; no process left with {cluster.workdir} on its command line")
        return 0

    state = cluster._load_state()
    if state is None:
        left = find_leftovers(cluster.workdir)
        print(f"no cluster in {cluster.workdir}" + (f" (but leftover processes: {left})" if left else ""))
        return 1
    rss = cluster.rss_mib()
    all_alive = True
    for p in cluster._procs:
        alive = _alive(p)
        all_alive &= alive
        mem = f"{rss[p.name]:7.1f} MiB" if p.name in rss else ""
        print(f"  {p.name:<26} pid {p.pid:<8} {'running' if alive else 'NOT RUNNING':<12} {mem}")
    ready = False
    if all_alive and "apiserver" in cluster._ports:
        with contextlib.suppress(OSError, http.client.HTTPException):
            ctx = cluster._ssl_context(cluster.workdir / "pki")
            ready = _https_get(cluster._ports["apiserver"], "/readyz", ctx) == (200, "ok")
    print(f"server {state.get('server')}: {'ready' if ready else 'NOT READY'}; kubeconfig {cluster.kubeconfig}")
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
