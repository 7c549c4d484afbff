"""PURE: per-look metric data + a metric's spec → a verdict with its numbers and a one-line reason.

Every metric ends Pass, Marginal (enough data, not yet confirmed), Fail (harm shown with the
gate's false-rollback budget) or NoData (too little traffic: "not yet", never a failure).

One module per metric kind (counts, latency, drift, custom), the parts they share, and the score apart.
"""

from __future__ import annotations

from typing import assert_never

from robustness_gate.api import MetricKind, MetricSpec, RobustnessGateSpec, Verdict
from robustness_gate.judge.counts import judge_counts
from robustness_gate.judge.custom import judge_custom
from robustness_gate.judge.drift import DRIFT_PASS_CONFIDENCE, judge_drift
from robustness_gate.judge.features import judge_features
from robustness_gate.judge.latency import DEFAULT_LATENCY_QUANTILE, judge_latency
from robustness_gate.judge.parts import PASS_BETA, PASS_FACTOR
from robustness_gate.judge.results import GateVerdict, JudgeSettings, MetricResult, budgeted_tests, settings_for
from robustness_gate.judge.score import score_gate
from robustness_gate.series import (
    CategorySeries,
    CountSeries,
    GroupedSeries,
    HistogramSeries,
    MetricData,
    ValueSeries,
    first_looks,
)


def judge_metric(metric: MetricSpec, data: MetricData, settings: JudgeSettings) -> MetricResult:
    """The metric's verdict now. A failure shown at an earlier look is reported with that look's numbers: the
    estimate, bounds, p-value and effect of the look that showed it, judged on the data up to that look."""
    result = _judge_metric_now(metric, data, settings)
    if result.verdict is Verdict.FAIL and result.look is not None and result.look < data.looks:
        earlier = _judge_metric_now(metric, first_looks(data, result.look), settings)
        if earlier.verdict is Verdict.FAIL:
            result = earlier
    return result


def _judge_metric_now(metric: MetricSpec, data: MetricData, settings: JudgeSettings) -> MetricResult:
    result: MetricResult
    if isinstance(data, GroupedSeries):
        if metric.features is None:
            raise TypeError(f"metric {metric.name}: series per feature for a metric without features")
        result = judge_features(metric, data, settings, _judge_metric_now)
        return MetricResult(
            **{**result.__dict__, "weight": metric.weight, "critical": metric.critical, "dry_run": metric.dry_run}
        )
    match metric.kind:
        case MetricKind.ERROR_RATE | MetricKind.RATIO:
            if not isinstance(data, CountSeries):
                raise TypeError(f"metric {metric.name}: expected counts, got {type(data).__name__}")
            result = judge_counts(metric, data, settings)
        case MetricKind.LATENCY:
            if not isinstance(data, HistogramSeries):
                raise TypeError(f"metric {metric.name}: expected a histogram, got {type(data).__name__}")
            result = judge_latency(metric, data, settings)
        case MetricKind.DRIFT:
            if not isinstance(data, HistogramSeries | CategorySeries):
                raise TypeError(f"metric {metric.name}: expected a histogram or categories, got {type(data).__name__}")
            result = judge_drift(metric, data, settings)
        case MetricKind.CUSTOM:
            if not isinstance(data, ValueSeries):
                raise TypeError(f"metric {metric.name}: expected values, got {type(data).__name__}")
            result = judge_custom(metric, data)
        case unknown:  # a new kind without a judge fails the type check here
            assert_never(unknown)
    return MetricResult(
        **{**result.__dict__, "weight": metric.weight, "critical": metric.critical, "dry_run": metric.dry_run}
    )


def judge_gate(spec: RobustnessGateSpec, data: dict[str, MetricData], *, robust: bool = True) -> GateVerdict:
    """The gate's verdict on all its metrics; `robust=False` judges counts with the binomial model alone."""
    settings = settings_for(spec, robust=robust)
    results = [judge_metric(metric, data[metric.name], settings) for metric in spec.metrics]
    return score_gate(spec, results)


__all__ = [
    "DEFAULT_LATENCY_QUANTILE",
    "DRIFT_PASS_CONFIDENCE",
    "PASS_BETA",
    "PASS_FACTOR",
    "GateVerdict",
    "JudgeSettings",
    "MetricResult",
    "budgeted_tests",
    "judge_gate",
    "judge_metric",
    "score_gate",
    "settings_for",
]
