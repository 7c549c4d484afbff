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
    role: str, template: str, sides: Sides, window_seconds: float, where: str, *, overlap: bool = False
) -> list[Query]:
    window = format_duration(window_seconds)

    def rendered(variables: dict[str, str]) -> str:
        promql = render(template, variables, where)
        # Counts per look must be exact counter differences (see increments.py); custom values are not counts.
        return promql if role == "value" else exact_increments(promql, window)

    split = sides.split()
    if split is not None and uses(template, "by"):
        variables = {"selector": split.selector(), "window": window, "by": split.label}
        return [Query(role, BOTH, rendered(variables), split.label)]
    queries = []
    for side, matchers in _per_side(sides, overlap=overlap):
        variables = {"selector": render_matchers(matchers), "window": window, "by": ""}
        queries.append(Query(role, side, rendered(variables)))
    return queries


def _per_side(sides: Sides, *, overlap: bool) -> list[tuple[str, tuple[Matcher, ...]]]:
    """Each side's matchers; with `overlap`, also both sides' at once where a series could match both."""
    parts = [(CANARY, sides.canary), (BASELINE, sides.baseline)]
    if overlap and not sides.disjoint():
        parts.append((OVERLAP, tuple(dict.fromkeys((*sides.canary, *sides.baseline)))))
    return parts


def histogram_queries(histogram: str, labels: str, sides: Sides, window_seconds: float) -> list[Query]:
    window = format_duration(window_seconds)
    extra = labels.strip().rstrip(",")
    split = sides.split()
    if split is not None:
        selector = ",".join(part for part in (extra, split.selector()) if part)
        promql = f"sum by (le, {split.label}) {exact_form(f'{histogram}_bucket{{{selector}}}', window)}"
        return [Query("buckets", BOTH, promql, split.label)]
    queries = []
    for side, matchers in _per_side(sides, overlap=True):
        selector = ",".join(part for part in (extra, render_matchers(matchers)) if part)
        promql = f"sum by (le) {exact_form(f'{histogram}_bucket{{{selector}}}', window)}"
        queries.append(Query("buckets", side, promql))
    return queries


def metric_queries(metric: MetricSpec, sides: Sides, window_seconds: float, where: str = "") -> list[Query]:
    """All queries one look of this metric needs; `where` is the metric's field path for errors."""
    where = where or f"metrics[{metric.name}]"
    if metric.error_rate is not None:
        return [
            *template_queries("errors", metric.error_rate.errors, sides, window_seconds, f"{where}.errorRate.errors"),
            *template_queries(
                "total", metric.error_rate.total, sides, window_seconds, f"{where}.errorRate.total", overlap=True
            ),
        ]
    if metric.ratio is not None:
        return [
            *template_queries("errors", metric.ratio.numerator, sides, window_seconds, f"{where}.ratio.numerator"),
            *template_queries(
                "total", metric.ratio.denominator, sides, window_seconds, f"{where}.ratio.denominator", overlap=True
            ),
        ]
    if metric.latency is not None:
        return histogram_queries(metric.latency.histogram, metric.latency.labels, sides, window_seconds)
    if metric.drift is not None:
        return histogram_queries(metric.drift.histogram, metric.drift.labels, sides, window_seconds)
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
