"""Child processes and loopback ports, as the lab's servers use them.

Every child the lab starts must stop by itself when the process that started it dies (a killed test run
leaves nothing behind), and every server binds 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def die_with_parent_prefix() -> list[str]:
    """Command prefix that makes a child get SIGTERM when this process dies (Linux ``setpriv``).

    The "parent" is the thread that spawned the child, so spawn from a thread that outlives the child
    (pytest fixtures do).
    """
    setpriv = shutil.which("setpriv")
    if setpriv and sys.platform.startswith("linux"):
        return [setpriv, "--pdeathsig", "TERM", "--"]
    return []


def die_with_parent() -> None:
    """preexec_fn: the kernel SIGTERMs the child when the thread that started it exits (even on SIGKILL)."""
    libc: Any = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def module_command(module: str) -> list[str]:
    """The command that runs one of the lab's modules (``hack.fakeservice``) in a child that dies with us."""
    return [*die_with_parent_prefix(), sys.executable, "-m", module]


def module_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for :func:`module_command`: the repository root importable whatever the cwd."""
    path = os.environ.get("PYTHONPATH")
    root = str(REPO_ROOT)
    return {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root, **(extra or {})}


def terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> int | None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=grace)
    return proc.returncode


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a text file ('' if it cannot be read)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Started:
    """A lab server or child process: ``with X(...) as x`` starts it and stops it on leaving the block."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
