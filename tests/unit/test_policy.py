"""The decision: roll back on shown harm at any look, promote only after minDuration on a pass."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from robustness_gate.api import Action, AnalysisSpec, RobustnessGateSpec, Verdict
from robustness_gate.judge import GateVerdict, MetricResult, judge_gate
from robustness_gate.policy import decide
from robustness_gate.series import CountSeries, MetricData

ANALYSIS = AnalysisSpec.model_validate({"interval": "30s", "minDuration": "5m", "maxDuration": "30m"})


@pytest.mark.parametrize(
    ("verdict", "elapsed", "action", "fragment"),
    [
        (Verdict.FAIL, 30, Action.ROLLBACK, "bad"),
        (Verdict.FAIL, 3600, Action.ROLLBACK, "bad"),
        (Verdict.PASS, 60, Action.CONTINUE, "1m of minDuration 5m elapsed; passing so far"),
        (Verdict.PASS, 300, Action.PROMOTE, "after 5m"),
        (Verdict.MARGINAL, 600, Action.CONTINUE, "10m elapsed, not decided yet"),
        (Verdict.NO_DATA, 1800, Action.INCONCLUSIVE, "maxDuration 30m reached without a verdict"),
        (Verdict.MARGINAL, 1799, Action.CONTINUE, "not decided yet"),
        (Verdict.NO_DATA, 100, Action.CONTINUE, "1m40s of minDuration"),
    ],
)
def test_decision_table(verdict: Verdict, elapsed: float, action: Action, fragment: str) -> None:
    decision = decide(GateVerdict(verdict, 50.0, "bad" if verdict is Verdict.FAIL else "why"), elapsed, ANALYSIS)
    assert decision.action is action
    assert fragment in decision.reason


def test_promotion_never_happens_before_min_duration() -> None:
    for elapsed in range(0, 300, 30):
        assert decide(GateVerdict(Verdict.PASS, 100.0, "ok"), elapsed, ANALYSIS).action is Action.CONTINUE


def _verdict_with(*verdicts: Verdict, gate: Verdict = Verdict.MARGINAL) -> GateVerdict:
    metrics = [MetricResult(f"m{i}", "errorRate", v, "t", "msg") for i, v in enumerate(verdicts)]
    return GateVerdict(gate, 50.0, "why", metrics)


def test_max_duration_promotes_when_every_metric_was_measured_and_none_showed_harm() -> None:
    decision = decide(_verdict_with(Verdict.PASS, Verdict.MARGINAL), 1800, ANALYSIS)
    assert decision.action is Action.PROMOTE and "maxDuration 30m reached" in decision.reason
    assert "no harm shown" in decision.reason
    # Before maxDuration the same verdict keeps looking: passing early needs evidence of safety.
    assert decide(_verdict_with(Verdict.PASS, Verdict.MARGINAL), 1790, ANALYSIS).action is Action.CONTINUE


@pytest.mark.parametrize(
    "verdicts",
    [(Verdict.MARGINAL, Verdict.NO_DATA), (Verdict.MARGINAL, Verdict.FAIL), ()],
    ids=["a metric without data", "a non-critical failure", "no metrics"],
)
def test_max_duration_is_inconclusive_without_data_or_with_a_failure(verdicts: tuple[Verdict, ...]) -> None:
    decision = decide(_verdict_with(*verdicts), 1800, ANALYSIS)
    assert decision.action is Action.INCONCLUSIVE and "without a verdict" in decision.reason


# ---------------------------------------------------------------- maxDuration with too little traffic

LOW = AnalysisSpec.model_validate(
    {"interval": "30s", "minDuration": "5m", "maxDuration": "30m", "minTraffic": {"canary": 200, "baseline": 200}}
)


def _metric(
    name: str, verdict: Verdict, canary: float | None, baseline: float | None, kind: str = "errorRate", **extra: Any
) -> MetricResult:
    return MetricResult(name, kind, verdict, "t", "msg", canary_traffic=canary, baseline_traffic=baseline, **extra)


def _gate(*metrics: MetricResult) -> GateVerdict:
    gate = Verdict.NO_DATA if all(m.verdict is Verdict.NO_DATA for m in metrics) else Verdict.MARGINAL
    return GateVerdict(
        gate, 0.0, "no metric has enough data yet: not enough traffic yet: canary 180 of 200", list(metrics)
    )


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        (
            [_metric("error-rate", Verdict.NO_DATA, 180, 2000)],
            "not enough traffic to decide by maxDuration 30m: canary served 180 of the 200 requests minTraffic "
            "asks for (error-rate)",
        ),
        (
            [
                _metric("error-rate", Verdict.NO_DATA, 180, 150),
                _metric("latency-p99", Verdict.NO_DATA, 180, 150, "latency"),
            ],
            "not enough traffic to decide by maxDuration 30m: canary served 180 of the 200 requests minTraffic "
            "asks for, baseline 150 of 200 (error-rate, latency-p99)",
        ),
        (
            [_metric("drift", Verdict.NO_DATA, 900, 150, "drift")],
            "not enough traffic to decide by maxDuration 30m: baseline served 150 of the 200 observations "
            "minTraffic asks for (drift)",
        ),
        (
            [
                _metric("error-rate", Verdict.MARGINAL, 5000, 5000),
                _metric("nulls", Verdict.NO_DATA, 40, 300, "ratio"),
                _metric("drift", Verdict.NO_DATA, 12, 300, "drift"),
                _metric("shadow", Verdict.NO_DATA, 0, 0, dry_run=True),
            ],
            "not enough traffic to decide by maxDuration 30m: canary served 40 of the 200 observations "
            "minTraffic asks for (nulls; 1 more metric short of traffic)",
        ),
        (
            # A fraction short of the minimum reads as less than the minimum, not as the minimum itself.
            [_metric("error-rate", Verdict.NO_DATA, 199.6, 2000)],
            "not enough traffic to decide by maxDuration 30m: canary served 199 of the 200 requests minTraffic "
            "asks for (error-rate)",
        ),
    ],
    ids=["canary-short", "both-sides-two-metrics", "baseline-short", "one-of-several", "fraction"],
)
def test_max_duration_with_too_little_traffic_says_so_with_the_numbers(
    metrics: list[MetricResult], reason: str
) -> None:
    for elapsed in (1800, 3600):
        decision = decide(_gate(*metrics), elapsed, LOW)
        assert decision.action is Action.INCONCLUSIVE
        assert decision.reason == reason
        assert "\n" not in decision.reason
    # Before maxDuration too little traffic is "not yet", never a decision.
    assert decide(_gate(*metrics), 1790, LOW).action is Action.CONTINUE


@pytest.mark.parametrize(
    "metrics",
    [
        # A failure is what the reason must show, whatever the traffic of the others.
        [_metric("error-rate", Verdict.FAIL, 5000, 5000), _metric("drift", Verdict.NO_DATA, 12, 300, "drift")],
        # A custom metric counts values, not requests: its NoData is not a traffic shortfall.
        [_metric("queue", Verdict.NO_DATA, 0, 0, "custom")],
    ],
    ids=["a-failure", "custom-without-values"],
)
def test_max_duration_without_a_traffic_shortfall_keeps_the_gate_reason(metrics: list[MetricResult]) -> None:
    decision = decide(_gate(*metrics), 1800, LOW)
    assert decision.action is Action.INCONCLUSIVE
    assert decision.reason.startswith("maxDuration 30m reached without a verdict: ")
    assert "not enough traffic to decide" not in decision.reason


def test_the_traffic_reason_agrees_with_the_judge_on_real_counts() -> None:
    spec = RobustnessGateSpec.model_validate(
        {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
            "prometheus": {"address": "http://prometheus:9090"},
            "analysis": {"interval": "30s", "minDuration": "5m", "maxDuration": "30m"},
            "metrics": [
                {"name": "error-rate", "errorRate": {"errors": "e", "total": "t"}, "compare": {}, "slo": {"max": 0.01}}
            ],
        }
    )
    looks = 60
    canary, baseline = np.full(looks, 3.0), np.full(looks, 2.5)  # 180 and 150 requests in 30 minutes
    data: dict[str, MetricData] = {"error-rate": CountSeries(np.zeros(looks), canary, np.zeros(looks), baseline)}
    verdict = judge_gate(spec, data)
    (metric,) = verdict.metrics
    assert verdict.verdict is Verdict.NO_DATA and (metric.canary_traffic, metric.baseline_traffic) == (180, 150)
    decision = decide(verdict, 1800, spec.analysis)
    assert decision.action is Action.INCONCLUSIVE
    assert decision.reason == (
        "not enough traffic to decide by maxDuration 30m: canary served 180 of the 200 requests minTraffic "
        "asks for, baseline 150 of 200 (error-rate)"
    )
