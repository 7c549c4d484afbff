"""The operator process loads neither scipy.stats nor scipy.optimize: together they cost it about 50 MiB.
`analyze` loads neither the cluster's libraries nor the operator's metrics exposition."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

OPERATOR = Path(__file__).resolve().parents[2] / "operator"


def loaded_after(imports: str, watched: str) -> list[str]:
    """The loaded modules that `watched` (a Python expression: a module name -> bool) picks, in a fresh
    interpreter after `import <imports>`."""
    probe = f"import json, sys\nimport {imports}\nprint(json.dumps(sorted(m for m in sys.modules if ({watched})(m))))\n"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(OPERATOR), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    found: list[str] = json.loads(result.stdout)
    return found


def test_running_the_operator_imports_no_scipy_stats_or_optimize() -> None:
    modules = "robustness_gate.cli, robustness_gate.handlers, robustness_gate.controller"
    assert loaded_after(modules, "lambda m: m.startswith(('scipy.stats', 'scipy.optimize'))") == []


def test_the_cli_loads_no_kubernetes_kopf_or_prometheus_client_until_run_starts() -> None:
    assert loaded_after("robustness_gate.cli", "lambda m: m in ('kubernetes', 'kopf', 'prometheus_client')") == []
