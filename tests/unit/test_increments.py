"""The rewrite of `increase(<selector>[<window>])` into exact per-look counter differences."""

from __future__ import annotations

import pytest

from robustness_gate.metrics.increments import exact_form, exact_increments


def test_exact_form_is_the_difference_with_increase_for_resets_and_new_series() -> None:
    assert exact_form('c{a="x"}', "30s") == '((c{a="x"} - c{a="x"} offset 30s) >= 0 or increase(c{a="x"}[30s]))'


@pytest.mark.parametrize(
    ("promql", "selector"),
    [
        (
            'sum(increase(http_requests_total{code=~"5..",version="v2"}[30s]))',
            'http_requests_total{code=~"5..",version="v2"}',
        ),
        ("sum(increase(requests_total[30s]))", "requests_total"),
        ('sum by (v) (increase( requests_total { v=~"a|b" } [ 30s ] ))', 'requests_total { v=~"a|b" }'),
        # Brackets, braces and parentheses inside label values do not end the selector.
        ('sum(increase(r_total{path="/a[30s]}(x)",v="2"}[30s]))', 'r_total{path="/a[30s]}(x)",v="2"}'),
        ("sum(increase(ns:r_total{v='2'}[30s]))", "ns:r_total{v='2'}"),
    ],
)
def test_per_look_increase_becomes_the_exact_difference(promql: str, selector: str) -> None:
    rewritten = exact_increments(promql, "30s")
    assert exact_form(selector, "30s") in rewritten
    assert "increase(" + selector + "[30s])" in rewritten  # kept only as the fallback
    assert rewritten.startswith("sum") and rewritten.endswith(")")
    assert rewritten.count("(") == rewritten.count(")")


def test_every_occurrence_is_rewritten() -> None:
    promql = "sum(increase(a_total[1m])) + sum(increase(b_total[1m]))"
    assert exact_increments(promql, "1m") == f"sum({exact_form('a_total', '1m')}) + sum({exact_form('b_total', '1m')})"


@pytest.mark.parametrize(
    "promql",
    [
        "sum(increase(a_total[5m]))",  # another window: not a per-look count
        "sum(increase(rate(a_total[1m])[30s:10s]))",  # a subquery
        'sum(increase({__name__="a_total"}[30s]))',  # no metric name: the difference could collide
        "sum(increase(a_total[30s] offset 1m))",  # already shifted
        "sum(rate(a_total[30s]))",  # not increase()
        'sum(x_total{path="increase(a_total[30s])"})',  # inside a string
        "sum(increase(a_total[30s]",  # unbalanced: left for Prometheus to report
        'sum(increase(a_total{v="2"[30s]))',  # unclosed matchers
    ],
)
def test_anything_else_is_left_as_written(promql: str) -> None:
    assert exact_increments(promql, "30s") == promql
