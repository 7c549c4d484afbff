"""Metrics over many features and categorical drift against a real Prometheus: history written with promtool
(seeded, cumulative counters as a service would expose them), the gate's real queries (one per metric and look,
grouped by the feature or category label), judged by `robustness-gate analyze`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import yaml
from hack import openmetrics
from scipy.stats import norm

from robustness_gate import cli

if TYPE_CHECKING:
    from hack.promlab import PrometheusServer

STEP = 15.0
POINTS = 121  # 30 minutes
FEATURES = [f"f{i:02d}" for i in range(12)]
DRIFTED = "f07"
NULL_FEATURES = ("age", "amount", "device_fingerprint", "zip")
CLASSES = {"approve": 0.7, "review": 0.2, "decline": 0.1}
RATE = {"canary": 2.0, "stable": 18.0}  # observations per second
LE = [f"{x:.4f}" for x in norm.ppf(np.arange(1, 10) / 10)] + ["+Inf"]  # the training profile's deciles


def deciles(shift: float) -> np.ndarray:
    edges = np.concatenate(([0.0], norm.cdf(norm.ppf(np.arange(1, 10) / 10) - shift), [1.0]))
    return np.diff(edges)


def cumulative(rng: np.random.Generator, probs: np.ndarray, rate: float) -> np.ndarray:
    """Running totals per category (points x categories) of Poisson(rate) observations per second."""
    steps = np.array([rng.multinomial(rng.poisson(rate * STEP), probs) for _ in range(POINTS - 1)])
    return np.vstack([np.zeros(len(probs)), np.cumsum(steps, axis=0)])


def points(times: list[float], values: np.ndarray) -> list[tuple[float, float]]:
    return [(t, float(v)) for t, v in zip(times, values, strict=True)]


def families(times: list[float], *, canary_broken: bool) -> list[openmetrics.MetricFamily]:
    rng = np.random.default_rng(20261207)
    bounds = LE
    buckets, categories, nulls, observations, inputs = [], [], [], [], []
    for version, rate in RATE.items():
        broken = canary_broken and version == "canary"
        for feature in FEATURES:
            totals = np.cumsum(cumulative(rng, deciles(1.0 if broken and feature == DRIFTED else 0.0), rate), axis=1)
            for j, le in enumerate(bounds):
                labels = {"app": "features", "version": version, "feature": feature, "le": le}
                buckets.append(openmetrics.Series("feature_value_bucket", labels, points(times, totals[:, j])))
        # Inputs that moved 0.8 sd from the training deciles on both sides alike: input drift.
        moved = np.cumsum(cumulative(rng, deciles(0.8), rate), axis=1)
        for j, le in enumerate(bounds):
            labels = {"app": "features", "version": version, "le": le}
            inputs.append(openmetrics.Series("input_score_bucket", labels, points(times, moved[:, j])))
        probs = np.array([0.45, 0.2, 0.35]) if broken else np.array(list(CLASSES.values()))
        counts = cumulative(rng, probs, rate)
        for j, name in enumerate(CLASSES):
            labels = {"app": "features", "version": version, "class": name}
            categories.append(openmetrics.Series("predictions_total", labels, points(times, counts[:, j])))
        for feature in NULL_FEATURES:
            null_rate = 0.12 if broken and feature == "device_fingerprint" else 0.01
            seen = cumulative(rng, np.array([null_rate, 1 - null_rate]), rate)
            labels = {"app": "features", "version": version, "feature": feature}
            nulls.append(openmetrics.Series("model_feature_null_total", labels, points(times, seen[:, 0])))
            total = seen.sum(axis=1)
            observations.append(openmetrics.Series("model_feature_observations_total", labels, points(times, total)))
    return [
        openmetrics.MetricFamily("feature_value", "histogram", "feature values", buckets),
        openmetrics.MetricFamily("predictions", "counter", "predictions by class", categories),
        openmetrics.MetricFamily("model_feature_null", "counter", "null features", nulls),
        openmetrics.MetricFamily("model_feature_observations", "counter", "features seen", observations),
        openmetrics.MetricFamily("input_score", "histogram", "an input, moved since training", inputs),
    ]


def gate(only: str | None = None) -> dict[str, Any]:
    def counter(name: str) -> str:
        return f'sum by ({{{{by}}}}) (increase({name}{{app="features",{{{{selector}}}}}}[{{{{window}}}}]))'

    document: dict[str, Any] = {
        "apiVersion": "robustness.dev/v1alpha1",
        "kind": "RobustnessGate",
        "metadata": {"name": "features", "namespace": "it"},
        "spec": {
            "targetRef": {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "features"},
            "prometheus": {"address": "http://127.0.0.1:1", "timeout": "10s"},
            "analysis": {"interval": "1m", "minDuration": "10m", "maxDuration": "30m"},
            "metrics": [
                {
                    "name": "input-drift",
                    "drift": {"histogram": "feature_value", "labels": 'app="features"'},
                    "features": {"label": "feature", "critical": [DRIFTED]},
                },
                {
                    "name": "input-vs-training",
                    "drift": {
                        "histogram": "input_score",
                        "labels": 'app="features"',
                        "reference": {"le": LE, "shares": [0.1] * 10},
                    },
                },
                {
                    "name": "classes",
                    "drift": {"counter": "predictions_total", "category": "class", "labels": 'app="features"'},
                },
                {
                    "name": "feature-nulls",
                    "slo": {"max": 0.05},
                    "ratio": {
                        "numerator": counter("model_feature_null_total"),
                        "denominator": counter("model_feature_observations_total"),
                    },
                    "features": {"label": "feature"},
                },
            ],
        },
    }
    if only is not None:
        document["spec"]["metrics"] = [m for m in document["spec"]["metrics"] if m["name"] == only]
    return document


@pytest.fixture(scope="module")
def end() -> float:
    return float(int(time.time()) // 60 * 60 - 600)


def analyze(
    tmp_path: Path,
    prometheus: PrometheusServer,
    end: float,
    capsys: pytest.CaptureFixture[str],
    only: str | None = None,
) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(gate(only)))
    capsys.readouterr()
    code = cli.main([
        "analyze", "-f", str(path), "--prometheus", prometheus.url, "-o", "json",
        "--canary", 'version="canary"', "--baseline", 'version="stable"',
        "--start", str(int(end - 1800)), "--end", str(int(end)),
    ])  # fmt: skip
    return code, json.loads(capsys.readouterr().out)


def metric(answer: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in answer["metrics"] if m["name"] == name)


@pytest.mark.parametrize("broken", [True, False], ids=["bad-canary", "healthy-canary"])
def test_features_categories_and_null_rates_on_real_prometheus(
    broken: bool,
    end: float,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    start_prometheus: Callable[..., PrometheusServer],
) -> None:
    times = [end - 1800 + STEP * i for i in range(POINTS)]
    backfill = openmetrics.write_openmetrics_backfill(tmp_path / "features.om", families(times, canary_broken=broken))
    prometheus = start_prometheus(backfill=backfill)
    if not broken:
        code, answer = analyze(tmp_path, prometheus, end, capsys)
        assert code == 0 and answer["decision"]["action"] == "Promote", answer["decision"]
        assert {m["verdict"] for m in answer["metrics"]} == {"Pass"}, [m["message"] for m in answer["metrics"]]
        drift, nulls = metric(answer, "input-drift"), metric(answer, "feature-nulls")
        moved = metric(answer, "input-vs-training")
        assert "input drift, not a canary regression" in moved["message"], moved["message"]
        assert moved["referenceCanary"] > 0.2 and moved["referenceBaseline"] > 0.2
        assert drift["message"].startswith("0 of 12 features drifted")
        assert {f["name"] for f in drift["features"]} == set(FEATURES)
        assert {f["name"] for f in nulls["features"]} == set(NULL_FEATURES)
        return
    # Each metric alone: a gate ends at its first decision, which one metric's failure is enough for.
    results = {}
    for name in ("input-drift", "classes", "feature-nulls"):
        code, answer = analyze(tmp_path, prometheus, end, capsys, only=name)
        assert code == 1 and answer["decision"]["action"] == "Rollback", (name, answer["decision"])
        results[name] = metric(answer, name)
    drift, classes, nulls = results["input-drift"], results["classes"], results["feature-nulls"]
    assert drift["verdict"] == "Fail" and drift["message"].startswith(f"critical feature {DRIFTED} drifted")
    assert drift["features"][0]["name"] == DRIFTED and drift["features"][0]["verdict"] == "Fail"
    assert {f["name"] for f in drift["features"]} == set(FEATURES)
    assert classes["verdict"] == "Fail" and "category drift" in classes["message"]
    assert nulls["verdict"] == "Fail" and nulls["message"].startswith("1 of 4 features failed: device_fingerprint")
    assert nulls["features"][0]["canary"] == pytest.approx(0.12, abs=0.03)
