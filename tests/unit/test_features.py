"""Metrics over many features and categorical drift: from one query's answer (constructed here) to per-feature
series, the per-feature verdicts with the budget split (Holm for drift, Bonferroni for ratios), the metric's
rule (critical features, maxDriftedShare), the status list, and the spec's errors."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from scipy.stats import norm

from robustness_gate.api import MetricSpec, RobustnessGateSpec, Verdict
from robustness_gate.judge import judge_metric
from robustness_gate.judge.results import JudgeSettings
from robustness_gate.metrics.assembly import assemble
from robustness_gate.metrics.cache import splice
from robustness_gate.metrics.queries import Query, metric_queries
from robustness_gate.metrics.source import MetricsError, RawSeries, Window
from robustness_gate.metrics.templates import Sides
from robustness_gate.series import CategorySeries, CountSeries, GroupedSeries, HistogramSeries, first_looks

SIDES = Sides.by_label("version", "v2", "v1")
WINDOW = Window(start=1000.0, step=10.0, looks=3)
SETTINGS = JudgeSettings(alpha=0.01, min_canary=50, min_baseline=50)
LE = ("0.25", "0.5", "0.75", "+Inf")
NULL_RATES = {
    "name": "nulls",
    "ratio": {
        "numerator": "sum by ({{by}}) (increase(model_feature_null_total{ {{selector}} }[{{window}}]))",
        "denominator": "sum by ({{by}}) (increase(model_feature_observations_total{ {{selector}} }[{{window}}]))",
    },
    "features": {"label": "feature"},
    "slo": {"max": 0.05},
}


def samples(*values: float) -> list[tuple[float, float]]:
    return [(WINDOW.first + i * WINDOW.step, v) for i, v in enumerate(values)]


def drift_metric(**features: object) -> MetricSpec:
    return MetricSpec.model_validate(
        {"name": "inputs", "drift": {"histogram": "feature_value"}, "features": {"label": "feature", **features}}
    )


def test_one_query_answers_every_feature_and_each_is_a_histogram_of_its_own() -> None:
    metric = drift_metric()
    (query,) = metric_queries(metric, SIDES, WINDOW.step)
    assert "sum by (le, feature, version)" in query.promql
    raw: dict[Query, RawSeries] = {
        query: [
            ({"feature": f, "version": v, "le": le}, samples(*(scale * (i + 1) for _ in range(3))))
            for f, scale in (("age", 1.0), ("amount", 2.0))
            for v in ("v2", "v1")
            for i, le in enumerate(LE)
        ]
    }
    data = assemble(metric, SIDES, WINDOW, raw)
    assert isinstance(data, GroupedSeries) and data.groups == ("age", "amount") and data.looks == 3
    age, amount = data.members
    assert isinstance(age, HistogramSeries) and age.bounds == (0.25, 0.5, 0.75)
    assert age.canary[0].tolist() == [1, 1, 1, 1] and isinstance(amount, HistogramSeries)
    assert amount.canary[0].tolist() == [2, 2, 2, 2]
    # Cut and joined like any series, feature by feature.
    assert first_looks(data, 2).looks == 2
    joined = splice(data, 2, first_looks(data, 1))
    assert isinstance(joined, GroupedSeries) and joined.looks == 3
    assert splice(data, 2, GroupedSeries("feature", ("age",), (age,), 3)) is None  # another set of features


def test_a_series_without_the_feature_label_is_refused_and_features_only_keeps_missing_ones_as_no_data() -> None:
    metric = drift_metric()
    (query,) = metric_queries(metric, SIDES, WINDOW.step)
    raw: dict[Query, RawSeries] = {query: [({"version": "v2", "le": "+Inf"}, samples(1, 1, 1))]}
    with pytest.raises(MetricsError, match="has no feature label"):
        assemble(metric, SIDES, WINDOW, raw)
    only = drift_metric(only=["age", "zip"])
    raw = {query: [({"feature": "age", "version": v, "le": le}, samples(5, 5, 5)) for v in ("v2", "v1") for le in LE]}
    data = assemble(only, SIDES, WINDOW, raw)
    assert isinstance(data, GroupedSeries) and data.groups == ("age", "zip")
    result = judge_metric(only, data, SETTINGS)
    statuses = {feature.name: feature.verdict for feature in result.features}
    assert statuses["zip"] is Verdict.NO_DATA


def test_categories_from_a_counter_and_a_category_the_baseline_never_had_named() -> None:
    metric = MetricSpec.model_validate(
        {"name": "classes", "drift": {"counter": "predictions_total", "category": "class"}}
    )
    (query,) = metric_queries(metric, SIDES, WINDOW.step)
    assert "sum by (class, version)" in query.promql
    rng = np.random.default_rng(1)
    looks = 20
    window = Window(start=1000.0, step=60.0, looks=looks)

    def counts(probs: list[float], n: int) -> np.ndarray:
        return np.array([rng.multinomial(n, probs) for _ in range(looks)], dtype=float)

    canary, baseline = counts([0.5, 0.3, 0.1, 0.1], 200), counts([0.7, 0.3, 0.0, 0.0], 1800)
    names = ("approve", "review", "decline", "escalate")
    raw: dict[Query, RawSeries] = {
        query: [
            ({"class": name, "version": version}, [(window.first + i * 60.0, float(table[i, j])) for i in range(looks)])
            for version, table in (("v2", canary), ("v1", baseline))
            for j, name in enumerate(names)
            if table[:, j].sum() > 0
        ]
    }
    data = assemble(metric, SIDES, window, raw)
    assert isinstance(data, CategorySeries) and data.categories == tuple(sorted(names))
    assert data.baseline[:, data.categories.index("decline")].sum() == 0  # a column of zeros where unseen
    result = judge_metric(metric, data, SETTINGS)
    assert result.verdict is Verdict.FAIL and result.effect is not None and result.effect > 0.2
    assert (
        "category drift" in result.message and "categories the baseline never had: decline, escalate" in result.message
    )
    assert result.canary is None  # categories have no mean


def decile_counts(rng: np.random.Generator, shift: float, n: int, looks: int) -> np.ndarray:
    edges = np.concatenate(([0.0], norm.cdf(norm.ppf(np.arange(1, 10) / 10) - shift), [1.0]))
    return np.array([rng.multinomial(n, np.diff(edges)) for _ in range(looks)], dtype=float)


def features_data(rng: np.random.Generator, shifts: dict[str, float], looks: int = 15) -> GroupedSeries:
    bounds = tuple(float(x) for x in norm.ppf(np.arange(1, 10) / 10))
    members = tuple(
        HistogramSeries(bounds, decile_counts(rng, shift, 100, looks), decile_counts(rng, 0.0, 900, looks))
        for shift in shifts.values()
    )
    return GroupedSeries("feature", tuple(shifts), members, looks)


def test_one_drifted_feature_of_thirty_is_listed_first_and_fails_only_when_critical_or_the_share_is_reached() -> None:
    rng = np.random.default_rng(2)
    shifts = {f"f{i:02d}": 0.0 for i in range(30)} | {"f07": 1.0}
    data = features_data(rng, shifts)
    plain = judge_metric(drift_metric(), data, SETTINGS)
    assert plain.verdict in (Verdict.PASS, Verdict.MARGINAL), plain.message
    assert plain.features[0].name == "f07" and plain.features[0].verdict is Verdict.FAIL
    assert plain.message.startswith("1 of 30 features drifted (f07)") and "fails at 15" in plain.message
    critical = judge_metric(drift_metric(critical=["f07"]), data, SETTINGS)
    assert critical.verdict is Verdict.FAIL and critical.message.startswith("critical feature f07 drifted")
    share = judge_metric(drift_metric(maxDriftedShare=1 / 30), data, SETTINGS)
    assert share.verdict is Verdict.FAIL and "1 of 30 features drifted, fails at 1" in share.message
    assert share.effect == share.features[0].effect  # the headline numbers are the drifted feature's
    status = share.to_status()
    assert status.features is not None and status.features[0].name == "f07" and len(status.features) == 30


def test_holm_rejects_more_than_bonferroni_when_several_features_drift() -> None:
    """Three features drift moderately; Holm's later steps are more lenient than alpha / 30."""
    rng = np.random.default_rng(3)
    shifts = {f"f{i:02d}": 0.0 for i in range(30)} | {"f01": 0.75, "f02": 0.75, "f03": 0.75}
    data = features_data(rng, shifts, looks=6)
    result = judge_metric(drift_metric(maxDriftedShare=0.1), data, SETTINGS)
    drifted = [f.name for f in result.features if f.verdict is Verdict.FAIL]
    assert set(drifted) == {"f01", "f02", "f03"}, result.message
    p_values = sorted(f.p_value or 1.0 for f in result.features[:3])
    assert p_values[-1] <= SETTINGS.alpha / 28  # the third step's level
    assert result.verdict is Verdict.FAIL and "3 of 30 features drifted, fails at 3" in result.message


def test_healthy_features_rarely_drift_together_or_alone() -> None:
    """A/A over 30 features: the chance of any drifted feature stays below alpha (Holm, any dependence)."""
    rng = np.random.default_rng(4)
    runs, any_drift = 120, 0
    for _ in range(runs):
        data = features_data(rng, {f"f{i:02d}": 0.0 for i in range(30)}, looks=10)
        result = judge_metric(drift_metric(maxDriftedShare=1 / 30), data, SETTINGS)
        any_drift += result.verdict is Verdict.FAIL
    assert any_drift / runs <= SETTINGS.alpha + 3 * math.sqrt(SETTINGS.alpha / runs)


def null_data(rates: dict[str, float], looks: int = 20, n: float = 400.0) -> GroupedSeries:
    rng = np.random.default_rng(5)
    members = tuple(
        CountSeries(
            rng.binomial(int(n), rate, looks).astype(float),
            np.full(looks, n),
            rng.binomial(int(9 * n), 0.01, looks).astype(float),
            np.full(looks, 9 * n),
        )
        for rate in rates.values()
    )
    return GroupedSeries("feature", tuple(rates), members, looks)


def test_a_feature_whose_null_rate_jumps_fails_the_metric_by_name() -> None:
    metric = MetricSpec.model_validate(NULL_RATES)
    rates = {"age": 0.01, "amount": 0.01, "device_fingerprint": 0.12, "zip": 0.01}
    result = judge_metric(metric, null_data(rates), SETTINGS)
    assert result.verdict is Verdict.FAIL
    assert result.message.startswith("1 of 4 features failed: device_fingerprint")
    assert result.features[0].name == "device_fingerprint" and "Bonferroni over 4" in result.test
    healthy = judge_metric(metric, null_data(dict.fromkeys(rates, 0.01)), SETTINGS)
    assert healthy.verdict is Verdict.PASS and healthy.message == "all 4 features hold"


def test_features_slo_overrides_the_metrics_bound_for_the_features_it_names() -> None:
    rates = {"age": 0.03, "zip": 0.03}
    strict = MetricSpec.model_validate({**NULL_RATES, "features": {"label": "feature", "slo": {"zip": 0.01}}})
    result = judge_metric(strict, null_data(rates, looks=30, n=1000.0), SETTINGS)
    verdicts = {f.name: f.verdict for f in result.features}
    assert verdicts == {"zip": Verdict.FAIL, "age": Verdict.PASS}, result.message


def test_two_hundred_features_fit_a_status_easily() -> None:
    rng = np.random.default_rng(6)
    data = features_data(rng, {f"feature_{i:03d}": 0.0 for i in range(200)}, looks=3)
    status = judge_metric(drift_metric(), data, SETTINGS).to_status()
    size = len(json.dumps(status.model_dump(by_alias=True, exclude_none=True)))
    assert status.features is not None and len(status.features) == 200
    assert size < 100_000, size  # etcd takes objects up to 1.5 MiB


@pytest.mark.parametrize(
    ("metric", "field", "fix"),
    [
        ({"drift": {"counter": "p", "category": "c", "effect": "Wasserstein"}}, "drift", "use PSI or JensenShannon"),
        ({"drift": {"counter": "p"}}, "drift", "needs drift.category"),
        ({"drift": {"histogram": "h"}, "features": {"label": "f", "maxDriftedShare": 1.5}}, "maxDriftedShare", "1"),
        ({"drift": {"histogram": "h"}, "features": {"label": "f", "only": []}}, "only", "at least 1"),
        ({"drift": {"histogram": "h"}, "features": {"label": "f", "only": ["a"], "critical": ["b"]}}, "", "only"),
        ({"latency": {"histogram": "h"}, "slo": {"quantile": 0.9, "max": 1}, "features": {"label": "f"}}, "", "drift"),
        ({**NULL_RATES, "ratio": {"numerator": "a", "denominator": "b"}}, "", "{{by}}"),
    ],
)
def test_bad_feature_and_category_specs_name_the_field_and_the_fix(
    metric: dict[str, object], field: str, fix: str
) -> None:
    document = {
        "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
        "prometheus": {"address": "http://127.0.0.1:9"},
        "metrics": [{"name": "m", **metric}],
    }
    with pytest.raises(ValueError) as error:
        RobustnessGateSpec.model_validate(document)
    assert field in str(error.value) and fix in str(error.value)


def test_a_ratio_over_features_parses_as_the_apiserver_stores_it_with_the_schemas_defaults() -> None:
    stored = {**NULL_RATES, "features": {"label": "feature", "maxDriftedShare": 0.5, "critical": [], "slo": {}}}
    assert MetricSpec.model_validate(stored).features is not None
    with pytest.raises(ValueError, match=r"features\.critical is for drift metrics"):
        MetricSpec.model_validate({**NULL_RATES, "features": {"label": "feature", "critical": ["age"]}})


def test_data_that_cannot_be_right_is_refused_naming_the_feature() -> None:
    metric = MetricSpec.model_validate(NULL_RATES)
    errors_q, total_q = metric_queries(metric, SIDES, WINDOW.step)
    raw: dict[Query, RawSeries] = {
        errors_q: [({"feature": f, "version": v}, samples(1, 1, 1)) for f in ("age", "zip") for v in ("v2", "v1")],
        total_q: [({"feature": "age", "version": v}, samples(100, 100, 100)) for v in ("v2", "v1")]
        + [({"feature": "zip", "version": v}, samples(100, 100, 100)) for v in ("v1",)]
        + [({"feature": "zip", "version": "v2"}, samples(0.0, 100, 100))],
    }
    raw[errors_q] = [({"feature": "zip", "version": "v2"}, samples(60, 1, 1)), *raw[errors_q][:2]]
    with pytest.raises(MetricsError, match=r"^metric nulls, feature=zip: ") as error:
        assemble(metric, SIDES, WINDOW, raw)
    assert error.value.kind == "refused"


DECILE_LE = [f"{x:.4f}" for x in norm.ppf(np.arange(1, 10) / 10)] + ["+Inf"]


def reference_metric(reference: dict[str, object]) -> MetricSpec:
    return MetricSpec.model_validate({"name": "scores", "drift": {"histogram": "score", "reference": reference}})


def test_both_sides_far_from_the_reference_but_alike_is_input_drift_not_a_regression() -> None:
    """Training profile at the deciles; live traffic has moved 0.8 sd on both sides alike: reported, not failed."""
    rng = np.random.default_rng(7)
    metric = reference_metric({"le": DECILE_LE, "shares": [0.1] * 10})
    bounds = tuple(float(x) for x in DECILE_LE[:-1])
    data = HistogramSeries(bounds, decile_counts(rng, 0.8, 200, 15), decile_counts(rng, 0.8, 1800, 15))
    result = judge_metric(metric, data, SETTINGS)
    assert result.verdict is Verdict.PASS, result.message
    assert result.reference_canary is not None and result.reference_canary > 0.2
    assert result.reference_baseline is not None and result.reference_baseline > 0.2
    assert (
        "from the reference: canary PSI" in result.message and "input drift, not a canary regression" in result.message
    )
    status = result.to_status()
    assert status.reference_canary == result.reference_canary
    # A canary that moved alone still fails on the comparison, with both distances reported.
    moved = HistogramSeries(bounds, decile_counts(rng, 0.8, 200, 15), decile_counts(rng, 0.0, 1800, 15))
    failed = judge_metric(metric, moved, SETTINGS)
    assert failed.verdict is Verdict.FAIL and "input drift" not in failed.message
    assert (failed.reference_baseline or 1.0) < 0.05 < (failed.reference_canary or 0.0)


def test_a_categorical_reference_counts_categories_the_live_traffic_lacks() -> None:
    metric = MetricSpec.model_validate(
        {
            "name": "classes",
            "drift": {
                "counter": "predictions_total",
                "category": "class",
                "reference": {"categories": {"approve": 70, "review": 20, "decline": 10}},
            },
        }
    )
    rng = np.random.default_rng(8)
    canary = np.array([rng.multinomial(300, [0.78, 0.22]) for _ in range(10)], dtype=float)
    baseline = np.array([rng.multinomial(2700, [0.78, 0.22]) for _ in range(10)], dtype=float)
    result = judge_metric(metric, CategorySeries(("approve", "review"), canary, baseline), SETTINGS)
    assert result.reference_canary is not None and result.reference_canary > 0.5  # no "decline" at all
    assert result.verdict is Verdict.PASS


def test_a_reference_for_other_buckets_is_refused_naming_the_field() -> None:
    metric = reference_metric({"le": ["0.5", "1", "+Inf"], "shares": [0.3, 0.5, 0.2]})
    (query,) = metric_queries(metric, SIDES, WINDOW.step)
    raw: dict[Query, RawSeries] = {
        query: [({"version": v, "le": le}, samples(5, 5, 5)) for v in ("v2", "v1") for le in ("0.25", "0.5", "+Inf")]
    }
    with pytest.raises(MetricsError, match=r"drift\.reference\.le \(0\.5, 1, \+Inf\) are not the histogram's buckets"):
        assemble(metric, SIDES, WINDOW, raw)


@pytest.mark.parametrize(
    ("reference", "fix"),
    [
        ({"le": ["1", "2", "+Inf"], "shares": [0.5, 0.5]}, "3 le bounds but 2 shares"),
        ({"le": ["1", "2"], "shares": [0.5, 0.5]}, 'must end with "+Inf"'),
        ({"le": ["2", "1", "+Inf"], "shares": [0.2, 0.3, 0.5]}, "must increase"),
        ({"le": ["1", "+Inf"], "shares": [-1.0, 2.0]}, "non-negative"),
        ({"categories": {"a": 1.0}}, "a histogram's reference gives le and shares"),
        ({"shares": [0.5, 0.5]}, "needs le and shares"),
    ],
)
def test_bad_references_say_what_to_fix(reference: dict[str, object], fix: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fix)):
        reference_metric(reference)
