"""`make demo`: a real Prometheus scrapes a simulated fraud-scoring service with a stable model (v1),
a bad canary (v2: more errors, slower, drifted scores) and a good canary (v3). The gate judges
both canaries look by look, rolls the bad one back and promotes the good one.

Everything listens on 127.0.0.1 and stops by itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from rich.console import Console

HACK = Path(__file__).resolve().parent
ROOT = HACK.parent
sys.path.insert(0, str(HACK))

from fakeservice import FakeService, Variant  # noqa: E402
from promlab import PrometheusServer  # noqa: E402
from robustness_gate.analysis import analyze  # noqa: E402
from robustness_gate.api import Action, parse_gate  # noqa: E402
from robustness_gate.metrics.prometheus import PrometheusSource  # noqa: E402
from robustness_gate.metrics.templates import Sides  # noqa: E402

GATE_FILE = ROOT / "examples" / "demo-gate.yaml"
VARIANTS = (
    Variant(
        app="fraud",
        version="v1",
        rps=300,
        error_rate=0.005,
        latency_median=0.04,
        latency_sigma=0.5,
        score_mu=-1.0,
        score_sigma=1.0,
        null_rate=0.01,
        seed=11,
    ),
    Variant(
        app="fraud",
        version="v2",
        rps=100,
        error_rate=0.02,
        latency_median=0.07,
        latency_sigma=0.5,
        score_mu=-0.4,
        score_sigma=1.0,
        null_rate=0.01,
        seed=12,
    ),
    Variant(
        app="fraud",
        version="v3",
        rps=100,
        error_rate=0.005,
        latency_median=0.04,
        latency_sigma=0.5,
        score_mu=-1.0,
        score_sigma=1.0,
        null_rate=0.01,
        seed=13,
    ),
)
CANARIES = {"v2 (bad canary)": 'version="v2"', "v3 (good canary)": 'version="v3"'}
BASELINE = 'version="v1"'
TIME_LIMIT = 150.0


def main() -> int:
    console = Console()
    gate = parse_gate(yaml.safe_load(GATE_FILE.read_text()))
    console.rule("[bold]robustness-gate demo")
    console.print(
        f"gate {GATE_FILE.relative_to(ROOT)}: {len(gate.spec.metrics)} metrics, interval "
        f"{gate.spec.analysis.interval}, minDuration {gate.spec.analysis.min_duration}, "
        f"false-rollback budget {gate.spec.analysis.false_positive_rate:.0%}"
    )
    with (
        FakeService(VARIANTS, duration=TIME_LIMIT + 60) as service,
        PrometheusServer([service.target], scrape_interval="1s", max_lifetime=TIME_LIMIT + 60) as prometheus,
    ):
        console.print(f"fake fraud service on {service.target}: v1 stable 300 req/s, v2 and v3 canaries 100 req/s")
        console.print(f"Prometheus {prometheus.url} scraping it every second")
        prometheus.wait_for_samples('count(http_requests_total{app="fraud"})', 6, timeout=30)
        start = time.time()
        source = PrometheusSource(prometheus.url, timeout_seconds=5)
        decided: dict[str, Action] = {}
        with console.status("analysing...") as status:
            while len(decided) < len(CANARIES) and time.time() - start < TIME_LIMIT:
                time.sleep(gate.spec.analysis.interval_seconds)
                for name, selector in CANARIES.items():
                    if name in decided:
                        continue
                    report = analyze(gate, Sides.parse(selector, BASELINE), source, start, time.time())
                    action = report.decision.action
                    line = (
                        f"{name}: look {report.looks:>2}, score {report.verdict.score:5.1f}, "
                        f"{report.verdict.verdict.value:<8} → {action.value}"
                    )
                    if action in (Action.ROLLBACK, Action.PROMOTE, Action.INCONCLUSIVE):
                        decided[name] = action
                        style = "bold red" if action is Action.ROLLBACK else "bold green"
                        console.print(f"[{style}]{line}[/]  {report.decision.reason}", highlight=False)
                    else:
                        status.update(line)
        source.close()
        elapsed = int(time.time() - start)
        console.rule("verdict tables (robustness-gate analyze)")
        codes = {}
        for name, selector in CANARIES.items():
            command = [
                "robustness-gate",
                "analyze",
                "-f",
                str(GATE_FILE.relative_to(ROOT)),
                "--prometheus",
                prometheus.url,
                "--canary",
                selector,
                "--baseline",
                BASELINE,
                "--since",
                f"{elapsed}s",
            ]
            console.print(
                f"[bold]$ {' '.join(command[:6])} --canary '{selector}' --baseline '{BASELINE}' --since {elapsed}s",
                highlight=False,
            )
            finished = subprocess.run(
                [str(Path(sys.executable).with_name("robustness-gate")), *command[1:]],
                cwd=ROOT,
                text=True,
                capture_output=True,
                timeout=60,
                env={**os.environ, "COLUMNS": "150"},
            )
            console.print(finished.stdout, highlight=False, markup=False)
            codes[name] = finished.returncode
        ok = decided.get("v2 (bad canary)") is Action.ROLLBACK and decided.get("v3 (good canary)") is Action.PROMOTE
        console.rule("[bold green]bad canary rolled back, good canary promoted" if ok else "[bold red]unexpected")
        return 0 if ok and codes == {"v2 (bad canary)": 1, "v3 (good canary)": 0} else 1


if __name__ == "__main__":
    sys.exit(main())
