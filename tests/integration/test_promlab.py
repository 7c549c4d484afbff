"""Smoke tests for the Prometheus lab: real Prometheus, real scrapes, real promtool backfill."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hack import fakeservice, openmetrics, promlab
from hack.fakeservice import FakeService, Variant
from hack.promlab import PrometheusServer

if TYPE_CHECKING:  # annotation only; importing conftest at runtime is fragile with several conftests
    from conftest import Lab

LATENCY_LES = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf"}
SCORE_LES = {"0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0", "+Inf"}


def by_label(result: list[dict[str, object]], label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for sample in result:
        metric = sample["metric"]
        value = sample["value"]
        assert isinstance(metric, dict) and isinstance(value, list)
        out[str(metric.get(label, ""))] = float(value[1])
    return out


def test_prometheus_scrapes_request_counters(lab: Lab) -> None:
    lab.wait_for_history(12)
    for app in ("checkout", "search"):
        result = lab.prometheus.query(f'sum by (version) (increase(http_requests_total{{app="{app}"}}[10s]))')
        totals = by_label(result, "version")
        assert set(totals) == {"stable", "canary"}
        for version, value in totals.items():
            expected = lab.variant(app, version).rps * 10
            # Poisson noise is ~1.5%; increase() extrapolation over 1 s scrapes adds a few percent.
            assert value == pytest.approx(expected, rel=0.2), (app, version)

    errors = by_label(
        lab.prometheus.query(
            'sum by (version) (increase(http_requests_total{app="checkout",code="500"}[10s]))'
            ' / sum by (version) (increase(http_requests_total{app="checkout"}[10s]))'
        ),
        "version",
    )
    assert errors["canary"] == pytest.approx(0.05, abs=0.02)
    assert errors["stable"] == pytest.approx(0.01, abs=0.01)


def test_histograms_arrive(lab: Lab) -> None:
    lab.wait_for_history(12)
    prom = lab.prometheus
    buckets = prom.query('http_request_duration_seconds_bucket{app="checkout",version="stable"}')
    values = by_label(buckets, "le")
    assert set(values) == LATENCY_LES
    ordered = sorted(values.items(), key=lambda kv: float(kv[0]))
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(ordered)), "buckets not cumulative"
    assert ordered[-1][1] > 0

    for version in ("stable", "canary"):
        median = prom.query_value(
            "histogram_quantile(0.5, sum by (le) (rate("
            f'http_request_duration_seconds_bucket{{app="checkout",version="{version}"}}[10s])))'
        )
        assert median == pytest.approx(lab.variant("checkout", version).latency_median, rel=0.2)

    scores = by_label(prom.query('model_prediction_score_bucket{app="checkout",version="canary"}'), "le")
    assert set(scores) == SCORE_LES
    mean = prom.query_value(
        'sum(model_prediction_score_sum{app="checkout",version="stable"})'
        ' / sum(model_prediction_score_count{app="checkout",version="stable"})'
    )
    assert mean == pytest.approx(0.5, abs=0.03)  # E[logistic(N(0, 1))] = 0.5

    null_ratio = by_label(
        prom.query(
            'sum by (version) (model_feature_null_total{app="checkout",feature="device_fingerprint"})'
            ' / sum by (version) (model_feature_observations_total{app="checkout"})'
        ),
        "version",
    )
    assert null_ratio["canary"] == pytest.approx(0.05, abs=0.02)
    assert null_ratio["stable"] == pytest.approx(0.01, abs=0.01)


def test_backfilled_history_is_queryable(start_prometheus: Callable[..., PrometheusServer], tmp_path: Path) -> None:
    variants = [
        Variant(app="checkout", version="stable", rps=500, error_rate=0.01, latency_median=0.05, seed=7),
        Variant(app="checkout", version="canary", rps=500, error_rate=0.05, latency_median=0.08, seed=8),
    ]
    end = float(int(time.time()) - 3600)
    start = end - 7200
    history = fakeservice.write_backfill(
        tmp_path / "history.om", variants, start=start, end=end, step=15, extra_labels={"job": "history"}
    )
    prom = start_prometheus(backfill=history.path)
    blocks = prom.backfilled_blocks
    assert blocks, "promtool created no blocks"
    assert min(b.min_time for b in blocks) == start
    assert max(b.max_time for b in blocks) == pytest.approx(end, abs=0.01)  # maxTime is exclusive: +1 ms

    at_end = by_label(prom.query('sum by (version) (http_requests_total{app="checkout"})', at=end), "version")
    for v in variants:
        exact = history.totals[(v.app, v.version)].requests
        assert at_end[v.version] == exact
        assert exact == pytest.approx(v.rps * 7200, rel=0.01)

    hourly = by_label(
        prom.query('sum by (version) (increase(http_requests_total{app="checkout"}[1h]))', at=end - 1800),
        "version",
    )
    for v in variants:
        assert hourly[v.version] == pytest.approx(v.rps * 3600, rel=0.02)

    median = prom.query_value(
        "histogram_quantile(0.5, sum by (le) (rate("
        'http_request_duration_seconds_bucket{app="checkout",version="stable"}[30m])))',
        at=end,
    )
    assert median == pytest.approx(0.05, rel=0.1)

    # Nothing outside the backfilled range (beyond the 5 min lookback).
    assert prom.query("http_requests_total", at=start - 600) == []
    assert prom.query("http_requests_total", at=end + 600) == []

    series = prom.query_range('http_requests_total{version="canary",code="500"}', start, end, 300)
    assert len(series) == 1
    assert len(series[0]["values"]) == 7200 // 300 + 1


def test_backfill_rejects_millisecond_timestamps(tmp_path: Path) -> None:
    family = openmetrics.MetricFamily(
        "x", "counter", "x", [openmetrics.Series("x_total", {}, [(time.time() * 1000, 1.0)])]
    )
    with pytest.raises(ValueError, match="SECONDS"):
        openmetrics.write_openmetrics_backfill(tmp_path / "x.om", [family])


def test_missing_prometheus_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_BIN", "/nonexistent")
    with pytest.raises(RuntimeError, match=r"/nonexistent.*apt-get install prometheus"):
        PrometheusServer().start()


def test_startup_failure_shows_prometheus_log(prometheus_bin: str) -> None:
    server = PrometheusServer(extra_args=["--no-such-flag"])
    with pytest.raises(RuntimeError, match="no-such-flag"):
        server.start()
    assert not server.running


def test_fake_service_version_label_and_self_exit(
    start_fake_service: Callable[..., FakeService],
) -> None:
    variant = Variant(app="web", version="abc123", rps=100, seed=3)
    service = start_fake_service([variant], duration=2.0, version_label="rollouts_pod_template_hash")
    text = promlab.http_get(service.url).decode()
    assert 'rollouts_pod_template_hash="abc123"' in text
    for family in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "model_prediction_score_sum",
        "model_feature_null_total",
        "model_feature_observations_total",
    ):
        assert family in text
    deadline = time.monotonic() + 10
    while service.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not service.running, "fake service did not exit after --duration"
