"""Where the operator's CPU goes: py-spy samples of the thread holding the GIL, grouped by layer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# A sample counts for the innermost of these layers on its stack: JSON decoding or TLS inside the
# Kubernetes client is the client's cost. Only samples under none of them go to a generic layer below.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("judge and statistics", ("robustness_gate/judge/", "robustness_gate/stats/", "scipy/", "numpy/")),
    ("query assembly", ("robustness_gate/metrics/source.py", "robustness_gate/metrics/queries.py")),
    ("look cache", ("robustness_gate/metrics/cache.py", "robustness_gate/metrics/gate_sources.py")),
    (
        "Prometheus client (requests, JSON)",
        ("prometheus_api_client/", "robustness_gate/metrics/prometheus.py", "requests/"),
    ),
    ("Kubernetes client (urllib3, TLS, JSON)", ("kubernetes/", "robustness_gate/kube.py")),
    ("targets' watch cache", ("robustness_gate/watched.py",)),
    ("status model (pydantic)", ("pydantic/", "pydantic_core/", "robustness_gate/api/")),
    (
        "controller and targets",
        (
            "robustness_gate/controller.py",
            "robustness_gate/targets/",
            "robustness_gate/analysis.py",
            "robustness_gate/policy.py",
        ),
    ),
    ("kopf and asyncio", ("kopf/", "asyncio/", "aiohttp/")),
    ("metrics endpoint", ("prometheus_client/",)),
)
GENERIC: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("HTTP, TLS, JSON and sockets", ("urllib3/", "ssl.py", "http/client.py", "socket.py", "json/")),
    ("threads and logging", ("threading.py", "logging/")),
)
OTHER = "other"


@dataclass(frozen=True)
class Profile:
    samples: int
    layers: list[tuple[str, float]]  # layer, share of samples; largest first
    functions: list[tuple[str, float]]  # innermost frame, share of samples; largest first


def short_frame(frame: str) -> str:
    """`function (path:line)` with the path from the package on (site-packages, the stdlib, this repository)."""
    for marker in ("/site-packages/", "/lib/python3.11/", "/lib/python3.12/", "/operator/"):
        if marker in frame:
            head, _, rest = frame.partition(" (")
            return f"{head} ({rest.split(marker, 1)[1]}"
    return frame


def layer_of(stack: list[str]) -> str:
    for layers in (LAYERS, GENERIC):
        for frame in reversed(stack):
            for name, markers in layers:
                if any(marker in frame for marker in markers):
                    return name
    return OTHER


def summarise(raw: str, top: int = 8) -> Profile:
    """py-spy's raw output: one "frame;frame;...;innermost count" line per distinct stack."""
    layers: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        stack = stack_text.split(";")
        total += count
        layers[layer_of(stack)] += count
        functions[short_frame(stack[-1])] += count
    if total == 0:
        return Profile(0, [], [])
    return Profile(
        total,
        [(name, count / total) for name, count in layers.most_common()],
        [(name, count / total) for name, count in functions.most_common(top)],
    )


def record(pid: int, seconds: float, output: Path) -> Profile | None:
    """Sample `pid` for `seconds` with py-spy (from the virtualenv, if installed there); None without it."""
    spy = Path(sys.executable).with_name("py-spy")
    binary = str(spy) if spy.exists() else shutil.which("py-spy")
    if binary is None:
        return None
    command = [
        binary,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "50",
        "--gil",
        "--nonblocking",
        "--full-filenames",
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    result = subprocess.run(command, capture_output=True, timeout=seconds + 60, check=False)
    if result.returncode != 0 or not output.exists():
        print(f"bench.scale: py-spy failed: {result.stderr.decode(errors='replace')[-500:]}", file=sys.stderr)
        return None
    return summarise(output.read_text())
