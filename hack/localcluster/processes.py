"""The cluster's processes: what was launched (and recorded in state.json), whether it still runs, how much memory
it holds, how it is stopped, and the leftovers of a run that crashed."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hack.localcluster.config import COMPONENTS, ClusterError

TERM_GRACE_SECONDS = 10.0


@dataclass
class Proc:
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


def alive(proc: Proc) -> bool:
    if proc.popen is not None:
        return proc.popen.poll() is None  # also reaps our own exited children
    # Not our child: a zombie (Z) or dead (X) process counts as gone, and a recycled pid is not ours.
    state = _proc_state(proc.pid)
    return state is not None and state not in ("Z", "X") and _cmdline(proc.pid)[:1] == proc.cmd[:1]


def rss_mib(pid: int) -> float | None:
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


def kill_leftovers(workdir: Path) -> None:
    """SIGKILL what find_leftovers finds; only a process that survives SIGKILL is an error."""
    left = find_leftovers(workdir)
    if not left:
        return
    print(f"localcluster: killing leftover processes of {workdir}: {left}", file=sys.stderr)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 5
    while time.monotonic() < end and find_leftovers(workdir):
        time.sleep(0.05)
    still = find_leftovers(workdir)
    if still:
        raise ClusterError("stop", f"processes {still} survived SIGKILL")


def terminate(procs: list[Proc]) -> None:
    """SIGTERM all at once, wait (bounded), SIGKILL the ones that ignored it."""
    for p in procs:
        if alive(p):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
    end = time.monotonic() + TERM_GRACE_SECONDS
    while time.monotonic() < end and any(alive(p) for p in procs):
        time.sleep(0.05)
    for p in procs:
        if alive(p):
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
    while time.monotonic() < deadline and any(alive(p) for p in procs):
        time.sleep(0.05)


def stop_all(procs: list[Proc], workdir: Path) -> None:
    """Clients first, all at once (reverse start order); then the apiserver while etcd is still there; then etcd.
    Anything else of ours still running with workdir on its command line (e.g. from a start that crashed before
    state.json was written) is killed."""
    terminate([p for p in reversed(procs) if p.name not in ("kube-apiserver", "etcd")])
    terminate([p for p in procs if p.name == "kube-apiserver"])
    terminate([p for p in procs if p.name == "etcd"])
    kill_leftovers(workdir)


# ---------------------------------------------------------------------------------------------------------------------
# state.json: what `down`, `status` and an adopting process read


def write_state(workdir: Path, state: dict[str, Any], procs: list[Proc]) -> None:
    record = {**state, "processes": [{"name": p.name, "pid": p.pid, "cmd": p.cmd, "log": str(p.log)} for p in procs]}
    tmp = workdir / "state.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(workdir / "state.json")


def read_state(workdir: Path) -> tuple[dict[str, Any], list[Proc]] | None:
    try:
        state: dict[str, Any] = json.loads((workdir / "state.json").read_text())
    except (OSError, ValueError):
        return None
    procs = [
        Proc(name=p["name"], pid=int(p["pid"]), cmd=list(p["cmd"]), log=Path(p["log"]), launched=0.0)
        for p in state.get("processes", [])
    ]
    return state, procs


# ---------------------------------------------------------------------------------------------------------------------
# Ports


def _port_is_free(port: int) -> bool:
    # Check both the loopback and the wildcard address: rollouts-controller binds 0.0.0.0.
    for host in ("127.0.0.1", "0.0.0.0"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_ports(count: int) -> list[int]:
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
