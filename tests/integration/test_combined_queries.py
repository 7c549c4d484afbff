"""One query per metric: against a real Prometheus, the combined query answers exactly what the separate
queries of its parts answer, for every metric kind, with the sides told apart by one label or not."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from robustness_gate.api import MetricSpec
from robustness_gate.metrics.assembly import assemble
from robustness_gate.metrics.prometheus import PrometheusSource
from robustness_gate.metrics.queries import combine, metric_queries
from robustness_gate.metrics.source import RawSeries, Window, split_parts
from robustness_gate.metrics.templates import Sides

if TYPE_CHECKING:
    from conftest import Lab

APP = "checkout"  # its canary differs from its baseline in errors, latency, scores and nulls
SPLIT = Sides.parse('version="canary"', 'version="stable"')
# Not one label apart: every part is then asked once per side.
PER_SIDE = Sides.parse('version="canary"', f'version="stable",app="{APP}"')
STEP = 5.0
LOOKS = 6


def counter(name: str, extra: str = "", by: bool = True) -> str:
    group = "sum by ({{by}}) " if by else "sum "
    return f'{group}(increase({name}{{app="{APP}",{extra}{{{{selector}}}}}}[{{{{window}}}}]))'


def metric(kind: str, **spec: Any) -> MetricSpec:
    return MetricSpec.model_validate({"name": kind.lower(), **spec})


METRICS = {
    "errorRate": metric(
        "errorRate",
        slo={"max": 0.05},
        errorRate={"errors": counter("http_requests_total", 'code=~"5..",'), "total": counter("http_requests_total")},
    ),
    "ratio": metric(
        "ratio",
        slo={"max": 0.05},
        ratio={"numerator": counter("model_feature_null_total"),
               "denominator": counter("model_feature_observations_total")},
    ),
    "latency": metric(
        "latency", slo={"quantile": 0.99, "max": 0.25},
        latency={"histogram": "http_request_duration_seconds", "labels": f'app="{APP}"'},
    ),
    "drift": metric("drift", drift={"histogram": "model_prediction_score", "labels": f'app="{APP}"', "max": 0.2}),
    "custom": metric(
        "custom", slo={"max": 1},
        custom={"query": f'sum(rate(http_request_duration_seconds_count{{app="{APP}",{{{{selector}}}}}}[1m]))'},
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def window(lab: Lab) -> Window:
    lab.wait_for_history(STEP * LOOKS + 2)
    # Looks that ended a few seconds ago: their samples are all stored, so both ways read the same data.
    end = math.floor(time.time()) - 5
    return Window(start=end - STEP * LOOKS, step=STEP, looks=LOOKS)


def _canonical(series: RawSeries) -> list[tuple[tuple[tuple[str, str], ...], list[tuple[float, float]]]]:
    return sorted((tuple(sorted(labels.items())), samples) for labels, samples in series)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and all(
        np.array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), equal_nan=True)
        for name in a.__dataclass_fields__
    )


@pytest.mark.parametrize("sides_name", ["split", "per side"])
@pytest.mark.parametrize("kind", list(METRICS))
def test_combined_query_gives_the_same_series_as_the_separate_ones(
    lab: Lab, window: Window, kind: str, sides_name: str
) -> None:
    sides = SPLIT if sides_name == "split" else PER_SIDE
    spec = METRICS[kind]
    queries = metric_queries(spec, sides, window.step)
    source = PrometheusSource(lab.url)
    try:
        separate = {query: source.range_query(query.promql, window, query.role) for query in queries}
        assert any(series for series in separate.values()), "the lab answered nothing: nothing was compared"
        combined = split_parts(queries, source.range_query(combine(queries), window, "combined"))
        assert combined is not None, "Prometheus dropped the part label"
        assert {q: _canonical(s) for q, s in combined.items()} == {q: _canonical(s) for q, s in separate.items()}

        before = source.queries_run
        data = source.fetch(spec, sides, window)
        assert source.queries_run - before == 1  # one query per metric and look
        assert _same(data, assemble(spec, sides, window, separate))
    finally:
        source.close()


def test_a_part_that_cannot_be_combined_is_asked_on_its_own(lab: Lab, window: Window) -> None:
    """A template returning a scalar cannot be tagged by label_replace: the parts are then sent one by one."""
    scalar = metric(
        "scalar",
        slo={"max": 1},
        custom={"query": f'scalar(sum(rate(http_requests_total{{app="{APP}",{{{{selector}}}}}}[1m])))'},
    )
    queries = metric_queries(scalar, SPLIT, window.step)
    source = PrometheusSource(lab.url)
    try:
        data = source.fetch(scalar, SPLIT, window)
        assert source.queries_run == 1 + len(queries)
        separate = {query: source.range_query(query.promql, window, query.role) for query in queries}
        assert _same(data, assemble(scalar, SPLIT, window, separate))
        assert not np.isnan(np.asarray(data.canary)).all()  # type: ignore[union-attr]
    finally:
        source.close()


@pytest.mark.parametrize("sides_name", ["split", "per side"])
def test_all_metrics_of_a_gate_in_one_query_give_what_each_metric_gives_alone(
    lab: Lab, window: Window, sides_name: str
) -> None:
    sides = SPLIT if sides_name == "split" else PER_SIDE
    metrics = list(METRICS.values())
    source = PrometheusSource(lab.url)
    try:
        fetched = source.fetch_many(metrics, sides, window)
        assert source.queries_run == 1
        for spec in metrics:
            alone = source.fetch(spec, sides, window)
            assert _same(fetched[spec.name], alone), spec.name
    finally:
        source.close()


def test_a_gate_with_a_part_that_cannot_be_combined_still_gets_every_metric(lab: Lab, window: Window) -> None:
    scalar = metric("scalar", slo={"max": 1}, custom={
        "query": f'scalar(sum(rate(http_requests_total{{app="{APP}",{{{{selector}}}}}}[1m])))'})  # fmt: skip
    metrics = [METRICS["errorRate"], scalar, METRICS["latency"]]
    source = PrometheusSource(lab.url)
    try:
        fetched = source.fetch_many(metrics, SPLIT, window)
        first = source.queries_run
        assert first > 1  # refused together, then asked metric by metric
        again = source.fetch_many(metrics, SPLIT, window)
        assert source.queries_run - first == first - 1  # not tried together again
        for spec in metrics:
            alone = source.fetch(spec, SPLIT, window)
            assert _same(fetched[spec.name], alone) and _same(again[spec.name], alone), spec.name
    finally:
        source.close()
