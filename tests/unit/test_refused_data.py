"""Data that cannot be right is refused (an error naming the metric and the fix), never judged."""

from __future__ import annotations

import pytest
from fakes import REPLAY_SIDES as SIDES
from fakes import REPLAY_START as START
from fakes import StreamSource
from fakes import look_time as _at
from fakes import replay_gate as _gate

from robustness_gate.analysis import replay
from robustness_gate.api import Action, MetricSpec
from robustness_gate.metrics.assembly import assemble
from robustness_gate.metrics.queries import BASELINE, CANARY, OVERLAP, Query, metric_queries
from robustness_gate.metrics.source import REFUSED, MetricsError, RawSeries, Window
from robustness_gate.metrics.templates import Sides, TemplateError
from robustness_gate.series import CountSeries, MetricData

WINDOW = Window(start=1000.0, step=10.0, looks=3)
BY_VERSION = Sides.by_label("version", "v2", "v1")


def _samples(*values: float) -> list[tuple[float, float]]:
    return [(WINDOW.first + i * WINDOW.step, v) for i, v in enumerate(values)]


def _count_metric(kind: str = "errorRate") -> MetricSpec:
    errors, total = "sum by ({{by}}) (e{ {{selector}} }[{{window}}])", "sum by ({{by}}) (t{ {{selector}} }[{{window}}])"
    parts = (
        {"errorRate": {"errors": errors, "total": total}}
        if kind == "errorRate"
        else {"ratio": {"numerator": errors, "denominator": total}}
    )
    return MetricSpec.model_validate({"name": "fraud", "slo": {"max": 0.05}, **parts})


def _counts(metric: MetricSpec, sides: Sides, canary: tuple[list[float], list[float]]) -> dict[object, RawSeries]:
    """Raw answers: the canary's (events, total) per look, a healthy baseline."""
    errors_q, total_q = metric_queries(metric, sides, WINDOW.step)
    canary_labels, baseline_labels = ({"version": "v2"}, {"version": "v1"})
    return {
        errors_q: [(canary_labels, _samples(*canary[0])), (baseline_labels, _samples(1, 1, 1))],
        total_q: [(canary_labels, _samples(*canary[1])), (baseline_labels, _samples(100, 100, 100))],
    }


def _refusal(metric: MetricSpec, raw: dict[object, RawSeries], sides: Sides = BY_VERSION) -> MetricsError:
    with pytest.raises(MetricsError) as caught:
        assemble(metric, sides, WINDOW, raw)  # type: ignore[arg-type]
    assert caught.value.kind == REFUSED
    return caught.value


def test_a_numerator_above_its_denominator_is_refused_at_its_look() -> None:
    metric = _count_metric("ratio")
    error = _refusal(metric, _counts(metric, BY_VERSION, ([1, 90, 1], [100, 5, 100])))  # swapped at look 2
    message = str(error)
    assert message.startswith("metric fraud:") and "90 numerator but only 5 denominator at look 2" in message
    assert "swapped" in message and error.at == WINDOW.first + WINDOW.step


def test_scrape_skew_within_the_slack_is_judged_and_capped() -> None:
    metric = _count_metric()
    data = assemble(metric, BY_VERSION, WINDOW, _counts(metric, BY_VERSION, ([4, 12, 0], [2, 5, 0])))  # type: ignore[arg-type]
    assert isinstance(data, CountSeries)
    assert data.canary_events.tolist() == [2, 5, 0]  # 2·total + 2 allowed, capped at the total


def test_negative_counts_are_refused() -> None:
    metric = _count_metric()
    error = _refusal(metric, _counts(metric, BY_VERSION, ([1, 1, 1], [100, -40, 100])))
    assert "canary's total query counted -40 at look 2" in str(error) and "increase()" in str(error)


def _histogram(cumulative: list[list[float]]) -> tuple[MetricSpec, dict[object, RawSeries]]:
    metric = MetricSpec.model_validate(
        {"name": "lat", "latency": {"histogram": "h"}, "slo": {"quantile": 0.9, "max": 1}}
    )
    (query,) = metric_queries(metric, BY_VERSION, WINDOW.step)
    series: RawSeries = []
    for version, rows in (("v2", cumulative), ("v1", [[10, 20, 30]] * 3)):
        for column, le in enumerate(("0.5", "1", "+Inf")):
            series.append(({"version": version, "le": le}, _samples(*(row[column] for row in rows))))
    return metric, {query: series}


def test_buckets_that_are_not_cumulative_are_refused() -> None:
    metric, raw = _histogram([[10, 20, 30], [50, 20, 5], [10, 20, 30]])  # per-bucket counts at look 2
    error = _refusal(metric, raw)
    assert "bucket le=0.5 counted 50 but le=1 only 20 at look 2" in str(error) and "cumulative" in str(error)


def test_a_small_bucket_dip_from_scrape_skew_is_judged() -> None:
    metric, raw = _histogram([[10, 20, 30], [21, 20, 300], [10, 20, 30]])  # dips by 1 (≤ 2)
    assemble(metric, BY_VERSION, WINDOW, raw)  # type: ignore[arg-type]


def test_a_series_both_selectors_match_is_refused() -> None:
    sides = Sides.parse('app="fraud",version=~"v.*"', 'app="fraud",version!="v2"')
    metric = _count_metric()
    both = {"app": "fraud", "version": "v1"}  # v1 matches version=~"v.*" and version!="v2"
    raw = {
        query: [(both, _samples(*([1] * 3 if query.role == "errors" else [100] * 3)))]
        for query in metric_queries(metric, sides, WINDOW.step)
    }
    error = _refusal(metric, raw, sides)  # type: ignore[arg-type]
    assert 'the series {app="fraud",version="v1"} matches both the canary and the baseline selector' in str(error)


def test_aggregated_series_that_lost_the_side_labels_are_not_refused() -> None:
    sides = Sides.parse('app="fraud",track="canary"', 'app="fraud",track!="canary"')
    metric = _count_metric()
    queries = metric_queries(metric, sides, WINDOW.step)
    assert len(queries) == 4  # no label tells the sides apart in one query: one query per side
    raw: dict[Query, RawSeries] = {
        query: [({}, _samples(*([1] * 3 if query.role == "errors" else [100] * 3)))] for query in queries
    }
    data = assemble(metric, sides, WINDOW, raw)
    assert isinstance(data, CountSeries) and data.canary_total.tolist() == [100] * 3


def test_what_both_selectors_match_is_refused_where_the_queries_aggregate_the_labels_away() -> None:
    # Sums without the version label cannot show the shared series: a query of both sides' matchers can.
    sides = Sides.parse('app="fraud",version=~"v2|v1"', 'app="fraud",version="v1"')
    metric = _count_metric()
    queries = metric_queries(metric, sides, WINDOW.step)
    overlap = [query for query in queries if query.side == OVERLAP]
    assert [query.role for query in overlap] == ["total"]
    assert 't{ app="fraud",version=~"v2|v1",version="v1" }' in overlap[0].promql
    raw: dict[Query, RawSeries] = {
        query: [({}, _samples(*([1] * 3 if query.role == "errors" else [100] * 3)))] for query in queries
    }
    raw[overlap[0]] = [({}, _samples(0, 0, 100))]
    error = _refusal(metric, raw, sides)  # type: ignore[arg-type]
    assert str(error).startswith(
        'metric fraud: series that both the canary and the baseline selector match ({app="fraud",'
        'version=~"v2|v1",version="v1"}) counted 100 (total) at look 3'
    )
    assert error.at == WINDOW.first + 2 * WINDOW.step
    raw[overlap[0]] = []  # nothing matches both: judged
    data = assemble(metric, sides, WINDOW, raw)
    assert isinstance(data, CountSeries) and data.canary_total.tolist() == [100] * 3


def test_histograms_query_what_both_selectors_match_too() -> None:
    sides = Sides.parse('version=~"v2|v1"', 'version="v1"')
    metric = MetricSpec.model_validate(
        {"name": "lat", "slo": {"quantile": 0.99, "max": 0.1}, "latency": {"histogram": "h"}}
    )
    queries = metric_queries(metric, sides, WINDOW.step)
    assert [query.side for query in queries] == [CANARY, BASELINE, OVERLAP]
    assert (
        queries[2].promql.startswith("sum by (le) ") and 'h_bucket{version=~"v2|v1",version="v1"}' in queries[2].promql
    )
    assert metric_queries(metric, BY_VERSION, WINDOW.step)[-1].side != OVERLAP


@pytest.mark.parametrize(
    ("canary", "baseline", "disjoint"),
    [
        ('version="v2"', 'version="v1"', True),
        ('track="canary"', 'track!="canary"', True),
        ('track!="canary"', 'track="canary"', True),
        ('version=~"v2|v1"', 'version="v1"', False),
        ('track="canary"', 'track!="stable"', False),
    ],
)
def test_sides_that_cannot_share_a_series(canary: str, baseline: str, disjoint: bool) -> None:
    assert Sides.parse(canary, baseline).disjoint() is disjoint


@pytest.mark.parametrize(
    ("canary", "baseline"),
    [('app="fraud"', 'app="fraud",version="v1"'), ('app="fraud",version="v2"', 'app="fraud"')],
)
def test_selectors_of_which_one_contains_the_other_are_rejected(canary: str, baseline: str) -> None:
    with pytest.raises(TemplateError, match="overlapping selectors"):
        Sides.parse(canary, baseline)


class RefusingSource(StreamSource):
    """A stream whose canary numerator exceeds its denominator from look `bad` on."""

    def __init__(self, canary_rate: float, bad: int) -> None:
        super().__init__(canary_rate)
        self.bad = bad

    def fetch(self, metric: MetricSpec, sides: Sides, window: Window) -> MetricData:
        data = super().fetch(metric, sides, window)
        if window.looks >= self.bad:
            at = window.start + self.bad * window.step
            raise MetricsError(f"metric {metric.name}: numerator above denominator", REFUSED, at)
        return data


def test_refused_data_is_never_judged() -> None:
    gate = _gate()
    with pytest.raises(MetricsError) as caught:
        replay(gate, SIDES, RefusingSource(0.01, bad=3), START, _at(60))
    assert caught.value.kind == REFUSED


def test_a_decision_before_the_refused_look_stands() -> None:
    gate = _gate()
    decided = replay(gate, SIDES, StreamSource(0.05), START, _at(60))
    assert decided.decision.action is Action.ROLLBACK
    later = replay(gate, SIDES, RefusingSource(0.05, bad=decided.looks + 3), START, _at(60))
    assert (later.looks, later.decision) == (decided.looks, decided.decision)
    with pytest.raises(MetricsError):
        replay(gate, SIDES, RefusingSource(0.05, bad=decided.looks), START, _at(60))
