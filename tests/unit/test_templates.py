"""Strict templates, safe label values, and the queries each metric kind runs."""

from __future__ import annotations

import pytest

from robustness_gate.api import MetricSpec
from robustness_gate.metrics.increments import exact_form
from robustness_gate.metrics.queries import BOTH, CANARY, metric_queries
from robustness_gate.metrics.templates import (
    Matcher,
    Sides,
    TemplateError,
    escape_regex,
    parse_selector,
    render,
)


def test_render_substitutes_known_variables() -> None:
    assert render("a{ {{selector}} }[{{ window }}]", {"selector": 'x="1"', "window": "30s"}) == 'a{ x="1" }[30s]'


def test_unknown_variable_is_named() -> None:
    with pytest.raises(TemplateError, match=r"unknown template variable \{\{namespace\}\}; known: \{\{selector\}\}"):
        render('x{namespace="{{namespace}}",{{selector}}}', {"selector": ""})


def test_malformed_variable_is_rejected() -> None:
    with pytest.raises(TemplateError, match="malformed"):
        render("x{ {{selector }", {"selector": ""})


@pytest.mark.parametrize("hostile", ['v2"} or vector(1) #', 'a\\"b', "line\nbreak", '"}[5m]) > 0 or on() x{a="'])
def test_label_values_cannot_escape_their_string(hostile: str) -> None:
    rendered = Matcher("version", "=", hostile).render()
    assert rendered.startswith('version="') and rendered.endswith('"')
    body = rendered[len('version="') : -1]

    # Every double quote inside the literal is escaped, so the string cannot end early.
    def escaped(i: int) -> bool:
        backslashes = len(body[:i]) - len(body[:i].rstrip("\\"))
        return backslashes % 2 == 1

    assert all(escaped(i) for i, ch in enumerate(body) if ch == '"')
    assert parse_selector(rendered) == (Matcher("version", "=", hostile),)


def test_regex_escaping_is_literal() -> None:
    import re

    value = "a.b|c*(d)"
    assert re.fullmatch(escape_regex(value), value) and not re.fullmatch(escape_regex(value), "aXb")


@pytest.mark.parametrize("bad", ["version=v2", 'version="v2" or 1', "", '{version="v2"', 'a="1" b="2"'])
def test_bad_selectors_are_rejected(bad: str) -> None:
    with pytest.raises(TemplateError):
        parse_selector(bad)


def test_split_detection() -> None:
    split = Sides.parse('app="x",version="v2"', 'app="x",version="v1"').split()
    assert split is not None and (split.label, split.canary, split.baseline) == ("version", "v2", "v1")
    assert split.selector() == 'app="x",version=~"v2|v1"'
    assert Sides.parse('version="v2"', 'track="stable"').split() is None
    assert Sides.parse('version=~"v2.*"', 'version="v1"').split() is None
    with pytest.raises(TemplateError, match="identical selectors"):
        Sides.parse('version="v1"', 'version="v1"')


def _metric(**fields: object) -> MetricSpec:
    return MetricSpec.model_validate({"name": "m", **fields})


def test_by_template_runs_once_for_both_sides() -> None:
    metric = _metric(
        errorRate={
            "errors": "sum by ({{by}}) (increase(e{ {{selector}} }[{{window}}]))",
            "total": "sum by ({{by}}) (increase(t{ {{selector}} }[{{window}}]))",
        },
        slo={"max": 0.01},
    )
    queries = metric_queries(metric, Sides.by_label("version", "v2", "v1"), 30)
    assert [(q.role, q.side) for q in queries] == [("errors", BOTH), ("total", BOTH)]
    selector = 'e{ version=~"v2|v1" }'
    assert queries[0].promql == "sum by (version) (" + exact_form(selector, "30s") + ")"


def test_template_without_by_runs_per_side() -> None:
    metric = _metric(
        errorRate={
            "errors": "sum(increase(e{ {{selector}} }[{{window}}]))",
            "total": "sum(increase(t{ {{selector}} }[{{window}}]))",
        },
        slo={"max": 0.01},
    )
    queries = metric_queries(metric, Sides.parse('version="v2"', 'track="stable"'), 90)
    assert [(q.role, q.side) for q in queries] == [
        ("errors", "canary"),
        ("errors", "baseline"),
        ("total", "canary"),
        ("total", "baseline"),
        ("total", "overlap"),  # a series may carry both version="v2" and track="stable"
    ]
    assert queries[4].promql == "sum(" + exact_form('t{ version="v2",track="stable" }', "1m30s") + ")"
    canary, baseline = 'e{ version="v2" }', 'e{ track="stable" }'
    assert queries[0].promql == "sum(" + exact_form(canary, "1m30s") + ")"
    assert queries[1].promql == "sum(" + exact_form(baseline, "1m30s") + ")"


def test_histogram_queries_are_generated() -> None:
    metric = _metric(
        latency={"histogram": "http_request_duration_seconds", "labels": 'app="fraud"'},
        slo={"quantile": 0.99, "max": 0.1},
    )
    (query,) = metric_queries(metric, Sides.by_label("rollouts_pod_template_hash", "abc", "def"), 30)
    buckets = 'http_request_duration_seconds_bucket{app="fraud",rollouts_pod_template_hash=~"abc|def"}'
    assert query.promql == (
        f"sum by (le, rollouts_pod_template_hash) (({buckets} - {buckets} offset 30s) >= 0 or increase({buckets}[30s]))"
    )
    per_side = metric_queries(metric, Sides.parse('version="v2"', 'track="stable"'), 30)
    assert [q.side for q in per_side] == [CANARY, "baseline", "overlap"]


def test_template_error_names_the_metric_field() -> None:
    metric = _metric(custom={"query": "x{ {{selector}}, {{ pod }} }"}, slo={"max": 1})
    with pytest.raises(TemplateError, match=r"metrics\[m\]\.custom\.query: unknown template variable \{\{pod\}\}"):
        metric_queries(metric, Sides.by_label("v", "a", "b"), 30)
