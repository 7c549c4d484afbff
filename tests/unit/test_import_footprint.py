"""The operator process loads neither scipy.stats nor scipy.optimize: together they cost it about 50 MiB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

OPERATOR = Path(__file__).resolve().parents[2] / "operator"


def test_running_the_operator_imports_no_scipy_stats_or_optimize() -> None:
    probe = (
        "import json, sys\n"
        "import robustness_gate.cli, robustness_gate.handlers, robustness_gate.controller\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('scipy.stats', 'scipy.optimize')))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(OPERATOR), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(result.stdout) == []
