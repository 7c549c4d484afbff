"""The analyze command's contract: exit codes, the JSON document, and errors before any query."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fakes import gate_document

from robustness_gate import cli
from robustness_gate.api import MetricSpec
from robustness_gate.cli import cluster as cluster_commands
from robustness_gate.metrics.prometheus import PrometheusSource
from robustness_gate.metrics.source import REFUSED, MetricsError, Window
from robustness_gate.metrics.templates import Sides
from robustness_gate.series import CountSeries, MetricData

GATE = gate_document(
    [
        {
            "name": "errors",
            "critical": True,
            "slo": {"max": 0.05},
            "compare": {},
            "errorRate": {"errors": "e{ {{selector}} }", "total": "t{ {{selector}} }"},
        }
    ],
    name="demo",
    target="demo",
    interval="30s",
    minDuration="2m",
    maxDuration="30m",
)
ARGS = ["--canary", 'version="v2"', "--baseline", 'version="v1"']


def _write(tmp_path: Path, document: Any) -> str:
    path = tmp_path / "gate.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return str(path)


@pytest.fixture
def no_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("Prometheus was queried")

    monkeypatch.setattr(PrometheusSource, "range_query", refuse)
    monkeypatch.setattr(PrometheusSource, "fetch", refuse)


def _fake_source(monkeypatch: pytest.MonkeyPatch, canary_rate: float) -> None:
    def fetch(self: PrometheusSource, metric: MetricSpec, sides: Sides, window: Window) -> MetricData:
        rng = np.random.default_rng(1)
        n = np.full(window.looks, 2000.0)
        return CountSeries(
            rng.binomial(2000, canary_rate, window.looks).astype(float),
            n,
            rng.binomial(2000, 0.01, window.looks).astype(float),
            n.copy(),
        )

    monkeypatch.setattr(PrometheusSource, "fetch", fetch)


@pytest.mark.parametrize(
    ("canary_rate", "since", "code", "action"),
    [
        (0.01, "10m", 0, "Promote"),
        (0.05, "10m", 1, "Rollback"),
        (0.01, "1m", 2, "Continue"),
    ],
)
def test_exit_codes_follow_the_decision(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    canary_rate: float,
    since: str,
    code: int,
    action: str,
) -> None:
    _fake_source(monkeypatch, canary_rate)
    assert cli.main(["analyze", "-f", _write(tmp_path, GATE), *ARGS, "--since", since, "-o", "json"]) == code
    document = json.loads(capsys.readouterr().out)
    assert document["kind"] == "AnalysisResult" and document["exitCode"] == code
    assert document["decision"]["action"] == action
    metric = document["metrics"][0]
    assert set(metric) >= {
        "name",
        "verdict",
        "canary",
        "baseline",
        "lower",
        "upper",
        "pValue",
        "effect",
        "sloMet",
        "message",
        "test",
    }
    assert document["window"]["interval"] == "30s" and document["window"]["looks"] == int(since[:-1]) * 2


def test_table_output_shows_metrics_and_decision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    _fake_source(monkeypatch, 0.05)
    assert cli.main(["analyze", "-f", _write(tmp_path, GATE), *ARGS, "--since", "10m"]) == 1
    out = capsys.readouterr().out
    assert (
        "errors" in out
        and "Fail" in out
        and "decision Rollback at look 5 (" in out
        and "(exit 1)" in out
        and "reason:" in out
    )


def test_invalid_gate_lists_every_problem_and_queries_nothing(tmp_path: Path, no_queries: None, capsys: Any) -> None:
    bad = json.loads(json.dumps(GATE))
    bad["spec"]["analysis"]["falsePositiveRate"] = 0.7
    bad["spec"]["metrics"][0]["compare"]["tolerance"] = -1
    assert cli.main(["analyze", "-f", _write(tmp_path, bad), *ARGS, "-o", "json"]) == 3
    document = json.loads(capsys.readouterr().out)
    assert document["kind"] == "AnalysisError" and document["error"]["type"] == "invalid"
    assert sorted(p["path"] for p in document["error"]["problems"]) == [
        "spec.analysis.falsePositiveRate",
        "spec.metrics[0].compare.tolerance",
    ]


@pytest.mark.parametrize(
    ("content", "extra", "fragment"),
    [
        ("spec: [unclosed", [], "invalid YAML"),
        (GATE, ["--canary", "version=v2"], "--canary/--baseline"),
        (GATE, ["--since", "ten minutes"], "--since/--start/--end"),
        (GATE, ["--start", "yesterday"], "neither RFC 3339"),
        (GATE, ["--prometheus", "localhost:9090"], "--prometheus"),
    ],
)
def test_bad_arguments_exit_3_with_the_field(
    tmp_path: Path, no_queries: None, capsys: Any, content: Any, extra: list[str], fragment: str
) -> None:
    code = cli.main(["analyze", "-f", _write(tmp_path, content), *ARGS, *extra])
    assert code == 3
    assert fragment in capsys.readouterr().err


def test_unknown_template_variable_is_caught_before_querying(tmp_path: Path, no_queries: None, capsys: Any) -> None:
    bad = json.loads(json.dumps(GATE))
    bad["spec"]["metrics"][0]["errorRate"]["errors"] = 'e{ {{selector}}, ns="{{namespace}}" }'
    assert cli.main(["analyze", "-f", _write(tmp_path, bad), *ARGS]) == 3
    assert "unknown template variable {{namespace}}" in capsys.readouterr().err


def test_missing_file(no_queries: None, capsys: Any) -> None:
    assert cli.main(["analyze", "-f", "/nonexistent/gate.yaml", *ARGS]) == 3
    assert "cannot read /nonexistent/gate.yaml" in capsys.readouterr().err


def test_prometheus_flag_stands_in_for_a_missing_spec_prometheus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    _fake_source(monkeypatch, 0.01)
    gate = {**GATE, "spec": {k: v for k, v in GATE["spec"].items() if k != "prometheus"}}
    path = _write(tmp_path, gate)
    assert cli.main(["analyze", "-f", path, *ARGS, "--since", "10m", "-o", "json"]) == 3
    assert "spec.prometheus" in capsys.readouterr().out
    code = cli.main(
        ["analyze", "-f", path, *ARGS, "--prometheus", "http://127.0.0.1:9", "--since", "10m", "-o", "json"]
    )
    assert code == 0 and json.loads(capsys.readouterr().out)["decision"]["action"] == "Promote"


def test_json_shows_each_metric_query_as_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    _fake_source(monkeypatch, 0.01)
    cli.main(["analyze", "-f", _write(tmp_path, GATE), *ARGS, "--since", "10m", "-o", "json"])
    queries = json.loads(capsys.readouterr().out)["queries"]["errors"]
    assert {(q["role"], q["side"]) for q in queries} == {
        ("errors", "canary"),
        ("errors", "baseline"),
        ("total", "canary"),
        ("total", "baseline"),
    }
    assert any(q["promql"] == 'e{ version="v2" }' for q in queries)


def test_refused_data_exits_3_naming_the_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    def fetch(self: PrometheusSource, metric: MetricSpec, sides: Sides, window: Window) -> MetricData:
        raise MetricsError(f"metric {metric.name}: the canary counted 1000 errors but only 20 total", REFUSED)

    monkeypatch.setattr(PrometheusSource, "fetch", fetch)
    assert cli.main(["analyze", "-f", _write(tmp_path, GATE), *ARGS, "--since", "10m", "-o", "json"]) == 3
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["type"] == "data" and error["problems"][0]["message"].startswith("metric errors:")


def test_status_queries_render_the_recorded_revisions() -> None:
    body = {**GATE, "status": {"revision": "abc123", "stableRevision": "def456", "looks": 3}}
    body["spec"] = {**GATE["spec"], "targetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "r"}}
    queries = cluster_commands.recorded_queries(body)["errors"]
    rendered = {q["promql"] for q in queries}
    assert 'e{ rollouts_pod_template_hash="abc123" }' in rendered
    assert 't{ rollouts_pod_template_hash="def456" }' in rendered
    assert cluster_commands.recorded_queries({**GATE, "status": {}}) == {}
