"""The source layout and the layering rules of the package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "robustness_gate"
PURE = ["api.py", "judge.py", "policy.py", "series.py", "durations.py", "stats"]
IO_MODULES = {
    "requests",
    "urllib",
    "urllib3",
    "http",
    "socket",
    "kubernetes",
    "kopf",
    "prometheus_api_client",
    "aiohttp",
    "subprocess",
    "asyncio",
}


def test_operator_dir_is_a_source_root_not_a_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists()


def test_import_operator_is_the_standard_library() -> None:
    code = (
        "import operator, robustness_gate; "
        "print(operator.__file__ or 'builtin'); print(hasattr(operator, 'itemgetter'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    location, has_itemgetter = out.split()
    assert has_itemgetter == "True"
    assert "/operator/" not in location.replace("\\", "/").rsplit("lib", 1)[-1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _pure_files() -> list[Path]:
    files: list[Path] = []
    for entry in PURE:
        path = PACKAGE / entry
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


def test_pure_layers_import_no_io_library() -> None:
    offenders = {str(path.relative_to(PACKAGE)): sorted(_imports(path) & IO_MODULES) for path in _pure_files()}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_pure_layers_do_not_import_upper_layers() -> None:
    upper = {
        "robustness_gate.metrics",
        "robustness_gate.cli",
        "robustness_gate.analysis",
        "robustness_gate.kube",
        "robustness_gate.handlers",
        "robustness_gate.server",
        "robustness_gate.targets",
    }
    for path in _pure_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not any(node.module.startswith(u) for u in upper), f"{path.name} imports {node.module}"


def test_the_detector_sees_an_io_import(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import requests\nfrom kubernetes import client\n")
    assert _imports(sample) & IO_MODULES == {"requests", "kubernetes"}


def test_target_logic_imports_no_io_library() -> None:
    targets = sorted((PACKAGE / "targets").glob("*.py"))
    assert {p.name for p in targets} >= {"model.py", "argo_rollout.py", "deployment.py", "live.py"}
    offenders = {p.name: sorted(_imports(p) & IO_MODULES) for p in targets}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_kube_talks_to_kubernetes_and_only_handlers_to_kopf() -> None:
    users: dict[str, set[str]] = {"kubernetes": set(), "kopf": set()}
    for path in PACKAGE.rglob("*.py"):
        for library in users:
            if library in _imports(path):
                users[library].add(str(path.relative_to(PACKAGE)))
    assert users == {"kubernetes": {"kube.py"}, "kopf": {"handlers.py"}}
