"""What a gate judges: one metric, its source (error rate, ratio, latency, drift, custom), its objectives, and
the features a drift or ratio metric may be judged over."""

from __future__ import annotations

import functools
import re
from typing import ClassVar

from pydantic import Field, model_validator

from robustness_gate.api.base import (
    DNS_LABEL,
    LABEL_MATCHERS,
    LABEL_NAME,
    MAX_BUCKETS,
    MAX_FEATURES,
    MAX_QUERY,
    METRIC_NAME,
    Model,
)
from robustness_gate.api.enums import CompareTest, Direction, DriftEffect, MetricKind


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


class Reference(Model):
    """A fixed distribution, e.g. the training profile, that the canary and the baseline are each measured
    against and reported beside the comparison: both far from it while agreeing with each other is input drift,
    not a canary regression. It never fails the metric; the canary-vs-baseline test alone does."""

    le: list[str] | None = Field(
        None,
        min_length=2,
        max_length=MAX_BUCKETS,
        description='Histogram: the bucket bounds the shares are for, ending with "+Inf"; they must be the '
        "histogram's own.",
    )
    shares: list[float] | None = Field(
        None, min_length=2, max_length=MAX_BUCKETS, description="Histogram: the share (or count) of each bucket."
    )
    categories: dict[str, float] | None = Field(
        None, min_length=1, max_length=MAX_BUCKETS, description="Counter: the share (or count) of each category."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Reference:
        if self.categories is not None:
            if self.le is not None or self.shares is not None:
                raise ValueError("drift.reference: give categories, or le with shares, not both")
            values = list(self.categories.values())
        else:
            if self.le is None or self.shares is None:
                raise ValueError("drift.reference needs le and shares (a histogram) or categories (a counter)")
            if len(self.le) != len(self.shares):
                raise ValueError(f"drift.reference has {len(self.le)} le bounds but {len(self.shares)} shares")
            if self.le[-1] != "+Inf":
                raise ValueError('drift.reference.le must end with "+Inf", as a histogram\'s buckets do')
            try:
                bounds = [float(bound) for bound in self.le]
            except ValueError:
                raise ValueError(f"drift.reference.le holds a bound that is not a number: {self.le}") from None
            if any(b >= a for a, b in zip(bounds[1:], bounds, strict=False)):
                raise ValueError(f"drift.reference.le must increase: {self.le}")
            values = self.shares
        if any(v < 0 or v != v for v in values) or sum(values) <= 0:
            raise ValueError("drift.reference shares must be non-negative numbers with a positive sum")
        return self

    def bounds(self) -> tuple[float, ...]:
        """The finite bucket bounds (histogram)."""
        assert self.le is not None
        return tuple(float(bound) for bound in self.le[:-1])


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
    reference: Reference | None = Field(
        None, description="A training profile to measure canary and baseline against (reported, never failing)."
    )
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
        if self.reference is not None and (self.reference.categories is not None) != (self.counter is not None):
            raise ValueError(
                "drift.reference: a histogram's reference gives le and shares, a counter's gives categories"
            )
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
