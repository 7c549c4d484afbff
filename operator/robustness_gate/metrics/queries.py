"""The PromQL run for each metric: one query for both sides when the sides differ by one label.

A template that uses {{by}} is run once with {{selector}} matching both sides and {{by}} set to
the telling label; otherwise it is run once per side with {{by}} empty (`sum by () (x)` is `sum(x)`).
Histogram queries are generated, so they always fetch both sides at once when possible.

The parts of one metric (errors and total, or one per side) are then sent as one query: each part
is tagged with `PART_LABEL` by label_replace and the parts are joined with `or` (their tags differ,
so `or` keeps every series of every part), and the answer is split by that label again. One query
per metric and look costs Prometheus one evaluation and makes all parts read the same data.
"""

from __future__ import annotations

from dataclasses import dataclass

from robustness_gate.api import MetricSpec
from robustness_gate.durations import format_duration
from robustness_gate.metrics.increments import exact_form, exact_increments
from robustness_gate.metrics.templates import Matcher, Sides, render, render_matchers, uses

CANARY = "canary"
BASELINE = "baseline"
BOTH = "both"
# Series that both sides' selectors match, queried only when the selectors do not rule that out: such a
# series is counted on both sides, so anything it counts makes the comparison meaningless.
OVERLAP = "overlap"
# Tags each part's series in a combined query. Not a reserved "__" name, which some stores drop.
PART_LABEL = "robustness_gate_part"


@dataclass(frozen=True)
class Query:
    """One PromQL expression; `side` says whose series it returns (BOTH: split by `split_label`)."""

    role: str  # which part of the metric: errors, total, numerator, denominator, buckets, value
    side: str
    promql: str
    split_label: str | None = None

    @property
    def part(self) -> str:
        """This query's tag in a combined query: role and side are unique within one metric."""
        return f"{self.role}-{self.side}"


def combine(queries: list[Query]) -> str:
    """One PromQL expression answering all `queries`; a single query is sent as it is."""
    if len(queries) == 1:
        return queries[0].promql
    return combine_tagged([(query.part, query) for query in queries])


def combine_tagged(parts: list[tuple[str, Query]]) -> str:
    """One PromQL expression answering every query, each series tagged with its query's tag in PART_LABEL."""
    return " or ".join(f'label_replace({query.promql}, "{PART_LABEL}", "{tag}", "", "")' for tag, query in parts)


def template_queries(
    role: str,
    template: str,
    sides: Sides,
    window_seconds: float,
    where: str,
    *,
    overlap: bool = False,
    group: str | None = None,
) -> list[Query]:
    """A template's queries; with `group` (a feature label), {{by}} keeps that label too."""
    window = format_duration(window_seconds)

    def rendered(variables: dict[str, str]) -> str:
        promql = render(template, variables, where)
        # Counts per look must be exact counter differences (see increments.py); custom values are not counts.
        return promql if role == "value" else exact_increments(promql, window)

    split = sides.split()
    if split is not None and uses(template, "by"):
        by = split.label if group is None else f"{group}, {split.label}"
        variables = {"selector": split.selector(), "window": window, "by": by}
        return [Query(role, BOTH, rendered(variables), split.label)]
    queries = []
    for side, matchers in _per_side(sides, overlap=overlap):
        variables = {"selector": render_matchers(matchers), "window": window, "by": group or ""}
        queries.append(Query(role, side, rendered(variables)))
    return queries


def _per_side(sides: Sides, *, overlap: bool) -> list[tuple[str, tuple[Matcher, ...]]]:
    """Each side's matchers; with `overlap`, also both sides' at once where a series could match both."""
    parts = [(CANARY, sides.canary), (BASELINE, sides.baseline)]
    if overlap and not sides.disjoint():
        parts.append((OVERLAP, tuple(dict.fromkeys((*sides.canary, *sides.baseline)))))
    return parts


def histogram_queries(
    histogram: str, labels: str, sides: Sides, window_seconds: float, group: str | None = None
) -> list[Query]:
    """A classic histogram's bucket counts per look, by `le` (and by the `group` label, a feature, if any)."""
    return _grouped_counts("buckets", f"{histogram}_bucket", "le", labels, sides, window_seconds, group)


def category_queries(
    counter: str, category: str, labels: str, sides: Sides, window_seconds: float, group: str | None = None
) -> list[Query]:
    """A counter's counts per look and category (and per `group` label value, a feature, if any)."""
    return _grouped_counts("categories", counter, category, labels, sides, window_seconds, group)


def _grouped_counts(
    role: str, series: str, column: str, labels: str, sides: Sides, window_seconds: float, group: str | None
) -> list[Query]:
    window = format_duration(window_seconds)
    extra = labels.strip().rstrip(",")
    by = column if group is None else f"{column}, {group}"
    split = sides.split()
    if split is not None:
        selector = ",".join(part for part in (extra, split.selector()) if part)
        promql = f"sum by ({by}, {split.label}) {exact_form(f'{series}{{{selector}}}', window)}"
        return [Query(role, BOTH, promql, split.label)]
    queries = []
    for side, matchers in _per_side(sides, overlap=True):
        selector = ",".join(part for part in (extra, render_matchers(matchers)) if part)
        promql = f"sum by ({by}) {exact_form(f'{series}{{{selector}}}', window)}"
        queries.append(Query(role, side, promql))
    return queries


def metric_queries(metric: MetricSpec, sides: Sides, window_seconds: float, where: str = "") -> list[Query]:
    """All queries one look of this metric needs; `where` is the metric's field path for errors."""
    where = where or f"metrics[{metric.name}]"
    group = metric.features.label if metric.features is not None else None
    if metric.error_rate is not None:
        return [
            *template_queries("errors", metric.error_rate.errors, sides, window_seconds, f"{where}.errorRate.errors"),
            *template_queries(
                "total", metric.error_rate.total, sides, window_seconds, f"{where}.errorRate.total", overlap=True
            ),
        ]
    if metric.ratio is not None:
        return [
            *template_queries(
                "errors", metric.ratio.numerator, sides, window_seconds, f"{where}.ratio.numerator", group=group
            ),
            *template_queries(
                "total",
                metric.ratio.denominator,
                sides,
                window_seconds,
                f"{where}.ratio.denominator",
                overlap=True,
                group=group,
            ),
        ]
    if metric.latency is not None:
        return histogram_queries(metric.latency.histogram, metric.latency.labels, sides, window_seconds)
    if metric.drift is not None:
        if metric.drift.counter is not None:
            assert metric.drift.category is not None
            return category_queries(
                metric.drift.counter, metric.drift.category, metric.drift.labels, sides, window_seconds, group
            )
        assert metric.drift.histogram is not None
        return histogram_queries(metric.drift.histogram, metric.drift.labels, sides, window_seconds, group)
    assert metric.custom is not None
    where = f"{where}.custom.query"
    return template_queries("value", metric.custom.query, sides, window_seconds, where, overlap=True)


# A metric object, the sides and step it was rendered for, its queries and its spec as JSON.
_Rendered = tuple[MetricSpec, Sides, float, list[Query], str]


class QueryMemo:
    """metric_queries for one gate's metrics, rendered again only for another metric object, sides or step.

    A running gate keeps its parsed spec (the same MetricSpec objects) and its sides for a whole analysis,
    and rendering every template again at every step was a visible share of a step's CPU.
    """

    def __init__(self) -> None:
        self._memo: dict[str, _Rendered] = {}

    def _entry(self, metric: MetricSpec, sides: Sides, step: float) -> _Rendered:
        kept = self._memo.get(metric.name)
        if kept is not None and kept[0] is metric and kept[2] == step and kept[1] == sides:
            return kept
        entry = (metric, sides, step, metric_queries(metric, sides, step), metric.model_dump_json())
        self._memo[metric.name] = entry
        return entry

    def queries(self, metric: MetricSpec, sides: Sides, step: float) -> list[Query]:
        return self._entry(metric, sides, step)[3]

    def spec_json(self, metric: MetricSpec, sides: Sides, step: float) -> str:
        """The metric's spec as JSON (what its cached looks depend on), kept with its queries."""
        return self._entry(metric, sides, step)[4]
