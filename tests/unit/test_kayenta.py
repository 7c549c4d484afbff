"""Kayenta compatibility: Kayenta's own test vectors, then cross-checks against scipy.

Input arrays come from tests/unit/data/kayenta_vectors.json, extracted from spinnaker/kayenta's
Scala suites (commit recorded in the file). Expected numbers are the ones those suites assert,
with the same tolerances.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from robustness_gate.stats.kayenta import (
    KayentaDirection,
    KayentaLabel,
    KayentaNaNStrategy,
    KayentaResult,
    classify,
    cles,
    handle_nans,
    iqr_outlier_mask,
    mean_ratio,
)
from robustness_gate.stats.mannwhitney import (
    MannWhitneyResult,
    mann_whitney_interval,
    wilcoxon_diff,
    z_quantile,
    zeroin,
)

VECTORS: dict[str, dict[str, dict[str, list[Any]]]] = json.loads(
    (Path(__file__).parent / "data" / "kayenta_vectors.json").read_text()
)["suites"]
E = 1e-6  # the tolerance Kayenta's suites assert with
# zeroin stops once its bracket is 2 * (2 eps |b| + 1e-4 / 2) wide.
TOL_ROOT = 1.0001e-4


def _mw(test: str) -> dict[str, list[float]]:
    return VECTORS["MannWhitneySuite"][test]


def test_vector_file_matches_the_kayenta_suites() -> None:
    sizes = {name: {k: len(v) for k, v in arrays.items()} for name, arrays in VECTORS["MannWhitneySuite"].items()}
    assert sizes["Wilcoxon Diff Function"] == {"x": 850, "y": 850}
    assert sizes["Mann-Whitney Confidence Interval & Estimate: Problem Case"] == {
        "experiment": 850,
        "control": 850,
    }
    assert sizes["Mann-Whitney Confidence Interval & Estimate: Tie out with R Version"] == {
        "control": 90,
        "experiment": 90,
    }
    assert sizes["Mann-Whitney Confidence Interval & Estimate: Tie out with R Version (Large)"] == {
        "experiment": 180,
        "control": 180,
    }
    assert sizes["Mann-Whitney Intermediate Values / Variables"] == {"x": 210, "y": 210}
    assert len(VECTORS["ClassifierSuite"]) == len(CLASSIFIER_SUITE)


# --- MannWhitneySuite.scala -------------------------------------------------------------------


def test_wilcoxon_diff_function() -> None:
    data = _mw("Wilcoxon Diff Function")
    assert wilcoxon_diff(0.0, 0.0, data["x"], data["y"]) == pytest.approx(-1.229416, abs=E)
    assert wilcoxon_diff(5.0, 0.0, data["x"], data["y"]) == pytest.approx(-35.80606, abs=E)


def test_z_quant() -> None:
    assert z_quantile(0.02) == pytest.approx(-2.326348, abs=E)


def test_confidence_interval_and_estimate() -> None:
    data = _mw("Mann-Whitney Confidence Interval & Estimate")
    result = mann_whitney_interval(data["experimentData"], data["controlData"], 0.95)
    assert result.lower == pytest.approx(6.0, abs=E)
    assert result.upper == pytest.approx(39.0, abs=E)
    assert result.estimate == pytest.approx(22.5, abs=E)


def test_problem_case() -> None:
    data = _mw("Mann-Whitney Confidence Interval & Estimate: Problem Case")
    result = mann_whitney_interval(data["experiment"], data["control"], 0.98)
    assert result.lower == pytest.approx(-1.4808028936386108e-5, abs=E)
    assert result.upper == pytest.approx(1.808255910873413e-5, abs=E)
    assert result.estimate == pytest.approx(1.808255910873413e-5, abs=E)


def test_tie_out_with_r() -> None:
    data = _mw("Mann-Whitney Confidence Interval & Estimate: Tie out with R Version")
    result = mann_whitney_interval(data["experiment"], data["control"], 0.95)
    assert result.lower == pytest.approx(-0.500002521696696, abs=E)
    assert result.upper == pytest.approx(-3.486287505871302e-5, abs=E)
    assert result.estimate == pytest.approx(-0.4999393907180323, abs=1e-4)


def test_tie_out_with_r_large() -> None:
    data = _mw("Mann-Whitney Confidence Interval & Estimate: Tie out with R Version (Large)")
    result = mann_whitney_interval(data["experiment"], data["control"], 0.98)
    assert result.lower == pytest.approx(-0.4999173250549087, abs=E)
    assert result.upper == pytest.approx(-6.912685789769486e-6, abs=E)
    assert result.estimate == pytest.approx(-3.45044082729315e-5, abs=1e-4)


def test_intermediate_values() -> None:
    data = _mw("Mann-Whitney Intermediate Values / Variables")
    x, y = np.asarray(data["x"]), np.asarray(data["y"])
    alpha = 1.0 - 0.95
    mu_min = float(x.min() - y.max())
    mu_max = float(x.max() - y.min())
    zq_lower = -z_quantile(alpha)
    zq_upper = z_quantile(alpha)
    f_lower0, f_upper0 = wilcoxon_diff(mu_min, 0.0, x, y), wilcoxon_diff(mu_max, 0.0, x, y)
    f_lower1, f_upper1 = wilcoxon_diff(mu_min, zq_lower, x, y), wilcoxon_diff(mu_max, zq_lower, x, y)
    f_lower2, f_upper2 = wilcoxon_diff(mu_min, zq_upper, x, y), wilcoxon_diff(mu_max, zq_upper, x, y)
    ci_lower = zeroin(mu_min, mu_max, f_lower1, f_upper1, lambda mu: wilcoxon_diff(mu, zq_lower, x, y))
    ci_upper = zeroin(mu_min, mu_max, f_lower2, f_upper2, lambda mu: wilcoxon_diff(mu, zq_upper, x, y))
    estimate = zeroin(mu_min, mu_max, f_lower0, f_upper0, lambda mu: wilcoxon_diff(mu, 0.0, x, y))

    assert mu_min == pytest.approx(-3.124999999999986, abs=E)
    assert mu_max == pytest.approx(5.555555555555557, abs=E)
    assert zq_lower == pytest.approx(1.9599639845400536, abs=E)
    assert zq_upper == pytest.approx(-1.9599639845400536, abs=E)
    assert f_lower1 == pytest.approx(17.090968923762254, abs=E)
    assert f_upper1 == pytest.approx(-20.997687930433106, abs=E)
    assert f_lower2 == pytest.approx(21.01089689284236, abs=E)
    assert f_upper2 == pytest.approx(-17.077759961353, abs=E)
    assert ci_lower == pytest.approx(3.521755377702165e-5, abs=E)
    assert ci_upper == pytest.approx(2.02456461662334e-5, abs=E)
    assert estimate == pytest.approx(2.6279243045155653e-5, abs=E)


def test_all_tied_observations_are_rejected() -> None:
    with pytest.raises(ValueError, match="all observations are tied"):
        wilcoxon_diff(0.0, 0.0, [2.0, 2.0, 2.0], [2.0, 2.0])


def test_interval_rejects_empty_and_non_finite_input() -> None:
    with pytest.raises(ValueError):
        mann_whitney_interval([], [1.0, 2.0], 0.95)
    with pytest.raises(ValueError):
        mann_whitney_interval([1.0, math.nan], [1.0, 2.0], 0.95)
    with pytest.raises(ValueError):
        mann_whitney_interval([1.0, 3.0], [1.0, 2.0], 1.0)


# --- ClassifierSuite.scala (every Mann-Whitney and CLES case) ----------------------------------

# name -> (MannWhitneyClassifier arguments, classify() arguments, expected label, expected critical flag).
# Constructor defaults in Kayenta: effectSizeThresholds = criticalThresholds = (1.0, 1.0), meanRatio.
Case = tuple[dict[str, Any], dict[str, Any], KayentaLabel, bool | None]
_BASE = {"tolerance": 0.10, "confidence_level": 0.95}
_CLES = {"tolerance": 0.20, "confidence_level": 0.98, "effect_measure": "cles"}
_EITHER, _UP, _DOWN = KayentaDirection.either, KayentaDirection.increase, KayentaDirection.decrease
CLASSIFIER_SUITE: dict[str, Case] = {
    "Mann-Whitney Classifier Test: Pass Metric": (_BASE, {"direction": _EITHER}, KayentaLabel.Pass, None),
    "Mann-Whitney Classifier Test: High Metric": (_BASE, {"direction": _EITHER}, KayentaLabel.High, None),
    "Mann-Whitney Classifier Test: Low Metric": (_BASE, {"direction": _EITHER}, KayentaLabel.Low, None),
    "Mann-Whitney Classifier Directional Test: Increase": (
        _BASE,
        {"direction": _UP},
        KayentaLabel.Pass,
        None,
    ),
    "Mann-Whitney Classifier Directional Test: Decrease": (
        _BASE,
        {"direction": _DOWN},
        KayentaLabel.Pass,
        None,
    ),
    "Mann-Whitney Classifier Directional Test: High Metric": (
        _BASE,
        {"direction": _UP},
        KayentaLabel.High,
        False,
    ),
    "Mann-Whitney Classifier Directional Test: Low Metric": (
        _BASE,
        {"direction": _DOWN},
        KayentaLabel.Low,
        None,
    ),
    "Mann-Whitney Classifier Test: High Metric (Large Input)": (
        _BASE,
        {"direction": _EITHER},
        KayentaLabel.High,
        False,
    ),
    "Mann-Whitney Classifier Test - Mean Ratio Effect Size: High": (
        {**_BASE, "allowed_decrease": 0.8, "allowed_increase": 1.2},
        {"direction": _EITHER},
        KayentaLabel.High,
        None,
    ),
    "Mann-Whitney Classifier Test - Mean Ratio Effect Size: Low": (
        {**_BASE, "allowed_decrease": 0.8, "allowed_increase": 1.2},
        {"direction": _DOWN},
        KayentaLabel.Low,
        None,
    ),
    "Mann-Whitney Classifier Test - Mean Ratio Effect Size: Pass": (
        {**_BASE, "allowed_decrease": 0.5, "allowed_increase": 1.0},
        {"direction": _EITHER, "nan_strategy": KayentaNaNStrategy.remove},
        KayentaLabel.Pass,
        None,
    ),
    "Mann-Whitney Classifier Test - Mean Ratio Effect Size: Pass (Large Input)": (
        {**_BASE, "allowed_decrease": 1.0, "allowed_increase": 5.0},
        {"direction": _EITHER},
        KayentaLabel.Pass,
        None,
    ),
    "Mann-Whitney Classifier Test - CLES Effect Size: Pass": (
        {**_CLES, "allowed_decrease": 0.5, "allowed_increase": 0.8},
        {"direction": _EITHER},
        KayentaLabel.Pass,
        None,
    ),
    "Mann-Whitney Classifier Test - CLES Effect Size: High": (
        {**_CLES, "allowed_decrease": 0.2, "allowed_increase": 0.8},
        {"direction": _EITHER},
        KayentaLabel.High,
        None,
    ),
    "Mann-Whitney Classifier Test - CLES Effect Size: Low": (
        {**_CLES, "allowed_decrease": 0.2, "allowed_increase": 0.8},
        {"direction": _EITHER},
        KayentaLabel.Low,
        None,
    ),
    "Mann-Whitney Classifier Test - Critical Effect Size: Critical High": (
        {**_BASE, "critical_decrease": 1.0, "critical_increase": 1.2},
        {"direction": _EITHER, "critical": True},
        KayentaLabel.High,
        True,
    ),
    "Mann-Whitney Classifier Test - Critical Effect Size: Critical Low": (
        {**_BASE, "critical_decrease": 1.2, "critical_increase": 1.0},
        {"direction": _EITHER, "critical": True},
        KayentaLabel.Low,
        True,
    ),
    "Mann-Whitney Classifier Test - Critical Effect Size: High": (
        {
            **_BASE,
            "allowed_decrease": 1.0,
            "allowed_increase": 5.0,
            "critical_decrease": 1.0,
            "critical_increase": 13.0,
        },
        {"direction": _EITHER, "critical": True},
        KayentaLabel.High,
        False,
    ),
    "Mann-Whitney Classifier Test - Critical Effect Size: Pass": (
        {
            **_BASE,
            "allowed_decrease": 1.0,
            "allowed_increase": 13.0,
            "critical_decrease": 1.0,
            "critical_increase": 15.0,
        },
        {"direction": _EITHER, "critical": True},
        KayentaLabel.Pass,
        False,
    ),
    "Mann-Whitney Classifier Test - Critical Effect Size: Critical High (Default Thresholds)": (
        _BASE,
        {"direction": _EITHER, "critical": True},
        KayentaLabel.High,
        True,
    ),
    "Mann-Whitney Tied Observations": (_BASE, {"direction": _DOWN}, KayentaLabel.Pass, None),
    "Mann-Whitney Identical Populations": (_BASE, {"direction": _DOWN}, KayentaLabel.Pass, None),
    "Mann-Whitney Leading Zero Identical Population": (_BASE, {"direction": _DOWN}, KayentaLabel.Pass, None),
    "Mann-Whitney Missing Experiment Data": (_BASE, {"direction": _DOWN}, KayentaLabel.Nodata, None),
    "Mann-Whitney Missing Experiment Data: Critical Metric": (
        _BASE,
        {"direction": _DOWN, "critical": True},
        KayentaLabel.Nodata,
        True,
    ),
    "Mann-Whitney Missing Experiment Data with NaN Replacement": (
        _BASE,
        {"direction": _DOWN, "nan_strategy": KayentaNaNStrategy.replace},
        KayentaLabel.Pass,
        None,
    ),
    "Mann-Whitney Missing Data: Reason String": (
        _BASE,
        {"direction": _DOWN, "critical": True},
        KayentaLabel.Nodata,
        True,
    ),
    "Mann-Whitney Majority Tied Observations": (_BASE, {"direction": _EITHER}, KayentaLabel.Pass, None),
    "Mann-Whitney Tied Ranks": (_BASE, {"direction": _EITHER}, KayentaLabel.High, None),
    "Mann-Whitney Tied Ranks With Zeros": (_BASE, {"direction": _EITHER}, KayentaLabel.High, None),
    "Mann-Whitney Zero Mean: High Metric with Effect Size": (
        {**_BASE, "allowed_decrease": 0.8, "allowed_increase": 1.2},
        {"direction": _EITHER},
        KayentaLabel.High,
        None,
    ),
    "Mann-Whitney Zero Mean: Low Metric with Effect Size": (
        {**_BASE, "allowed_decrease": 0.8, "allowed_increase": 1.2},
        {"direction": _EITHER},
        KayentaLabel.Low,
        None,
    ),
    "Mann-Whitney Zero Mean: Critical Metric": (
        {**_BASE, "critical_decrease": 0.8, "critical_increase": 1.2},
        {"direction": _EITHER, "nan_strategy": KayentaNaNStrategy.replace, "critical": True},
        KayentaLabel.High,
        True,
    ),
    "Mann-Whitney Zero Mean: Pass Metric": (
        {**_BASE, "allowed_decrease": 0.8, "allowed_increase": 1.2},
        {"direction": _EITHER},
        KayentaLabel.Pass,
        None,
    ),
}
# Kayenta's MannWhitneyClassifier defaults, which classify() would otherwise derive from the measure.
_CLASS_DEFAULTS = {
    "allowed_decrease": 1.0,
    "allowed_increase": 1.0,
    "critical_decrease": 1.0,
    "critical_increase": 1.0,
}


def _classify_case(name: str, rng: np.random.Generator | None = None) -> KayentaResult:
    constructor, call, _, _ = CLASSIFIER_SUITE[name]
    data = VECTORS["ClassifierSuite"][name]
    return classify(data["controlData"], data["experimentData"], **{**_CLASS_DEFAULTS, **constructor, **call}, rng=rng)


@pytest.mark.parametrize("name", list(CLASSIFIER_SUITE))
def test_classifier_suite(name: str) -> None:
    _, _, label, critical = CLASSIFIER_SUITE[name]
    result = _classify_case(name)
    assert result.label is label
    if critical is not None:
        assert result.critical is critical
    assert result.reason


@pytest.mark.parametrize(
    "name",
    [
        "Mann-Whitney Zero Mean: High Metric with Effect Size",
        "Mann-Whitney Zero Mean: Low Metric with Effect Size",
    ],
)
def test_zero_mean_deviation_is_nan(name: str) -> None:
    # Kayenta asserts result.deviation.isNaN; with the mean-ratio measure that is our effect size.
    assert math.isnan(_classify_case(name).effect_size)


def test_zero_mean_pass_deviation_is_one() -> None:
    assert _classify_case("Mann-Whitney Zero Mean: Pass Metric").effect_size == 1.0


@pytest.mark.parametrize("name", ["Mann-Whitney Tied Ranks", "Mann-Whitney Tied Ranks With Zeros"])
@pytest.mark.parametrize("seed", range(20))
def test_noise_cases_hold_for_any_draw(name: str, seed: int) -> None:
    # Kayenta draws this noise unseeded, so its assertion must hold whatever the draw.
    assert _classify_case(name, np.random.default_rng(seed)).label is KayentaLabel.High


def test_default_noise_is_reproducible() -> None:
    first = _classify_case("Mann-Whitney Tied Ranks")
    assert first == _classify_case("Mann-Whitney Tied Ranks")
    assert "noise" in first.reason


# --- Documented surprises from Kayenta users ---------------------------------------------------

_ISSUE_6278: dict[str, Any] = {
    "tolerance": 0.25,
    "confidence_level": 0.98,
    "allowed_decrease": 1.0,
    "allowed_increase": 1.05,
    "critical_decrease": 1.0,
    "critical_increase": 1.1,
}


def test_issue_6278_canary_seventy_times_higher_passes() -> None:
    # spinnaker/spinnaker#6278: seven of ten canary points at 100 against a flat baseline of 1.
    result = classify([1.0] * 10, [100.0] * 7 + [1.0] * 3, **_ISSUE_6278)
    assert result.label is KayentaLabel.Pass
    assert result.lower == pytest.approx(6.825022991538781e-5, abs=1e-12)
    assert result.upper == pytest.approx(99.0, abs=1e-12)
    assert result.estimate == pytest.approx(98.99992904170193, abs=1e-9)
    assert result.bound == pytest.approx(24.749982260425483, abs=1e-9)
    assert result.effect_size == pytest.approx(70.3, rel=1e-12)
    assert "overlaps" in result.reason and "24.75" in result.reason


@pytest.mark.parametrize("value", [2.0, 3.0, 1000.0])
def test_issue_6278_the_high_value_does_not_matter(value: float) -> None:
    assert classify([1.0] * 10, [value] * 7 + [1.0] * 3, **_ISSUE_6278).label is KayentaLabel.Pass


def test_issue_6278_an_eighth_high_point_flips_to_high() -> None:
    result = classify([1.0] * 10, [100.0] * 8 + [1.0] * 2, **_ISSUE_6278)
    assert result.label is KayentaLabel.High
    assert result.reason.startswith("canary higher: 98% interval of the shift [")


# --- DetectorSuite, StatisticSuite and TransformSuite pieces the judge uses --------------------


@pytest.mark.parametrize("name", ["IQR Detection", "IQR Detect Two Sided", "IQR Empty Data"])
def test_iqr_detector(name: str) -> None:
    data = VECTORS["DetectorSuite"][name]
    assert iqr_outlier_mask(data["testData"], 1.5).tolist() == data["truth"]


def test_iqr_nist() -> None:
    values = VECTORS["DetectorSuite"]["IQR NIST Test"]["testData"]
    assert iqr_outlier_mask(values, 1.5).tolist() == [False] * (len(values) - 1) + [True]


def test_iqr_outlier_removal() -> None:
    data = VECTORS["TransformSuite"]["IQR Outlier Removal"]
    values = np.asarray(data["testData"])
    assert values[~iqr_outlier_mask(values, 1.5)].tolist() == data["truth"]


def _nan(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


@pytest.mark.parametrize("name", ["Remove Single NaN", "Remove Multiple NaN"])
def test_remove_nans(name: str) -> None:
    data = VECTORS["TransformSuite"][name]
    assert handle_nans(_nan(data["testData"]), KayentaNaNStrategy.remove).tolist() == data["truth"]


def test_replace_nans() -> None:
    data = VECTORS["TransformSuite"]["Replace NANs"]
    assert handle_nans(_nan(data["testData"]), KayentaNaNStrategy.replace).tolist() == data["truth"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Effect Size: Mean Ratio (No Effect)", 1.0),
        ("Effect Size: Mean Ratio (Summary Stats)", 1.0),
        ("Effect Size: Mean Ratio (High)", 10.0),
        ("Effect Size: Mean Ratio (Low)", 0.1),
    ],
)
def test_mean_ratio(name: str, expected: float) -> None:
    data = VECTORS["StatisticSuite"][name]
    assert mean_ratio(data["controlData"], data["experimentData"]) == expected


def test_mean_ratio_zero_mean() -> None:
    data = VECTORS["StatisticSuite"]["Effect Size: Mean Ratio (Zero Mean)"]
    assert math.isnan(mean_ratio(data["controlData"], data["experimentData"]))


@pytest.mark.parametrize(
    ("name", "expected", "tolerance"),
    [
        ("CLES Effect Size: Identical", 0.5, 0.0),
        ("CLES Effect Size: Different (No Overlap)", 0.0, 0.0),
        ("CLES Effect Size: High Metric", 0.771, 0.001),
        ("CLES Effect Size: Low Metric", 0.12, 0.0),
    ],
)
def test_cles(name: str, expected: float, tolerance: float) -> None:
    data = VECTORS["StatisticSuite"][name]
    assert cles(data["controlData"], data["experimentData"]) == pytest.approx(expected, abs=tolerance)


# --- Classifier behaviour around the vectors ---------------------------------------------------


def test_must_have_data_fails_unless_critical() -> None:
    assert classify([1.0, 2.0], [], must_have_data=True).label is KayentaLabel.NodataFail
    critical = classify([1.0, 2.0], [], must_have_data=True, critical=True)
    assert (critical.label, critical.critical) == (KayentaLabel.Nodata, True)


def test_nans_are_handled_before_the_empty_check() -> None:
    removed = classify([1.0, 2.0], [math.nan, math.nan])
    assert (removed.label, removed.experiment_count) == (KayentaLabel.Nodata, 0)
    replaced = classify([1.0, 2.0, 3.0], [math.nan, math.nan, math.nan], nan_strategy=KayentaNaNStrategy.replace)
    zeros = classify([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert replaced.experiment_count == 3 and replaced.label is zeros.label is KayentaLabel.Low
    assert (replaced.lower, replaced.upper, replaced.estimate) == (zeros.lower, zeros.upper, zeros.estimate)


def test_outlier_removal_uses_the_reduced_sensitivity_fences() -> None:
    baseline = [float(v) for v in range(1, 21)]
    canary = [*baseline[:-1], 1000.0]
    kept = classify(baseline, canary, remove_outliers=True, outlier_factor=3.0)
    assert kept.experiment_count == 19 and kept.control_count == 20
    assert classify(baseline, canary).experiment_count == 20


def test_cles_thresholds_default_to_no_effect() -> None:
    baseline = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    canary = [11.0, 12.0, 13.0, 14.0, 15.0, 16.0]
    result = classify(baseline, canary, tolerance=0.1, confidence_level=0.95, effect_measure="cles")
    assert result.label is KayentaLabel.High and result.effect_size == 1.0
    assert "CLES 1 ≥ 0.5" in result.reason


def test_rejects_unknown_effect_measure() -> None:
    with pytest.raises(ValueError, match="effect_measure"):
        classify([1.0, 2.0], [3.0, 4.0], effect_measure="cohen")  # type: ignore[arg-type]


# --- Cross-checks against scipy ----------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.01, 0.02, 0.05, 0.1, 0.5])
def test_z_quantile_is_the_normal_quantile(alpha: float) -> None:
    assert z_quantile(alpha) == pytest.approx(float(stats.norm.ppf(alpha / 2.0)), rel=1e-12)


@pytest.mark.parametrize("mu", [-0.5, 0.0, 1e-5, 0.25, 1.0])
def test_wilcoxon_diff_matches_scipy_asymptotic_p_value(mu: float) -> None:
    # |statistic| at zq = 0 is scipy's continuity- and tie-corrected z for the shifted samples.
    data = _mw("Mann-Whitney Confidence Interval & Estimate: Tie out with R Version")
    x, y = np.asarray(data["experiment"]), np.asarray(data["control"])
    statistic = wilcoxon_diff(mu, 0.0, x, y)
    expected = stats.mannwhitneyu(x - mu, y, method="asymptotic", use_continuity=True).pvalue
    assert min(1.0, 2.0 * float(stats.norm.sf(abs(statistic)))) == pytest.approx(float(expected), rel=1e-9)


@pytest.mark.parametrize(
    "name", ["CLES Effect Size: High Metric", "CLES Effect Size: Low Metric", "CLES Effect Size: Identical"]
)
def test_cles_is_the_normalised_u_statistic(name: str) -> None:
    data = VECTORS["StatisticSuite"][name]
    e, c = data["experimentData"], data["controlData"]
    u = stats.mannwhitneyu(e, c, method="asymptotic").statistic
    assert cles(c, e) == pytest.approx(float(u) / (len(e) * len(c)), rel=1e-12)


def test_estimate_is_the_median_pairwise_difference_for_the_kayenta_vector() -> None:
    data = _mw("Mann-Whitney Confidence Interval & Estimate")
    x, y = np.asarray(data["experimentData"]), np.asarray(data["controlData"])
    estimate = mann_whitney_interval(x, y, 0.95).estimate
    assert estimate == pytest.approx(float(np.median(np.subtract.outer(x, y))), abs=TOL_ROOT)


def _distinct_samples() -> st.SearchStrategy[tuple[list[float], list[float]]]:
    values = st.lists(st.integers(min_value=-10_000, max_value=10_000), min_size=4, max_size=24, unique=True).map(
        lambda v: [x / 16.0 for x in v]
    )
    return values.flatmap(
        lambda pooled: st.integers(min_value=2, max_value=len(pooled) - 2).map(lambda k: (pooled[:k], pooled[k:]))
    )


@settings(max_examples=200, deadline=None)
@given(_distinct_samples())
def test_estimate_brackets_the_hodges_lehmann_median(samples: tuple[list[float], list[float]]) -> None:
    # The continuity-corrected statistic is zero on a whole stretch of shifts: between the two
    # pairwise differences around the median (N = n*m even), or the neighbours of the median (N
    # odd). The root finder may return any point of it, so the estimate equals the median of the
    # pairwise differences only up to that stretch, not to the solver tolerance.
    x, y = samples
    diffs = np.sort(np.subtract.outer(np.asarray(x), np.asarray(y)).ravel())
    n = diffs.size
    low, high = (diffs[n // 2 - 1], diffs[n // 2]) if n % 2 == 0 else (diffs[(n - 3) // 2], diffs[(n + 1) // 2])
    result = mann_whitney_interval(x, y, 0.95)
    assert low - TOL_ROOT <= result.estimate <= high + TOL_ROOT
    assert low <= float(np.median(diffs)) <= high
    assert result.lower <= result.estimate + TOL_ROOT and result.estimate <= result.upper + TOL_ROOT


def test_result_types() -> None:
    result = mann_whitney_interval([3.0, 4.0, 5.0], [1.0, 2.0, 2.5], 0.9)
    assert isinstance(result, MannWhitneyResult)
    with pytest.raises(AttributeError):
        result.lower = 0.0  # type: ignore[misc]
