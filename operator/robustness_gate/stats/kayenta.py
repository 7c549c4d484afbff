"""Kayenta's NetflixACAJudge-v1.0 metric classifier, for users migrating from Kayenta.

``classify`` reproduces what the judge does to one metric: NaN removal or zero-filling, optional
IQR outlier removal, then the Mann-Whitney classifier with its checks in Kayenta's order (no data,
identical samples, a single shared value, Gaussian noise for two constant samples, High/Low against
a tolerance band of ±tolerance·|estimate| gated by an effect size, and the critical rules).
Labels carry Kayenta's own strings so reports line up with existing Kayenta dashboards.

Kayenta would turn an exception inside the classifier into an "Error" label; here the ValueError
(for example non-finite input reaching the interval) is raised to the caller instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Literal

import numpy as np
import numpy.typing as npt

from robustness_gate.stats.mannwhitney import average_ranks, mann_whitney_interval

FloatArray = npt.NDArray[np.float64]
ArrayLike = Sequence[float] | FloatArray
BoolArray = npt.NDArray[np.bool_]
EffectMeasure = Literal["meanRatio", "cles"]

# The judge's own settings (NetflixACAJudge builds its classifier with these).
KAYENTA_TOLERANCE = 0.25
KAYENTA_CONFIDENCE = 0.98
# Noise added to two constant samples, relative to their value, so ranks are not all tied.
NOISE_SCALE = 1e-5
# Kayenta draws that noise from an unseeded generator; a fixed seed keeps our verdicts repeatable.
NOISE_SEED = 0


class KayentaLabel(Enum):
    """Metric classification, valued with the strings Kayenta reports."""

    Pass = "Pass"
    High = "High"
    Low = "Low"
    Nodata = "Nodata"
    NodataFail = "NodataFailMetric"


class KayentaDirection(Enum):
    """Which change counts as a failure (Kayenta's ``canary.direction``)."""

    increase = "increase"
    decrease = "decrease"
    either = "either"


class KayentaNaNStrategy(Enum):
    """How NaNs are handled before classification (Kayenta's ``canary.nanStrategy``)."""

    remove = "remove"
    replace = "replace"


@dataclass(frozen=True)
class KayentaResult:
    """One metric's verdict with the numbers behind it.

    ``lower``/``upper``/``estimate``/``bound`` are nan when the classifier stopped before the
    interval. ``effect_size`` is the configured measure (mean ratio experiment/control, or CLES);
    nan when undefined (no data, or a zero mean for the ratio).
    """

    label: KayentaLabel
    critical: bool
    lower: float
    upper: float
    estimate: float
    bound: float
    effect_size: float
    control_count: int
    experiment_count: int
    reason: str


def _commons_mean(values: FloatArray) -> float:
    # Sequential sum plus the residual correction, as commons-math's Mean does, so the
    # ratio compares to a threshold exactly as in Kayenta.
    n = float(values.size)
    total = 0.0
    for v in values.tolist():
        total += v
    xbar = total / n
    correction = 0.0
    for v in values.tolist():
        correction += v - xbar
    return xbar + correction / n


def mean_ratio(control: ArrayLike, experiment: ArrayLike) -> float:
    """Mean of experiment over mean of control; nan if either mean is zero."""
    control_mean = _commons_mean(np.asarray(control, dtype=np.float64))
    experiment_mean = _commons_mean(np.asarray(experiment, dtype=np.float64))
    if control_mean == 0.0 or experiment_mean == 0.0:
        return math.nan
    return experiment_mean / control_mean


def cles(control: ArrayLike, experiment: ArrayLike) -> float:
    """Common-language effect size: share of (experiment, control) pairs with experiment higher, ties half."""
    e = np.asarray(experiment, dtype=np.float64)
    c = np.asarray(control, dtype=np.float64)
    m, n = float(e.size), float(c.size)
    ranks = average_ranks(np.concatenate((e, c)))
    rank_sum = float(np.sum(ranks[: e.size]))
    return (2.0 * rank_sum - m * (m + 1.0)) / (2.0 * n * m)


def iqr_outlier_mask(values: ArrayLike, factor: float = 1.5, *, reduce_sensitivity: bool = False) -> BoolArray:
    """Tukey fences Q1 - factor·IQR and Q3 + factor·IQR (R-7 percentiles).

    With ``reduce_sensitivity`` (what the judge uses) the fences widen to at least the 1st and
    99th percentiles, so short series lose at most their extremes.
    """
    if factor <= 0.0:
        raise ValueError("factor must be greater than zero")
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return np.zeros(0, dtype=np.bool_)
    p01, p25, p75, p99 = (float(q) for q in np.percentile(data, [1.0, 25.0, 75.0, 99.0]))
    iqr = p75 - p25
    lower_fence = p25 - factor * iqr
    upper_fence = p75 + factor * iqr
    if reduce_sensitivity:
        lower_fence = min(p01, lower_fence)
        upper_fence = max(p99, upper_fence)
    return np.asarray((data > upper_fence) | (data < lower_fence), dtype=np.bool_)


def handle_nans(values: ArrayLike, strategy: KayentaNaNStrategy) -> FloatArray:
    """Drop NaNs, or replace them with 0.0."""
    data = np.asarray(values, dtype=np.float64)
    if strategy is KayentaNaNStrategy.remove:
        return data[~np.isnan(data)]
    return np.where(np.isnan(data), 0.0, data)


def _transform(values: ArrayLike, strategy: KayentaNaNStrategy, remove_outliers: bool, factor: float) -> FloatArray:
    data = handle_nans(values, strategy)
    if remove_outliers:
        data = data[~iqr_outlier_mask(data, factor, reduce_sensitivity=True)]
    return data


def _num(value: float) -> str:
    return f"{value:.6g}"


def _effect_text(measure: EffectMeasure, effect: float, op: str, threshold: float) -> str:
    name = "CLES" if measure == "cles" else "mean ratio"
    if math.isnan(effect):
        return f"{name} undefined (a mean is zero), so the effect check is skipped"
    return f"{name} {_num(effect)} {op} {_num(threshold)}"


def classify(
    control: ArrayLike,
    experiment: ArrayLike,
    *,
    direction: KayentaDirection = KayentaDirection.either,
    tolerance: float = KAYENTA_TOLERANCE,
    confidence_level: float = KAYENTA_CONFIDENCE,
    nan_strategy: KayentaNaNStrategy = KayentaNaNStrategy.remove,
    effect_measure: EffectMeasure = "meanRatio",
    allowed_increase: float | None = None,
    allowed_decrease: float | None = None,
    critical_increase: float | None = None,
    critical_decrease: float | None = None,
    critical: bool = False,
    must_have_data: bool = False,
    remove_outliers: bool = False,
    outlier_factor: float = 3.0,
    rng: np.random.Generator | None = None,
) -> KayentaResult:
    """Classify experiment (canary) against control (baseline) as NetflixACAJudge-v1.0 does.

    Effect thresholds left as None take Kayenta's default for the measure: 1.0 for the mean
    ratio, 0.5 for CLES (no effect in either case).
    """
    if effect_measure not in ("meanRatio", "cles"):
        raise ValueError(f"effect_measure must be 'meanRatio' or 'cles', not {effect_measure!r}")
    if tolerance < 0.0:
        raise ValueError("tolerance must be non-negative")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError("confidence_level must lie strictly between 0 and 1")
    neutral = 0.5 if effect_measure == "cles" else 1.0
    up = neutral if allowed_increase is None else allowed_increase
    down = neutral if allowed_decrease is None else allowed_decrease
    crit_up = neutral if critical_increase is None else critical_increase
    crit_down = neutral if critical_decrease is None else critical_decrease

    c = _transform(control, nan_strategy, remove_outliers, outlier_factor)
    e = _transform(experiment, nan_strategy, remove_outliers, outlier_factor)

    def early(label: KayentaLabel, reason: str, effect: float, *, is_critical: bool = False) -> KayentaResult:
        return KayentaResult(
            label=label,
            critical=is_critical,
            lower=math.nan,
            upper=math.nan,
            estimate=math.nan,
            bound=math.nan,
            effect_size=effect,
            control_count=int(c.size),
            experiment_count=int(e.size),
            reason=reason,
        )

    if e.size == 0 or c.size == 0:
        counts = f"canary has {e.size} points and baseline {c.size}"
        if nan_strategy is KayentaNaNStrategy.remove:
            if must_have_data and not critical:
                reason = f"no data: {counts}, and the metric must have data"
                return early(KayentaLabel.NodataFail, reason, math.nan)
            return early(KayentaLabel.Nodata, f"no data: {counts}", math.nan, is_critical=critical)
        # Kayenta passes an empty side outright when NaNs are replaced rather than removed.
        return early(KayentaLabel.Pass, f"no data: {counts}; passed because NaNs are replaced", math.nan)

    if np.array_equal(np.sort(e), np.sort(c)):
        return early(KayentaLabel.Pass, f"canary and baseline hold the same {e.size} values", neutral)
    if np.unique(np.concatenate((e, c))).size == 1:
        reason = f"every canary and baseline value equals {_num(float(e[0]))}"
        return early(KayentaLabel.Pass, reason, neutral)

    noise_note = ""
    if np.unique(e).size == 1 and np.unique(c).size == 1:
        # Two constant samples tie every rank; jitter them by a relative 1e-5 (experiment first).
        generator = rng if rng is not None else np.random.default_rng(NOISE_SEED)
        e = e + generator.standard_normal(e.size) * (float(e[0]) * NOISE_SCALE)
        c = c + generator.standard_normal(c.size) * (float(c[0]) * NOISE_SCALE)
        noise_note = " (both sides constant, so Gaussian noise of relative size 1e-5 was added)"

    interval = mann_whitney_interval(e, c, confidence_level)
    bound = tolerance * abs(interval.estimate)
    effect = cles(c, e) if effect_measure == "cles" else mean_ratio(c, e)

    checks_increase = direction in (KayentaDirection.increase, KayentaDirection.either)
    checks_decrease = direction in (KayentaDirection.decrease, KayentaDirection.either)
    above = interval.lower > bound
    below = interval.upper < -bound
    big_up = math.isnan(effect) or effect >= up
    big_down = math.isnan(effect) or effect <= down

    level = f"{confidence_level * 100:g}%"
    shift = f"{level} interval of the shift [{_num(interval.lower)}, {_num(interval.upper)}]"
    band = f"the tolerance band ±{_num(bound)}"
    is_critical = False
    if checks_increase and above and big_up:
        label = KayentaLabel.High
        reason = f"canary higher: {shift} is above {band}; {_effect_text(effect_measure, effect, '≥', up)}"
        if critical and (math.isnan(effect) or effect >= crit_up):
            is_critical = True
            reason += f"; critical: {_effect_text(effect_measure, effect, '≥', crit_up)}"
    elif checks_decrease and below and big_down:
        label = KayentaLabel.Low
        reason = f"canary lower: {shift} is below {band}; {_effect_text(effect_measure, effect, '≤', down)}"
        if critical and (math.isnan(effect) or effect <= crit_down):
            is_critical = True
            reason += f"; critical: {_effect_text(effect_measure, effect, '≤', crit_down)}"
    else:
        label = KayentaLabel.Pass
        if above and not checks_increase:
            reason = f"pass: {shift} is above {band}, but only decreases are checked"
        elif below and not checks_decrease:
            reason = f"pass: {shift} is below {band}, but only increases are checked"
        elif above:
            reason = f"pass: {shift} is above {band}, but {_effect_text(effect_measure, effect, '<', up)}"
        elif below:
            reason = f"pass: {shift} is below {band}, but {_effect_text(effect_measure, effect, '>', down)}"
        else:
            reason = f"pass: {shift} overlaps {band}"
    return KayentaResult(
        label=label,
        critical=is_critical,
        lower=interval.lower,
        upper=interval.upper,
        estimate=interval.estimate,
        bound=bound,
        effect_size=effect,
        control_count=int(c.size),
        experiment_count=int(e.size),
        reason=reason + noise_note,
    )
