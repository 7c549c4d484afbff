"""`robustness-gate run` as a child process, with its CPU time, peak memory and metrics readable."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.scale.lab import die_with_parent_prefix, free_port
from bench.scale.measure import cpu_seconds, status_kib

# Loopback only: no proxy, whatever the environment says.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_text(url: str, timeout: float = 10.0) -> str:
    with _HTTP.open(url, timeout=timeout) as response:
        body: bytes = response.read()
    return body.decode()


class OperatorProcess:
    def __init__(self, kubeconfig: Path, namespace: str, log: Path) -> None:
        self.kubeconfig, self.namespace, self.log = kubeconfig, namespace, log
        self.http_port, self.metrics_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "start() first"
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        command = [
            *die_with_parent_prefix(),
            sys.executable,
            "-m",
            "robustness_gate.cli",
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--namespace",
            self.namespace,
            "--http-address",
            f"127.0.0.1:{self.http_port}",
            "--metrics-address",
            f"127.0.0.1:{self.metrics_port}",
        ]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited with {self.proc.returncode}; see {self.log}")
            with contextlib.suppress(urllib.error.URLError, OSError):
                if _HTTP.open(f"http://127.0.0.1:{self.http_port}/readyz", timeout=2).status == 200:
                    return self
            time.sleep(0.2)
        raise TimeoutError(f"the operator was not ready within {timeout:.0f}s; see {self.log}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_seconds(self) -> float:
        return cpu_seconds(Path(f"/proc/{self.pid}/stat").read_text())

    def peak_rss_mib(self) -> float:
        return status_kib(Path(f"/proc/{self.pid}/status").read_text(), "VmHWM") / 1024

    def metrics(self) -> str:
        return http_text(self.metrics_url)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
