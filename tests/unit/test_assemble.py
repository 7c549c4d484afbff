"""Raw Prometheus answers → per-look series (pure: the answers are constructed here)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustness_gate.api import MetricSpec
from robustness_gate.metrics.assembly import assemble
from robustness_gate.metrics.queries import Query, metric_queries
from robustness_gate.metrics.source import MetricsError, RawSeries, Window
from robustness_gate.metrics.templates import Sides
from robustness_gate.series import CountSeries, HistogramSeries, ValueSeries

SIDES = Sides.by_label("version", "v2", "v1")
WINDOW = Window(start=1000.0, step=10.0, looks=3)  # looks at 1010, 1020, 1030


def _samples(*values: float) -> list[tuple[float, float]]:
    return [(WINDOW.first + i * WINDOW.step, v) for i, v in enumerate(values)]


def test_window_between_and_index() -> None:
    window = Window.between(0.0, 95.0, 30.0)
    assert (window.looks, window.first, window.last) == (3, 30.0, 90.0)
    assert window.index(60.2) == 1 and window.index(0.0) is None and window.index(120.0) is None


def test_counts_from_one_query_per_role() -> None:
    metric = MetricSpec.model_validate(
        {
            "name": "e",
            "slo": {"max": 0.1},
            "errorRate": {
                "errors": "sum by ({{by}}) (e{ {{selector}} }[{{window}}])",
                "total": "sum by ({{by}}) (t{ {{selector}} }[{{window}}])",
            },
        }
    )
    errors_q, total_q = metric_queries(metric, SIDES, WINDOW.step)
    raw: dict[Query, RawSeries] = {
        errors_q: [({"version": "v2"}, _samples(1, 2, 3)), ({"version": "v1"}, _samples(0, 5))],
        total_q: [
            ({"version": "v2"}, _samples(10, 20, 2)),
            ({"version": "v1"}, _samples(100, 100, 100)),
            ({"version": "other"}, _samples(7, 7, 7)),
        ],
    }
    data = assemble(metric, SIDES, WINDOW, raw)
    assert isinstance(data, CountSeries)
    assert data.canary_events.tolist() == [1, 2, 2]  # capped at the total of that look
    assert data.baseline_events.tolist() == [0, 5, 0]  # a missing sample counts nothing
    assert data.baseline_total.tolist() == [100, 100, 100]


def _histogram_metric() -> MetricSpec:
    return MetricSpec.model_validate({"name": "l", "latency": {"histogram": "h"}, "slo": {"quantile": 0.9, "max": 1}})


def test_histogram_buckets_become_per_bucket_counts() -> None:
    metric = _histogram_metric()
    (query,) = metric_queries(metric, SIDES, WINDOW.step)
    raw: dict[object, RawSeries] = {
        query: [
            ({"version": "v2", "le": "0.5"}, _samples(1, 2, 3)),
            ({"version": "v2", "le": "1"}, _samples(4, 4, 4)),
            ({"version": "v2", "le": "+Inf"}, _samples(5, 6, 4)),
            ({"version": "v1", "le": "0.5"}, _samples(1, 1, 1)),
            ({"version": "v1", "le": "1"}, _samples(1, 1, 1)),
            ({"version": "v1", "le": "+Inf"}, _samples(2, 2, 2)),
        ]
    }
    data = assemble(metric, SIDES, WINDOW, raw)  # type: ignore[arg-type]
    assert isinstance(data, HistogramSeries)
    assert data.bounds == (0.5, 1.0)
    assert data.canary.tolist() == [[1, 3, 1], [2, 2, 2], [3, 1, 0]]
    assert data.baseline.tolist() == [[1, 0, 1]] * 3


def test_histograms_with_different_buckets_are_an_error() -> None:
    metric = _histogram_metric()
    (query,) = metric_queries(metric, SIDES, WINDOW.step)
    raw = {
        query: [
            ({"version": "v2", "le": "0.5"}, _samples(1)),
            ({"version": "v2", "le": "+Inf"}, _samples(1)),
            ({"version": "v1", "le": "0.25"}, _samples(1)),
            ({"version": "v1", "le": "+Inf"}, _samples(1)),
        ]
    }
    with pytest.raises(MetricsError, match="different buckets"):
        assemble(metric, SIDES, WINDOW, raw)


def test_histogram_without_inf_bucket_is_an_error() -> None:
    metric = _histogram_metric()
    (query,) = metric_queries(metric, SIDES, WINDOW.step)
    with pytest.raises(MetricsError, match=r'no le="\+Inf"'):
        assemble(metric, SIDES, WINDOW, {query: [({"version": "v2", "le": "0.5"}, _samples(1))]})


def test_empty_histogram_answer_is_no_traffic() -> None:
    metric = _histogram_metric()
    (query,) = metric_queries(metric, SIDES, WINDOW.step)
    data = assemble(metric, SIDES, WINDOW, {query: []})
    assert isinstance(data, HistogramSeries) and data.canary.sum() == 0


def test_infinite_values_are_an_error_naming_the_metric() -> None:
    metric = MetricSpec.model_validate({"name": "c", "custom": {"query": "x{ {{selector}} }"}, "slo": {"max": 1}})
    queries = metric_queries(metric, SIDES, WINDOW.step)
    raw: dict[Query, RawSeries] = {queries[0]: [({}, _samples(1, math.inf))], queries[1]: [({}, _samples(1))]}
    with pytest.raises(MetricsError, match=r"metric c .* returned inf"):
        assemble(metric, SIDES, WINDOW, raw)


def test_custom_values_keep_gaps_and_refuse_many_series() -> None:
    metric = MetricSpec.model_validate({"name": "c", "custom": {"query": "x{ {{selector}} }"}, "slo": {"max": 1}})
    queries = metric_queries(metric, SIDES, WINDOW.step)
    data = assemble(metric, SIDES, WINDOW, {queries[0]: [({}, _samples(0.5))], queries[1]: []})
    assert isinstance(data, ValueSeries)
    assert data.canary[0] == 0.5 and np.isnan(data.canary[1:]).all() and np.isnan(data.baseline).all()
    with pytest.raises(MetricsError, match="aggregate it to one value"):
        assemble(
            metric,
            SIDES,
            WINDOW,
            {queries[0]: [({"a": "1"}, _samples(1)), ({"a": "2"}, _samples(2))], queries[1]: []},
        )
