"""What a user writes: the RobustnessGate's spec, with every field's bounds and default."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from robustness_gate.api.base import MAX_LOOKS, Duration, Model
from robustness_gate.api.enums import (
    OnError,
    OnFail,
    OnInconclusive,
    OnPass,
)
from robustness_gate.api.metric import MetricSpec
from robustness_gate.durations import parse_duration


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
