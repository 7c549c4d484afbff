"""The rules users would otherwise pick, as their projects implement them.

* Flagger: each `interval` the canary's metric over the metric window is checked against
  `thresholdRange.max`; no data (empty or NaN) is a failed check; rollback once the cumulative
  failed checks reach `threshold`; promotion after maxWeight / stepWeight passing checks. With
  several metrics a check fails when any of them does.
* Argo Rollouts: a measurement every `interval` evaluates `successCondition: result <= max`;
  the metric is Failed when failed > failureLimit; an empty result is an Error measurement,
  retried after 10 s, and more than consecutiveErrorLimit (4) Errors in a row abort the rollout;
  Successful after `count` measurements. With several metrics each counts its own failures and
  any Failed metric aborts.
* Kayenta: per-step time series of canary and baseline, judged every `judge_every_s` on the
  growing window with robustness_gate.stats.kayenta.classify (98% confidence, 25% tolerance);
  a metric scores 100 (Pass) or 0 (High, Low, Nodata) and the score is their mean (one group,
  equal weights); fail fast at a score <= marginal, and at the end pass only with a score >= pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from bench.detection.metrics import FloatArray, canary_value
from bench.detection.outcome import Outcome, first_true
from bench.detection.scenarios import TICK_SECONDS, Scenario
from bench.detection.simulate import Streams
from robustness_gate.stats.kayenta import KayentaDirection, KayentaLabel, classify
from robustness_gate.stats.mannwhitney import wilcoxon_diff

# ---------------------------------------------------------------- Flagger


@dataclass(frozen=True)
class FlaggerRule:
    max_value: float  # thresholdRange.max: the knob
    interval_s: int = 60  # analysis.interval (docs examples: 1m)
    window_s: int = 60  # metric interval (default "1m")
    threshold: int = 5  # failed checks before rollback (docs examples: 5)
    steps: int = 5  # maxWeight / stepWeight = 50 / 10 passing checks to reach promotion


def flagger_values(scenario: Scenario, streams: Streams, rule: FlaggerRule) -> tuple[FloatArray, FloatArray]:
    """The canary's metric at every check (runs x checks) and the check times in seconds."""
    step = rule.interval_s // TICK_SECONDS
    ends = np.arange(step, streams.canary_total.shape[1] + 1, step, dtype=np.int64)
    values = canary_value(scenario, streams, ends, rule.window_s // TICK_SECONDS)
    if values.ndim == 3:
        # Any metric out of range fails the check; with one threshold for all, the largest value decides.
        # The metrics count the same requests, so they have no data (NaN) together.
        values = np.max(values, axis=2)
    return values, ends.astype(float) * TICK_SECONDS


def flagger_outcome(values: FloatArray, times: FloatArray, rule: FlaggerRule) -> Outcome:
    failed = np.isnan(values) | (values > rule.max_value)  # no data is a failed check, as in Flagger
    rollback_at = first_true(np.cumsum(failed, axis=1) >= rule.threshold)
    promote_at = first_true(np.cumsum(~failed, axis=1) >= rule.steps)
    checks = values.shape[1]
    padded = np.append(times, math.inf)
    rollback = np.where(rollback_at < promote_at, padded[np.minimum(rollback_at, checks)], math.inf)
    promote = np.where(promote_at < rollback_at, padded[np.minimum(promote_at, checks)], math.inf)
    return Outcome(np.asarray(rollback, dtype=float), np.asarray(promote, dtype=float))


# ---------------------------------------------------------------- Argo Rollouts


@dataclass(frozen=True)
class ArgoRule:
    max_value: float  # successCondition: result[0] <= max_value: the knob
    interval_s: int = 300  # docs example: 5m
    window_s: int = 300  # the query's range, [5m]
    failure_limit: int = 3  # docs example; Failed when failed > failureLimit
    consecutive_error_limit: int = 4  # default
    error_retry_s: int = 10  # DefaultErrorRetryInterval
    count: int = 6  # 6 x 5 min = the 30 min horizon


def argo_values(scenario: Scenario, streams: Streams, rule: ArgoRule) -> FloatArray:
    """The query's result at the end of every tick (runs x ticks [x count metrics]); NaN = empty result."""
    ends = np.arange(1, streams.canary_total.shape[1] + 1, dtype=np.int64)
    return canary_value(scenario, streams, ends, rule.window_s // TICK_SECONDS)


def argo_outcome(values: FloatArray, rule: ArgoRule) -> Outcome:
    """Several metrics (a trailing axis) count failures apiece; they have no data together (the same
    requests), so they are measured and retried at the same ticks."""
    per_metric = values if values.ndim == 3 else values[:, :, None]
    runs, ticks = per_metric.shape[:2]
    interval, retry = rule.interval_s // TICK_SECONDS, rule.error_retry_s // TICK_SECONDS
    # The first measurement once a full window exists (as with initialDelay = interval).
    next_tick = np.full(runs, interval - 1)
    failed = np.zeros((runs, per_metric.shape[2]), dtype=np.int64)
    errors = np.zeros(runs, dtype=np.int64)
    measured = np.zeros(runs, dtype=np.int64)
    rollback = np.full(runs, math.inf)
    promote = np.full(runs, math.inf)
    active = np.ones(runs, dtype=bool)
    for tick in range(ticks):
        index = np.flatnonzero(active & (next_tick == tick))
        if not len(index):
            continue
        value = per_metric[index, tick]
        error = np.isnan(value).any(axis=1)
        errors[index] = np.where(error, errors[index] + 1, 0)
        failed[index] += ~error[:, None] & (value > rule.max_value)
        measured[index] += ~error
        abort = (failed[index] > rule.failure_limit).any(axis=1) | (errors[index] > rule.consecutive_error_limit)
        success = ~abort & (measured[index] >= rule.count)
        now = (tick + 1) * TICK_SECONDS
        rollback[index[abort]] = now
        promote[index[success]] = now
        active[index[abort | success]] = False
        next_tick[index] = tick + np.where(error, retry, interval)
    return Outcome(rollback, promote)


# ---------------------------------------------------------------- Kayenta


@dataclass(frozen=True)
class KayentaRule:
    confidence: float = 0.98  # NetflixACAJudge's Mann-Whitney confidence: the knob
    tolerance: float = 0.25
    step_s: int = 60  # one time-series point per minute
    judge_every_s: int = 300  # a judgement every 5 minutes on the growing window
    pass_score: float = 95.0
    marginal_score: float = 75.0


def z_of(confidence: float) -> float:
    return float(norm.isf((1.0 - confidence) / 2.0))


def confidence_of(z: float) -> float:
    return float(1.0 - 2.0 * norm.sf(z))


@dataclass(frozen=True)
class KayentaJudgements:
    """classify() once per run and judgement, kept in a form that answers other confidences too.

    At the confidence classify ran with, `shipped` holds its own scores. The interval's ends move
    with the confidence but the Hodges-Lehmann estimate (hence the tolerance band) does not, so the
    label at another confidence follows from the standardised rank-sum statistic W(mu) (decreasing
    in the shift mu) at the band and at the ends of the search range, exactly as the interval's
    root search uses them: the lower end is mu_min if W(mu_min) <= z, mu_max if W(mu_max) >= z,
    and otherwise above the band iff W(band) > z (likewise for the upper end at -z). Labels decided
    before the interval (Nodata, identical samples) are in `fixed_score`.
    """

    confidence: float
    shipped: FloatArray  # runs x judgements: classify's own scores at `confidence`
    fixed_score: FloatArray  # NaN where the label depends on the confidence
    stats: FloatArray  # runs x judgements x 8: mu_min, mu_max, band, W(mu_min), W(mu_max), W(band), W(-band), checks
    times: FloatArray  # judgement times, seconds

    def scores(self, confidence: float) -> FloatArray:
        if confidence == self.confidence:
            return self.shipped
        z = z_of(confidence)
        mu_min, mu_max, band, w_min, w_max, w_band, w_neg, checks = np.moveaxis(self.stats, -1, 0)
        lower = np.where(w_min <= z, mu_min, np.where(w_max >= z, mu_max, np.where(w_band > z, np.inf, -np.inf)))
        upper = np.where(w_min <= -z, mu_min, np.where(w_max >= -z, mu_max, np.where(w_neg < -z, -np.inf, np.inf)))
        high = ((checks == 1) | (checks == 3)) & (lower > band)
        low = ((checks == 2) | (checks == 3)) & (upper < -band)
        derived = np.where(high | low, 0.0, 100.0)
        return np.asarray(np.where(np.isnan(self.fixed_score), derived, self.fixed_score))

    @staticmethod
    def concat(parts: list[KayentaJudgements]) -> KayentaJudgements:
        return KayentaJudgements(
            parts[0].confidence,
            np.concatenate([p.shipped for p in parts]),
            np.concatenate([p.fixed_score for p in parts]),
            np.concatenate([p.stats for p in parts]),
            parts[0].times,
        )


def _score(label: KayentaLabel) -> float:
    # One metric: Pass scores 100; High, Low and Nodata (a lone Nodata group scores 0) fail.
    return 100.0 if label is KayentaLabel.Pass else 0.0


def kayenta_judgements(
    canary: FloatArray, baseline: FloatArray, rule: KayentaRule, direction: KayentaDirection
) -> KayentaJudgements:
    """Run classify on the growing window at every judgement of every run (points: runs x steps)."""
    every = rule.judge_every_s // rule.step_s
    judged = list(range(every, canary.shape[1] + 1, every))
    shape = (canary.shape[0], len(judged))
    shipped, fixed = np.zeros(shape), np.full(shape, math.nan)
    stats = np.zeros((*shape, 8))
    up = direction in (KayentaDirection.increase, KayentaDirection.either)
    down = direction in (KayentaDirection.decrease, KayentaDirection.either)
    for run in range(shape[0]):
        for j, points in enumerate(judged):
            experiment, control = canary[run, :points], baseline[run, :points]
            try:
                result = classify(
                    control,
                    experiment,
                    direction=direction,
                    tolerance=rule.tolerance,
                    confidence_level=rule.confidence,
                )
            except ValueError:  # Kayenta's Error label is not counted: no counted metric scores 0
                shipped[run, j] = fixed[run, j] = 0.0
                continue
            shipped[run, j] = _score(result.label)
            if math.isnan(result.lower) or "noise" in result.reason:
                fixed[run, j] = shipped[run, j]
                continue
            e, c = experiment[~np.isnan(experiment)], control[~np.isnan(control)]
            mu_min, mu_max = float(e.min() - c.max()), float(e.max() - c.min())
            effect = result.effect_size
            big_up = up and (math.isnan(effect) or effect >= 1.0)
            big_down = down and (math.isnan(effect) or effect <= 1.0)
            stats[run, j] = (
                mu_min,
                mu_max,
                result.bound,
                wilcoxon_diff(mu_min, 0.0, e, c),
                wilcoxon_diff(mu_max, 0.0, e, c),
                wilcoxon_diff(result.bound, 0.0, e, c),
                wilcoxon_diff(-result.bound, 0.0, e, c),
                int(big_up) + 2 * int(big_down),
            )
    times = np.asarray(judged, dtype=float) * rule.step_s
    return KayentaJudgements(rule.confidence, shipped, fixed, stats, times)


def kayenta_outcome(judgements: KayentaJudgements | Sequence[KayentaJudgements], rule: KayentaRule) -> Outcome:
    """Several metrics' judgements (one each) score their mean: one group of equally weighted metrics."""
    per_metric = [judgements] if isinstance(judgements, KayentaJudgements) else list(judgements)
    scores = np.mean([j.scores(rule.confidence) for j in per_metric], axis=0)
    fails = scores <= rule.marginal_score  # fail fast on any judgement at or below marginal
    fails[:, -1] |= scores[:, -1] < rule.pass_score  # the final verdict needs a passing last score
    first = first_true(fails)
    padded = np.append(per_metric[0].times, math.inf)
    rollback = padded[first]
    promote = np.where(first == scores.shape[1], per_metric[0].times[-1], math.inf)
    return Outcome(np.asarray(rollback, dtype=float), np.asarray(promote, dtype=float))


def kayenta_direction(scenario: Scenario) -> KayentaDirection:
    # Error rates and latency only fail upwards; a drifting score distribution fails either way.
    return KayentaDirection.either if scenario.kind == "drift" else KayentaDirection.increase
