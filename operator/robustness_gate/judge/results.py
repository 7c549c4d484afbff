"""What the judge returns: a metric's result, the gate's verdict, and the settings every test shares."""

from __future__ import annotations

from dataclasses import dataclass, field

from robustness_gate.api import (
    MAX_FEATURES,
    CompareTest,
    FeatureStatus,
    MetricSpec,
    MetricStatus,
    RobustnessGateSpec,
    Verdict,
)
from robustness_gate.judge.text import finite


@dataclass(frozen=True)
class MetricResult:
    name: str
    kind: str
    verdict: Verdict
    test: str
    message: str
    canary: float | None = None
    baseline: float | None = None
    lower: float | None = None
    upper: float | None = None
    p_value: float | None = None
    effect: float | None = None
    slo_met: bool | None = None
    canary_traffic: float | None = None
    baseline_traffic: float | None = None
    weight: float = 1.0
    critical: bool = False
    dry_run: bool = False
    look: int | None = None  # the look whose data gave every number here: the first that showed a failure
    features: tuple[MetricResult, ...] = ()
    reference_canary: float | None = None  # drift with a reference: each side's effect from it
    reference_baseline: float | None = None  # a metric over many features: each one's result, failures first

    def to_status(self) -> MetricStatus:
        return MetricStatus(
            name=self.name,
            verdict=self.verdict,
            canary=finite(self.canary),
            baseline=finite(self.baseline),
            lower=finite(self.lower),
            upper=finite(self.upper),
            p_value=finite(self.p_value),
            effect=finite(self.effect),
            slo_met=self.slo_met,
            dry_run=self.dry_run,
            look=self.look,
            message=self.message,
            features=[feature.to_feature_status() for feature in self.features[:MAX_FEATURES]] or None,
            reference_canary=finite(self.reference_canary),
            reference_baseline=finite(self.reference_baseline),
        )

    def to_feature_status(self) -> FeatureStatus:
        return FeatureStatus(
            name=self.name,
            verdict=self.verdict,
            canary=finite(self.canary),
            baseline=finite(self.baseline),
            p_value=finite(self.p_value),
            effect=finite(self.effect),
            message=self.message,
        )


@dataclass(frozen=True)
class GateVerdict:
    verdict: Verdict
    score: float
    reason: str
    metrics: list[MetricResult] = field(default_factory=list)


@dataclass(frozen=True)
class JudgeSettings:
    alpha: float  # false-rollback budget of ONE test (the gate's budget split across its tests)
    min_canary: float
    min_baseline: float
    # Count tests robust to overdispersed and bursty counts (stats.robust); False: the binomial model alone.
    robust: bool = True


def budgeted_tests(metric: MetricSpec) -> int:
    """How many tests of this metric can roll back, each getting a share of the gate's budget."""
    if metric.dry_run:
        return 0
    if metric.kind == "drift":
        return 1
    if metric.kind == "custom":
        return 0  # plain thresholds and Kayenta's fixed 98% interval do not spend our budget
    sequential = metric.compare is not None and metric.compare.test is CompareTest.SEQUENTIAL
    return int(metric.slo is not None) + int(sequential)


def settings_for(spec: RobustnessGateSpec, *, robust: bool = True) -> JudgeSettings:
    budget = max(1, sum(budgeted_tests(metric) for metric in spec.metrics))
    return JudgeSettings(
        alpha=spec.analysis.false_positive_rate / budget,
        min_canary=spec.analysis.min_traffic.canary,
        min_baseline=spec.analysis.min_traffic.baseline,
        robust=robust,
    )
