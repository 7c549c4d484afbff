"""What a user writes: the RobustnessGate's spec, with every field's bounds and default."""

from __future__ import annotations

import functools
import re
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from robustness_gate.api.enums import (
    CompareTest,
    Direction,
    DriftEffect,
    MetricKind,
    OnError,
    OnFail,
    OnInconclusive,
    OnPass,
)
from robustness_gate.durations import DURATION_PATTERN, parse_duration

GROUP = "robustness.dev"


VERSION = "v1alpha1"


API_VERSION = f"{GROUP}/{VERSION}"


KIND = "RobustnessGate"


PLURAL = "robustnessgates"


SINGULAR = "robustnessgate"


SHORT_NAMES = ["rgate"]


Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, json_schema_extra={"example": "30s"}),
]


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


# Label matchers a user may add to generated histogram queries, e.g. app="fraud",route!~"/health.*".
LABEL_MATCHERS = r'^\s*([a-zA-Z_][a-zA-Z0-9_]*\s*(=|!=|=~|!~)\s*"([^"\\]|\\.)*"\s*(,\s*|$))*$'


METRIC_NAME = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"


MAX_LOOKS = 10_000


# Longest query template: queries travel in URLs, and a gate should stay readable.
MAX_QUERY = 10_000
# Features of one metric: a status lists each judged one (drifted first), and must stay well within the size an
# object in etcd may have (1.5 MiB).
MAX_FEATURES = 500
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


class Model(BaseModel):
    """camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", use_enum_values=False)


class TargetRef(Model):
    """The workload whose canary is judged."""

    api_version: Literal["argoproj.io/v1alpha1", "apps/v1"] = Field(
        description="argoproj.io/v1alpha1 for a Rollout, apps/v1 for a Deployment."
    )
    kind: Literal["Rollout", "Deployment"] = Field(description="Rollout or Deployment.")
    name: str = Field(min_length=1, max_length=253, description="Name in the gate's namespace.")

    @model_validator(mode="after")
    def _kind_matches_api_version(self) -> TargetRef:
        expected = {"Rollout": "argoproj.io/v1alpha1", "Deployment": "apps/v1"}[self.kind]
        if self.api_version != expected:
            raise ValueError(f"a {self.kind} has apiVersion {expected}, not {self.api_version!r}")
        return self


class Selectors(Model):
    """How metric series of the canary and of the baseline are told apart.

    Label matchers, with variables the target supplies: {{canaryHash}}, {{stableHash}} (pod-template
    hashes), {{canaryName}}, {{stableName}} (workload names) and {{namespace}}.
    """

    canary: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description='Matchers for the canary\'s series. Default: rollouts_pod_template_hash="{{canaryHash}}" '
        'for a Rollout, pod_template_hash="{{canaryHash}}" for Deployments.',
    )
    baseline: str | None = Field(
        None,
        min_length=1,
        max_length=2000,
        description="Matchers for the baseline's series. Default: the same label with {{stableHash}}.",
    )


class StableRef(Model):
    """The stable Deployment of a canary/stable Deployment pair."""

    name: str = Field(min_length=1, max_length=253, description="Stable Deployment in the gate's namespace.")


class SecretKeyRef(Model):
    name: str = Field(min_length=1, description="Secret in the gate's namespace.")
    key: str = Field(min_length=1, description="Key inside the Secret.")


class BasicAuthSecretRef(Model):
    name: str = Field(min_length=1, description="Secret in the gate's namespace.")
    username_key: str = Field("username", description="Key holding the user name.")
    password_key: str = Field("password", description="Key holding the password.")


class PrometheusAuth(Model):
    """Credentials are only ever read from Secrets; they never appear in status, events or logs."""

    bearer_token_secret_ref: SecretKeyRef | None = Field(None, description="Bearer token from a Secret key.")
    basic_auth_secret_ref: BasicAuthSecretRef | None = Field(None, description="Basic auth from a Secret.")

    @model_validator(mode="after")
    def _one_method(self) -> PrometheusAuth:
        if self.bearer_token_secret_ref and self.basic_auth_secret_ref:
            raise ValueError("set bearerTokenSecretRef or basicAuthSecretRef, not both")
        return self


class PrometheusSpec(Model):
    address: str = Field(
        pattern=r"^https?://[^\s]+$",
        description="Base URL of the Prometheus HTTP API, e.g. http://prometheus.monitoring:9090.",
    )
    timeout: Duration = Field("10s", description="Timeout of one query.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers (not for secrets: use auth).")
    auth: PrometheusAuth | None = Field(None, description="Credentials from Secret references.")
    insecure_skip_verify: bool = Field(
        False,
        description="Skip TLS certificate verification. Otherwise the system's CA bundle is trusted, or the one "
        "REQUESTS_CA_BUNDLE names in the operator's environment.",
    )

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("timeout must be positive, e.g. 10s")
        return value


class MinTraffic(Model):
    canary: int = Field(200, ge=0, description="Requests (or observations) the canary must serve first.")
    baseline: int = Field(200, ge=0, description="Requests (or observations) the baseline must serve first.")


class AnalysisSpec(Model):
    interval: Duration = Field("30s", description="Time between looks; also the PromQL {{window}}.")
    min_duration: Duration = Field("2m", description="Never promote earlier than this.")
    max_duration: Duration = Field("30m", description="After this, onInconclusive applies.")
    false_positive_rate: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="Chance of rolling back a healthy canary, held over all looks and metrics.",
    )
    min_traffic: MinTraffic = Field(default_factory=MinTraffic, description="Minimum traffic per side.")
    error_limit: int = Field(
        5, ge=1, le=1000, description="Consecutive looks without metrics (Prometheus faults) before onError applies."
    )

    @model_validator(mode="after")
    def _durations_consistent(self) -> AnalysisSpec:
        interval = parse_duration(self.interval)
        min_duration = parse_duration(self.min_duration)
        max_duration = parse_duration(self.max_duration)
        if interval < 1:
            raise ValueError(f"interval {self.interval} is shorter than 1s; use at least 1s")
        if interval > 3600:
            raise ValueError(f"interval {self.interval} is longer than 1h; use at most 1h")
        if max_duration > 7 * 24 * 3600:
            raise ValueError(f"maxDuration {self.max_duration} is longer than 7 days (168h)")
        if min_duration > max_duration:
            raise ValueError(f"minDuration {self.min_duration} is longer than maxDuration {self.max_duration}")
        if max_duration < interval:
            raise ValueError(f"maxDuration {self.max_duration} is shorter than interval {self.interval}")
        if max_duration / interval > MAX_LOOKS:
            raise ValueError(
                f"maxDuration / interval is {max_duration / interval:.0f} looks; at most {MAX_LOOKS} are "
                "allowed (a Prometheus range query returns at most 11000 points): lengthen the interval"
            )
        return self

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    @property
    def min_duration_seconds(self) -> float:
        return parse_duration(self.min_duration)

    @property
    def max_duration_seconds(self) -> float:
        return parse_duration(self.max_duration)


class ErrorRateSource(Model):
    """Bad events over all events, e.g. 5xx responses over requests."""

    errors: str = Field(
        min_length=1, max_length=MAX_QUERY, description="PromQL template counting bad events in {{window}}."
    )
    total: str = Field(
        min_length=1, max_length=MAX_QUERY, description="PromQL template counting all events in {{window}}."
    )


class RatioSource(Model):
    """Any count ratio, e.g. predictions with a null feature over all predictions."""

    numerator: str = Field(
        min_length=1, max_length=MAX_QUERY, description="PromQL template counting events in {{window}}."
    )
    denominator: str = Field(min_length=1, max_length=MAX_QUERY, description="PromQL template counting the population.")


class HistogramSource(Model):
    """A Prometheus classic histogram; queries are generated from its name."""

    histogram: str = Field(pattern=METRIC_NAME, description="Base name, without _bucket.")
    labels: str = Field(
        "",
        pattern=LABEL_MATCHERS,
        max_length=2000,
        description='Extra label matchers, e.g. app="fraud",route="/score".',
    )


class DriftSource(Model):
    """A distribution compared between canary and baseline: a histogram's buckets (prediction scores, a numeric
    feature) or a counter's categories (predicted classes, a categorical feature)."""

    x_validations: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "has(self.histogram) != has(self.counter)",
            "message": "set one of drift.histogram (buckets) or drift.counter (categories)",
        },
        {
            "rule": "has(self.counter) == has(self.category)",
            "message": "drift.counter needs drift.category, the label naming the category (and only it)",
        },
    ]

    histogram: str | None = Field(
        None, pattern=METRIC_NAME, description="Base name of a classic histogram, without _bucket."
    )
    counter: str | None = Field(
        None,
        pattern=METRIC_NAME,
        description="A counter with one series per category, e.g. predictions_total{class=...}: the categories' "
        "shares are compared.",
    )
    category: str | None = Field(
        None, pattern=LABEL_NAME, max_length=100, description="With counter: the label naming the category."
    )
    labels: str = Field(
        "",
        pattern=LABEL_MATCHERS,
        max_length=2000,
        description='Extra label matchers, e.g. app="fraud",route="/score".',
    )
    effect: DriftEffect = Field(DriftEffect.PSI, description="Effect size that must exceed max to fail.")
    max: float = Field(
        0.2,
        gt=0,
        description="Effect size above which a significant drift fails (PSI: 0.1-0.25 is moderate, over 0.25 major).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> DriftSource:
        if (self.histogram is None) == (self.counter is None):
            raise ValueError("set one of drift.histogram (a histogram's buckets) or drift.counter (categories)")
        if self.counter is not None and self.category is None:
            raise ValueError(f"drift.counter {self.counter} needs drift.category: the label naming the category")
        if self.histogram is not None and self.category is not None:
            raise ValueError("drift.category goes with drift.counter; a histogram's buckets are its le label")
        if self.counter is not None and self.effect in (DriftEffect.WASSERSTEIN, DriftEffect.KOLMOGOROV_SMIRNOV):
            raise ValueError(
                f"drift.effect {self.effect.value} needs ordered buckets, and categories have no order: "
                "use PSI or JensenShannon with drift.counter"
            )
        return self

    @property
    def categorical(self) -> bool:
        return self.counter is not None


class Features(Model):
    """One metric over many features: the series carry a label naming the feature (e.g.
    `feature_value_bucket{feature="age"}` or `model_feature_null_total{feature="age"}`), fetched with one query
    per look and judged feature by feature, with the metric's false-rollback budget split over the features
    (Holm's step-down)."""

    label: str = Field(pattern=LABEL_NAME, max_length=100, description="The label naming the feature.")
    only: list[str] | None = Field(
        None,
        min_length=1,
        max_length=MAX_FEATURES,
        description="Judge only these features (default: every feature the query returns).",
    )
    critical: list[str] = Field(
        default_factory=list,
        max_length=MAX_FEATURES,
        description="Drift: a drift of any of these fails the metric, whatever the share of drifted features.",
    )
    max_drifted_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Drift: the metric fails when at least this share of the judged features drifted "
        "(Evidently's dataset drift share, 0.5 by default).",
    )
    slo: dict[str, float] = Field(
        default_factory=dict,
        max_length=MAX_FEATURES,
        description="Ratio: slo.max per feature, overriding the metric's slo.max for the features named.",
    )

    @model_validator(mode="after")
    def _names(self) -> Features:
        if self.only is not None:
            for field, names in (("critical", self.critical), ("slo", list(self.slo))):
                missing = sorted(set(names) - set(self.only))
                if missing:
                    raise ValueError(
                        f"features.{field} names {', '.join(missing)}, which features.only leaves out; "
                        "add them to features.only or remove them"
                    )
        for name, bound in self.slo.items():
            if not 0 < bound < 1:
                raise ValueError(f"features.slo.{name} is {bound}: a rate, between 0 and 1")
        return self


class CustomSource(Model):
    """Any PromQL template returning one value per side; checked with plain thresholds."""

    query: str = Field(min_length=1, max_length=MAX_QUERY, description="PromQL template returning one value per side.")
    consecutive: int = Field(
        3, ge=1, le=100, description="Looks in a row outside the SLO bounds before the metric fails."
    )


class SLO(Model):
    """Absolute objective for the canary, checked with a confidence bound, not a point estimate."""

    max: float | None = Field(None, description="Upper bound: a rate, a latency in seconds, or a value.")
    min: float | None = Field(None, description="Lower bound (custom metrics).")
    quantile: float | None = Field(
        None, gt=0, lt=1, description="Latency only: the quantile that must stay under max, e.g. 0.99."
    )

    @model_validator(mode="after")
    def _some_bound(self) -> SLO:
        if self.max is None and self.min is None:
            raise ValueError("slo needs max (or min for custom metrics)")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"slo.min {self.min} is above slo.max {self.max}")
        return self


class Compare(Model):
    """Canary against the live baseline."""

    direction: Direction = Field(Direction.INCREASE, description="Which change is harmful.")
    tolerance: float = Field(
        0.1,
        ge=0,
        le=100,
        description="Relative change tolerated: Increase fails only if canary > baseline × (1 + tolerance).",
    )
    test: CompareTest = Field(
        CompareTest.SEQUENTIAL,
        description="Sequential (anytime-valid, default) or MannWhitney (Kayenta-compatible).",
    )

    @model_validator(mode="after")
    def _decrease_tolerance(self) -> Compare:
        if self.direction is Direction.DECREASE and self.tolerance >= 1:
            raise ValueError("with direction Decrease the tolerance must be below 1 (a share of the baseline)")
        return self


METRIC_KINDS = tuple(MetricKind)


class MetricSpec(Model):
    x_validations: ClassVar[list[dict[str, str]]] = [
        {
            "rule": "[has(self.errorRate), has(self.ratio), has(self.latency), has(self.drift), "
            "has(self.custom)].filter(x, x).size() == 1",
            "message": "set exactly one of errorRate, ratio, latency, drift, custom",
        },
        {
            "rule": "has(self.drift) || has(self.slo) || has(self.compare)",
            "message": "a metric needs slo, compare, or both",
        },
    ]

    name: str = Field(pattern=DNS_LABEL, max_length=63, description="Unique name within the gate.")
    error_rate: ErrorRateSource | None = None
    ratio: RatioSource | None = None
    latency: HistogramSource | None = None
    drift: DriftSource | None = None
    custom: CustomSource | None = None
    features: Features | None = Field(
        None, description="Drift and ratio metrics: judge each feature named by a label, from one query."
    )
    slo: SLO | None = Field(None, description="Absolute objective for the canary.")
    compare: Compare | None = Field(None, description="Comparison with the live baseline.")
    weight: float = Field(1.0, gt=0, le=1000, description="Weight in the gate score.")
    critical: bool = Field(False, description="A failure of this metric fails the gate whatever the score.")
    dry_run: bool = Field(False, description="Reported, but never affects the verdict.")

    @property
    def kind(self) -> MetricKind:
        for kind in METRIC_KINDS:
            if getattr(self, _snake(kind)) is not None:
                return kind
        raise AssertionError("validated metric without a kind")

    @model_validator(mode="after")
    def _consistent(self) -> MetricSpec:
        kinds = [kind for kind in METRIC_KINDS if getattr(self, _snake(kind)) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"set exactly one of {', '.join(METRIC_KINDS)} (found: {found})")
        kind = kinds[0]
        if kind != "drift" and self.slo is None and self.compare is None:
            raise ValueError("a metric needs slo, compare, or both; e.g. slo: {max: 0.01}")
        if kind == "drift" and (self.slo is not None or self.compare is not None):
            raise ValueError(
                "drift metrics take no slo or compare; they always compare canary with baseline, "
                "set drift.max (the effect-size threshold) instead"
            )
        if self.slo is not None:
            if kind == "latency":
                if self.slo.quantile is None or self.slo.max is None:
                    raise ValueError("a latency slo needs quantile and max, e.g. {quantile: 0.99, max: 0.1}")
                if self.slo.min is not None:
                    raise ValueError("a latency slo takes no min")
                if self.slo.max <= 0:
                    raise ValueError("latency slo.max is in seconds and must be positive")
            elif self.slo.quantile is not None:
                raise ValueError("slo.quantile is only for latency metrics")
            if kind in ("errorRate", "ratio"):
                if self.slo.min is not None:
                    raise ValueError("rate slos take max only (the highest tolerated rate)")
                if self.slo.max is not None and not 0 < self.slo.max < 1:
                    raise ValueError(f"slo.max {self.slo.max} is a rate and must be between 0 and 1")
        if self.compare is not None and kind == "custom" and self.compare.test is not CompareTest.MANN_WHITNEY:
            raise ValueError("custom metrics compare with test: MannWhitney (no counts to test sequentially)")
        if self.features is not None:
            self._check_features(kind, self.features)
        return self

    def _check_features(self, kind: MetricKind, features: Features) -> None:
        if kind not in ("drift", "ratio"):
            raise ValueError(f"features is for drift and ratio metrics, not {kind}")
        if kind == "ratio":
            assert self.ratio is not None
            for field, template in (("numerator", self.ratio.numerator), ("denominator", self.ratio.denominator)):
                if "{{by}}" not in template.replace(" ", ""):
                    raise ValueError(
                        f"ratio.{field} must group by {{{{by}}}} (e.g. sum by ({{{{by}}}}) (...)) when features is "
                        f"set: the feature label {features.label!r} is added to it"
                    )
            # maxDriftedShare is not checked here: the CRD's default puts it into every stored features object.
            if features.critical:
                raise ValueError("features.critical is for drift metrics; every feature of a ratio must hold its slo")
            if features.slo and (self.slo is None or self.slo.max is None):
                raise ValueError("features.slo needs slo.max (the bound of the features it does not name)")
        elif features.slo:
            raise ValueError("features.slo is for ratio metrics (drift has drift.max)")


@functools.cache
def _snake(camel: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel)


class Scoring(Model):
    pass_: int = Field(95, alias="pass", ge=0, le=100, description="Score needed to pass.")
    marginal: int = Field(75, ge=0, le=100, description="Below this score the gate fails.")

    @model_validator(mode="after")
    def _ordered(self) -> Scoring:
        if self.marginal > self.pass_:
            raise ValueError(f"scoring.marginal {self.marginal} is above scoring.pass {self.pass_}")
        return self


class RobustnessGateSpec(Model):
    target_ref: TargetRef = Field(description="The Rollout or (canary) Deployment under analysis.")
    stable_ref: StableRef | None = Field(None, description="Stable Deployment of a Deployment pair.")
    selectors: Selectors = Field(
        default_factory=Selectors, description="How canary and baseline series are told apart."
    )
    prometheus: PrometheusSpec
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    metrics: list[MetricSpec] = Field(min_length=1, max_length=50, description="What is judged.")
    scoring: Scoring = Field(default_factory=Scoring)
    on_pass: OnPass = Field(
        OnPass.PROMOTE,
        description="Promote (as kubectl argo rollouts promote), PromoteFull (as promote --full) or None.",
    )
    on_fail: OnFail = Field(OnFail.ROLLBACK, description="Rollback, Pause or None.")
    on_inconclusive: OnInconclusive = Field(
        OnInconclusive.PAUSE,
        description="At maxDuration without a verdict (e.g. traffic below analysis.minTraffic): Pause (hold the "
        "canary where it is for a person to promote or abort, as Argo Rollouts does with an Inconclusive "
        "analysis), Rollback, Promote or None (only report).",
    )
    on_error: OnError = Field(
        OnError.PAUSE,
        description="After analysis.errorLimit looks without metrics: Pause (hold the canary where it is and "
        "resume the analysis when metrics return), Rollback, or None (only report).",
    )
    dry_run: bool = Field(False, description="Record decisions, change nothing.")

    @model_validator(mode="after")
    def _consistent(self) -> RobustnessGateSpec:
        seen: dict[str, int] = {}
        for index, metric in enumerate(self.metrics):
            if metric.name in seen:
                raise ValueError(
                    f"metrics[{index}].name {metric.name!r} repeats metrics[{seen[metric.name]}]; "
                    "metric names must be unique"
                )
            seen[metric.name] = index
        if self.stable_ref is not None and self.target_ref.kind != "Deployment":
            raise ValueError("stableRef is only for a Deployment pair (targetRef.kind: Deployment)")
        if all(metric.dry_run for metric in self.metrics):
            raise ValueError("every metric is dryRun, so nothing can be judged; leave one metric live")
        return self
