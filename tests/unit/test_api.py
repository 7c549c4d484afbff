"""Parsing gates: defaults, and one clear error per problem naming the field and what is allowed."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from robustness_gate.api import GateValidationError, Phase, RobustnessGate, Verdict, parse_gate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "fraud-model-gate.yaml").read_text())


def _gate(**changes: Any) -> dict[str, Any]:
    """The example gate with dotted-path changes; a value of ... deletes the key."""
    document = copy.deepcopy(EXAMPLE)
    for dotted, value in changes.items():
        node: Any = document
        parts = dotted.split("__")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        last = parts[-1]
        if value is ...:
            del node[int(last) if last.isdigit() else last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return document


def test_example_parses_with_defaults() -> None:
    gate = parse_gate(EXAMPLE)
    assert isinstance(gate, RobustnessGate)
    assert gate.spec.analysis.interval_seconds == 30
    assert gate.spec.metrics[0].kind == "errorRate"
    assert gate.spec.metrics[2].drift is not None and gate.spec.metrics[2].drift.max == 0.2
    assert gate.spec.scoring.pass_ == 95
    minimal = parse_gate(
        {
            "apiVersion": "robustness.dev/v1alpha1",
            "kind": "RobustnessGate",
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                "prometheus": {"address": "http://p:9090"},
                "metrics": [{"name": "e", "errorRate": {"errors": "a", "total": "b"}, "slo": {"max": 0.01}}],
            },
        }
    )
    assert minimal.spec.analysis.false_positive_rate == 0.01
    assert minimal.spec.on_inconclusive.value == "Pause"  # too little traffic by maxDuration holds, never rolls back
    assert minimal.spec.on_fail.value == "Rollback" and minimal.spec.on_error.value == "Pause"
    assert minimal.spec.metrics[0].compare is None


BAD_INPUTS = [
    ("unknown top-level spec field", {"spec__surprise": 1}, "spec.surprise", "unknown field; allowed here:"),
    (
        "wrong type",
        {"spec__analysis__falsePositiveRate": "low"},
        "spec.analysis.falsePositiveRate",
        "valid number",
    ),
    ("negative duration", {"spec__analysis__interval": "-30s"}, "spec.analysis.interval", "like 30s"),
    (
        "malformed duration",
        {"spec__analysis__minDuration": "5 minutes"},
        "spec.analysis.minDuration",
        "like 30s",
    ),
    (
        "false positive rate too high",
        {"spec__analysis__falsePositiveRate": 0.5},
        "spec.analysis.falsePositiveRate",
        "less than 0.5",
    ),
    (
        "false positive rate zero",
        {"spec__analysis__falsePositiveRate": 0},
        "spec.analysis.falsePositiveRate",
        "greater than 0",
    ),
    (
        "negative tolerance",
        {"spec__metrics__0__compare__tolerance": -0.1},
        "spec.metrics[0].compare.tolerance",
        "greater than or equal to 0",
    ),
    ("no metrics", {"spec__metrics": []}, "spec.metrics", "at least 1 item"),
    ("duplicate names", {"spec__metrics__1__name": "error-rate"}, "spec", "must be unique"),
    (
        "neither slo nor compare",
        {"spec__metrics__0__slo": ..., "spec__metrics__0__compare": ...},
        "spec.metrics[0]",
        "needs slo, compare, or both",
    ),
    (
        "two kinds",
        {"spec__metrics__0__ratio": {"numerator": "a", "denominator": "b"}},
        "spec.metrics[0]",
        "exactly one of",
    ),
    (
        "bad direction",
        {"spec__metrics__0__compare__direction": "Up"},
        "spec.metrics[0].compare.direction",
        "'Increase' or 'Decrease'",
    ),
    ("min after max", {"spec__analysis__minDuration": "1h"}, "spec.analysis", "longer than maxDuration"),
    (
        "latency slo without quantile",
        {"spec__metrics__1__slo": {"max": 0.1}},
        "spec.metrics[1]",
        "quantile and max",
    ),
    ("rate slo above 1", {"spec__metrics__0__slo__max": 5}, "spec.metrics[0]", "between 0 and 1"),
    ("bad metric name", {"spec__metrics__0__name": "Error Rate"}, "spec.metrics[0].name", "pattern"),
    ("wrong api version", {"apiVersion": "robustness.dev/v1"}, "apiVersion", "robustness.dev/v1alpha1"),
    (
        "bad target kind",
        {"spec__targetRef__kind": "StatefulSet"},
        "spec.targetRef.kind",
        "'Rollout' or 'Deployment'",
    ),
    (
        "too many looks",
        {"spec__analysis__interval": "1s", "spec__analysis__maxDuration": "24h"},
        "spec.analysis",
        "lengthen the interval",
    ),
    (
        "absurd interval",
        {"spec__analysis__interval": "2h", "spec__analysis__maxDuration": "4h"},
        "spec.analysis",
        "at most 1h",
    ),
    (
        "address not a URL",
        {"spec__prometheus__address": "prometheus:9090"},
        "spec.prometheus.address",
        "pattern",
    ),
    (
        "histogram labels not matchers",
        {"spec__metrics__1__latency__labels": 'app=fraud"} or vector(1)'},
        "spec.metrics[1].latency.labels",
        "pattern",
    ),
    ("drift with slo", {"spec__metrics__2__slo": {"max": 0.1}}, "spec.metrics[2]", "take no slo or compare"),
    ("marginal above pass", {"spec__scoring__marginal": 99}, "spec.scoring", "above scoring.pass"),
]


@pytest.mark.parametrize(("case", "changes", "path", "fragment"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_names_the_field_and_the_fix(case: str, changes: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(GateValidationError) as raised:
        parse_gate(_gate(**changes))
    problems = raised.value.problems
    matching = [p for p in problems if p.path == path]
    assert matching, f"{case}: no problem at {path}; got {[str(p) for p in problems]}"
    assert any(fragment in p.message for p in matching), [str(p) for p in matching]


def test_one_error_per_problem() -> None:
    with pytest.raises(GateValidationError) as raised:
        parse_gate(
            _gate(spec__analysis__falsePositiveRate=2, spec__metrics__0__compare__tolerance=-1, spec__bogus=True)
        )
    paths = sorted(p.path for p in raised.value.problems)
    assert paths == ["spec.analysis.falsePositiveRate", "spec.bogus", "spec.metrics[0].compare.tolerance"]


def test_unknown_field_lists_the_allowed_ones() -> None:
    with pytest.raises(GateValidationError) as raised:
        parse_gate(_gate(spec__metrics__0__compare__tolerence=0.1))
    (problem,) = raised.value.problems
    assert problem.path == "spec.metrics[0].compare.tolerence"
    assert "direction, test, tolerance" in problem.message


def test_not_a_mapping() -> None:
    with pytest.raises(GateValidationError, match="mapping"):
        parse_gate(["a", "list"])


def test_status_enums_round_trip() -> None:
    gate = parse_gate({**EXAMPLE, "status": {"phase": "Analyzing", "verdict": "NoData", "looks": 3}})
    assert gate.status is not None and gate.status.phase is Phase.ANALYZING and gate.status.verdict is Verdict.NO_DATA
    dumped = gate.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert (
        dumped["status"]["phase"] == "Analyzing" and dumped["spec"]["targetRef"]["apiVersion"] == "argoproj.io/v1alpha1"
    )
