"""The CRD is generated from the models, structural, and in sync with the file on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from robustness_gate import api, cli
from robustness_gate.crd import build_crd, check_files, render_crd

ROOT = Path(__file__).resolve().parents[2]


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_walk(value, f"{path}[{index}]"))
    return found


def _schema() -> dict[str, Any]:
    schema: dict[str, Any] = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_crds_check_passes_on_the_committed_file() -> None:
    assert cli.main(["crds", "--check", "--root", str(ROOT)]) == 0


def test_crds_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    (tmp_path / "crds").mkdir()
    stale = tmp_path / "crds" / "robustnessgates.robustness.dev.yaml"
    stale.write_text(render_crd().replace("rgate", "rg"))
    assert check_files(tmp_path) == [stale]
    assert cli.main(["crds", "--check", "--root", str(tmp_path)]) == 1
    assert cli.main(["crds", "--root", str(tmp_path)]) == 0
    assert check_files(tmp_path) == []


def test_schema_is_structural() -> None:
    for path, node in _walk(_schema()):
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "const", "$defs", "title"):
            assert forbidden not in node, f"{forbidden} at {path}"
        if node.get("additionalProperties") is False:
            raise AssertionError(f"additionalProperties: false at {path}")
        if "properties" in node:
            assert node.get("type") == "object", path


def test_every_spec_property_is_typed_and_described() -> None:
    spec = _schema()["properties"]["spec"]
    for path, node in _walk(spec):
        if path.endswith(".properties") or "x-kubernetes-validations" in path.split(".")[-1]:
            continue
        if isinstance(node, dict) and ("type" in node or "properties" in node):
            assert "type" in node, path
    described = [p for p, n in _walk(spec["properties"]) if "description" in n]
    assert len(described) > 40


def test_names_columns_and_subresource() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["rgate"] and names["kind"] == "RobustnessGate"
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Verdict",
        "Score",
        "Target",
        "Age",
    ]


def test_metric_rules_are_cel_validations() -> None:
    metric = _schema()["properties"]["spec"]["properties"]["metrics"]["items"]
    rules = metric["x-kubernetes-validations"]
    assert any("size() == 1" in rule["rule"] for rule in rules)
    assert metric["properties"]["compare"]["properties"]["direction"]["enum"] == ["Increase", "Decrease"]


def test_exclusive_bounds_use_openapi_v3_booleans() -> None:
    rate = _schema()["properties"]["spec"]["properties"]["analysis"]["properties"]["falsePositiveRate"]
    assert rate["minimum"] == 0 and rate["exclusiveMinimum"] is True
    assert rate["maximum"] == 0.5 and rate["exclusiveMaximum"] is True


def test_file_is_yaml_of_the_same_object() -> None:
    on_disk = yaml.safe_load((ROOT / "crds" / "robustnessgates.robustness.dev.yaml").read_text())
    assert on_disk == build_crd()
    assert on_disk["metadata"]["name"] == f"{api.PLURAL}.{api.GROUP}"


def test_an_analysis_without_a_verdict_pauses_by_default_and_harm_rolls_back() -> None:
    # The API server stores these defaults in every gate created without the field.
    spec = _schema()["properties"]["spec"]["properties"]
    assert spec["onInconclusive"]["default"] == "Pause"
    assert spec["onInconclusive"]["enum"] == ["Rollback", "Pause", "Promote", "None"]
    assert (spec["onFail"]["default"], spec["onError"]["default"], spec["onPass"]["default"]) == (
        "Rollback",
        "Pause",
        "Promote",
    )
