"""The source layout and the layering rules of the package.

The rules themselves are import-linter contracts in pyproject.toml (`make lint` runs them); these tests
run them from the unit tier too, show that they can fail, and keep them covering every module."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "robustness_gate"
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


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


def _contract(name_start: str) -> dict[str, object]:
    (contract,) = [c for c in CONTRACTS if str(c["name"]).startswith(name_start)]
    return dict(contract)


def _names(contract: dict[str, object], key: str) -> set[str]:
    value = contract[key]
    assert isinstance(value, list)
    return {str(m).removeprefix("robustness_gate.") for m in value}


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_the_import_contracts_hold() -> None:
    finished = _lint_imports(ROOT)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in finished.stdout


def test_an_io_import_in_a_pure_layer_breaks_a_contract(tmp_path: Path) -> None:
    # The same contracts over a copy of the package where series.py (pure) imports requests.
    copy = tmp_path / "operator" / "robustness_gate"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    series = copy / "series.py"
    series.write_text("import requests  # noqa: F401\n" + series.read_text())
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    finished = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={"PYTHONPATH": str(tmp_path / "operator"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert finished.returncode == 1, finished.stdout + finished.stderr
    assert "robustness_gate.series -> requests" in finished.stdout


def _top_level_modules() -> set[str]:
    return {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if p.suffix == ".py" or (p / "__init__.py").is_file()
    } - {"__init__"}


def test_every_module_but_kube_is_barred_from_the_kubernetes_client() -> None:
    barred = _names(_contract("Only kube.py"), "source_modules")
    assert barred == _top_level_modules() - {"kube"}


def test_the_pure_layers_are_barred_from_io() -> None:
    barred = _names(_contract("Pure layers"), "source_modules")
    assert barred >= {"api", "series", "durations", "stats", "judge", "policy", "analysis", "targets", "metrics.source"}
    forbidden = _names(_contract("Pure layers"), "forbidden_modules")
    assert forbidden >= {"kubernetes", "kopf", "requests", "urllib3", "prometheus_api_client", "socket", "http"}
