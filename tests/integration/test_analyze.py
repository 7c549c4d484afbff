"""`robustness-gate analyze` against a real Prometheus scraping a simulated service fleet."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import pytest
import yaml
from hack import fakeservice, openmetrics, procs
from hack.fakeservice import Variant

from robustness_gate import cli

if TYPE_CHECKING:
    from collections.abc import Callable

    from hack.promlab import PrometheusServer

    from conftest import Lab

ROOT = Path(__file__).resolve().parents[2]
# A 3x error-rate regression at 200 req/s needs about ten 5 s looks at falsePositiveRate 0.1%: each look
# adds at most a capped amount of evidence, so that one noisy look cannot decide.
HISTORY_SECONDS = 60


class Timing(TypedDict, total=False):
    """The analysis timing arguments of gate()."""

    interval: str
    min_duration: str
    max_duration: str


def gate(
    app: str,
    *,
    by: bool = True,
    interval: str = "5s",
    min_duration: str = "20s",
    max_duration: str = "10m",
    false_positive_rate: float = 0.001,
) -> dict[str, Any]:
    """A gate over one simulated app: errors, latency, drift and a null-feature ratio."""
    group = "sum by ({{by}}) " if by else "sum "

    def counter(name: str, extra: str = "") -> str:
        return f'{group}(increase({name}{{app="{app}",{extra}{{{{selector}}}}}}[{{{{window}}}}]))'

    return {
        "apiVersion": "robustness.dev/v1alpha1",
        "kind": "RobustnessGate",
        "metadata": {"name": app, "namespace": "it"},
        "spec": {
            "targetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": app},
            "prometheus": {"address": "http://127.0.0.1:1", "timeout": "5s"},
            "analysis": {
                "interval": interval,
                "minDuration": min_duration,
                "maxDuration": max_duration,
                "falsePositiveRate": false_positive_rate,
                "minTraffic": {"canary": 200, "baseline": 200},
            },
            "metrics": [
                {
                    "name": "error-rate",
                    "critical": True,
                    "slo": {"max": 0.05},
                    "compare": {"tolerance": 0.2},
                    "errorRate": {
                        "errors": counter("http_requests_total", 'code=~"5..",'),
                        "total": counter("http_requests_total"),
                    },
                },
                {
                    "name": "latency-p99",
                    "critical": True,
                    "slo": {"quantile": 0.99, "max": 0.25},
                    "compare": {"tolerance": 0.1},
                    "latency": {"histogram": "http_request_duration_seconds", "labels": f'app="{app}"'},
                },
                {
                    "name": "prediction-drift",
                    "critical": True,
                    "drift": {"histogram": "model_prediction_score", "labels": f'app="{app}"', "max": 0.2},
                },
                {
                    "name": "feature-nulls",
                    "slo": {"max": 0.05},
                    "ratio": {
                        "numerator": counter("model_feature_null_total"),
                        "denominator": counter("model_feature_observations_total"),
                    },
                },
            ],
        },
    }


def run_analyze(
    tmp_path: Path,
    document: dict[str, Any],
    url: str,
    *extra: str,
    capsys: pytest.CaptureFixture[str] | None = None,
) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(document))
    args = [
        "analyze",
        "-f",
        str(path),
        "--prometheus",
        url,
        "--canary",
        'version="canary"',
        "--baseline",
        'version="stable"',
        "-o",
        "json",
        *extra,
    ]
    assert capsys is not None
    capsys.readouterr()
    code = cli.main(args)
    return code, json.loads(capsys.readouterr().out)


def verdicts(document: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["verdict"] for m in document["metrics"]}


@pytest.fixture(scope="module")
def history(lab: Lab) -> Lab:
    lab.wait_for_history(HISTORY_SECONDS + 2)
    return lab


def test_error_rate_regression_fails(history: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_analyze(tmp_path, gate("errors"), history.url, "--since", f"{HISTORY_SECONDS}s", capsys=capsys)
    assert code == 1, document
    assert document["decision"]["action"] == "Rollback"
    errors = document["metrics"][0]
    assert errors["verdict"] == "Fail" and 2.0 < errors["effect"] < 4.5
    assert errors["canary"] == pytest.approx(0.03, abs=0.01) and errors["baseline"] == pytest.approx(0.01, abs=0.005)
    assert "harm shown" in errors["message"]
    assert verdicts(document)["latency-p99"] != "Fail" and verdicts(document)["prediction-drift"] != "Fail"


def test_latency_regression_fails(history: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_analyze(
        tmp_path, gate("latency"), history.url, "--since", f"{HISTORY_SECONDS}s", capsys=capsys
    )
    assert code == 1, document
    result = {m["name"]: m for m in document["metrics"]}
    assert result["latency-p99"]["verdict"] == "Fail" and "canary slower" in result["latency-p99"]["message"]
    assert result["latency-p99"]["canary"] > result["latency-p99"]["baseline"]
    assert result["error-rate"]["verdict"] != "Fail"


def test_prediction_drift_fails(history: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_analyze(tmp_path, gate("drift"), history.url, "--since", f"{HISTORY_SECONDS}s", capsys=capsys)
    assert code == 1, document
    drift = {m["name"]: m for m in document["metrics"]}["prediction-drift"]
    assert drift["verdict"] == "Fail" and drift["effect"] > 0.2 and drift["pValue"] < 0.001
    assert verdicts(document)["error-rate"] != "Fail"


def test_healthy_canary_passes(history: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_analyze(
        tmp_path, gate("healthy"), history.url, "--since", f"{HISTORY_SECONDS}s", capsys=capsys
    )
    assert code == 0, document
    assert document["decision"]["action"] == "Promote" and document["score"] == 100
    assert set(verdicts(document).values()) == {"Pass"}
    assert document["metrics"][0]["sloMet"] is True


def test_healthy_canary_with_per_side_queries(history: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Templates without {{by}} run once per side; the verdict must not depend on it.
    code, document = run_analyze(
        tmp_path, gate("healthy", by=False), history.url, "--since", f"{HISTORY_SECONDS}s", capsys=capsys
    )
    assert code == 0, document


def test_canary_without_traffic_is_not_enough_data(
    history: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, document = run_analyze(tmp_path, gate("idle"), history.url, "--since", f"{HISTORY_SECONDS}s", capsys=capsys)
    assert code == 2, document
    assert set(verdicts(document).values()) == {"NoData"}
    assert "not enough traffic yet: canary 0 of 200" in document["metrics"][0]["message"]


def test_too_short_a_window_waits_for_min_duration(
    history: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, document = run_analyze(tmp_path, gate("healthy"), history.url, "--since", "10s", capsys=capsys)
    assert code == 2 and document["decision"]["action"] == "Continue"
    assert "of minDuration 20s elapsed" in document["decision"]["reason"]


def test_prometheus_down_is_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{procs.free_port()}"
    started = time.monotonic()
    code, document = run_analyze(tmp_path, gate("healthy"), url, "--since", "1m", capsys=capsys)
    assert code == 3 and document["error"]["type"] == "prometheus"
    assert f"cannot reach Prometheus at {url}" in document["error"]["problems"][0]["message"]
    assert time.monotonic() - started < 15


def test_promql_error_passes_prometheus_message_on(
    history: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = gate("healthy")
    document["spec"]["metrics"][3]["ratio"]["numerator"] = "sum by ({{by}}) (rate(x{ {{selector}} }[{{window}}])"
    code, answer = run_analyze(tmp_path, document, history.url, "--since", "20s", capsys=capsys)
    assert code == 3
    message = answer["error"]["problems"][0]["message"]
    assert message.startswith("PromQL error in metric feature-nulls (errors)") and "parse error" in message


def test_swapped_counters_are_refused_not_judged(
    history: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = gate("healthy")
    rate = document["spec"]["metrics"][0]["errorRate"]
    rate["errors"], rate["total"] = rate["total"], rate["errors"]
    code, answer = run_analyze(tmp_path, document, history.url, "--since", f"{HISTORY_SECONDS}s", capsys=capsys)
    assert code == 3 and answer["error"]["type"] == "data", answer
    message = answer["error"]["problems"][0]["message"]
    assert message.startswith("metric error-rate: the canary counted ") and "errors but only" in message, message
    assert "at look 1;" in message and "not swapped" in message
    assert "decision" not in answer


def test_a_series_both_selectors_match_is_refused(
    history: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(gate("healthy")))
    capsys.readouterr()
    code = cli.main([
        "analyze", "-f", str(path), "--prometheus", history.url, "--since", "20s", "-o", "json",
        "--canary", 'version=~"canary|stable"', "--baseline", 'version="stable"',
    ])  # fmt: skip
    answer = json.loads(capsys.readouterr().out)
    assert code == 3 and answer["error"]["type"] == "data", answer
    message = answer["error"]["problems"][0]["message"]
    # The gate's queries sum the version label away; the query of what both selectors match finds it.
    assert message.startswith(
        "metric error-rate: series that both the canary and the baseline selector match "
        '({version=~"canary|stable",version="stable"}) counted '
    ), message
    assert "(total) at look 1;" in message


def test_per_bucket_counts_are_refused_not_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], start_prometheus: Callable[..., PrometheusServer]
) -> None:
    """Buckets that each count their own range (not cumulative `le` buckets), written with promtool."""
    end = float(int(time.time()) // 60 * 60 - 600)
    times = [end - 1800 + 15 * i for i in range(121)]
    per_step = {"0.05": 30, "0.1": 20, "0.25": 8, "+Inf": 2}  # observations per step in each bucket's own range
    series = [
        openmetrics.Series(
            "perbucket_seconds_bucket",
            {"app": "perbucket", "version": version, "le": le},
            [(t, float(count * i)) for i, t in enumerate(times)],
        )
        for version in ("stable", "canary")
        for le, count in per_step.items()
    ]
    family = openmetrics.MetricFamily("perbucket_seconds_bucket", "unknown", "per-bucket counts", series)
    prometheus = start_prometheus(backfill=openmetrics.write_openmetrics_backfill(tmp_path / "buckets.om", [family]))
    document = gate("perbucket", interval="1m", min_duration="10m", max_duration="1h")
    latency = document["spec"]["metrics"][1]
    latency["latency"]["histogram"] = "perbucket_seconds"
    document["spec"]["metrics"] = [latency]
    window = ["--start", str(int(end - 1800)), "--end", str(int(end))]
    code, answer = run_analyze(tmp_path, document, prometheus.url, *window, capsys=capsys)
    assert code == 3 and answer["error"]["type"] == "data", answer
    message = answer["error"]["problems"][0]["message"]
    assert message.startswith(
        "metric latency-p99: the canary's bucket le=0.05 counted 120 but le=0.1 only 80 at look 1"
    )
    assert "histogram buckets must be cumulative" in message


def test_table_output_from_the_installed_command(history: Lab, tmp_path: Path) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(gate("errors")))
    command = [
        str(Path(sys.executable).with_name("robustness-gate")),
        "analyze",
        "-f",
        str(path),
        "--prometheus",
        history.url,
        "--canary",
        'version="canary"',
        "--baseline",
        'version="stable"',
        "--since",
        f"{HISTORY_SECONDS}s",
    ]
    finished = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    )
    assert finished.returncode == 1, finished.stderr
    assert "error-rate" in finished.stdout
    assert re.search(r"decision Rollback at look \d+ \(.+, after .+\) \(exit 1\)", finished.stdout), finished.stdout


BACKFILL_VARIANTS = (
    Variant(app="legacy", version="stable", rps=5, error_rate=0.002, latency_median=0.04, seed=801),
    Variant(app="legacy", version="canary", rps=5, error_rate=0.002, latency_median=0.04, seed=802),
    Variant(app="oldbad", version="stable", rps=5, error_rate=0.002, latency_median=0.04, seed=803),
    Variant(app="oldbad", version="canary", rps=5, error_rate=0.01, latency_median=0.04, seed=804),
)


def test_backfilled_history_long_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], start_prometheus: Callable[..., PrometheusServer]
) -> None:
    """Two hours of low-traffic history written with promtool: judged over absolute times."""
    end = float(int(time.time()) // 60 * 60 - 3600)
    start = end - 7200
    history = fakeservice.write_backfill(tmp_path / "history.om", BACKFILL_VARIANTS, start=start, end=end, step=15)
    prometheus = start_prometheus(backfill=history.path)
    window = ["--start", str(int(start)), "--end", str(int(end))]
    long_gate: Timing = {"interval": "1m", "min_duration": "30m", "max_duration": "2h"}
    code, good = run_analyze(tmp_path, gate("legacy", **long_gate), prometheus.url, *window, capsys=capsys)
    assert code == 0, good
    assert good["window"]["looks"] == 120
    # Promoted at its first look past minDuration: the later looks of the window are not judged.
    look = good["decision"]["look"]
    assert 30 <= look <= 120 and (good["note"] is None) == (look == 120)
    assert good["note"] is None or f"at look {look}" in good["note"]
    assert good["metrics"][0]["canaryTraffic"] == pytest.approx(5 * 60 * look, rel=0.05)
    code, bad = run_analyze(tmp_path, gate("oldbad", **long_gate), prometheus.url, *window, capsys=capsys)
    assert code == 1, bad
    assert bad["metrics"][0]["verdict"] == "Fail" and bad["metrics"][0]["effect"] > 2
