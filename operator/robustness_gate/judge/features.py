"""One metric over many features: each feature judged as a metric of its kind alone, the metric's budget split.

Drift: Holm's step-down over the features' anytime-valid p-values. The drift test's p-value, 1 / (the largest
e-value so far), is valid at any stopping time, and Holm controls the chance of any false rejection at alpha for
p-values under any dependence, so a healthy canary has at most alpha chance of one drifted feature at the look
where the gate stops. Holm rejects all Bonferroni rejects and more when several features drift at once, which
the share rule (`maxDriftedShare`) needs. A feature drifted when Holm rejects it at its level and its effect
is at least drift.max; the metric fails when a critical feature drifted, or when the drifted share of the
features with data reaches maxDriftedShare.

Ratio (e.g. one null rate per feature): every feature's SLO (slo.max, or features.slo for that feature) and
comparison must hold, each test at alpha over the number of features (Bonferroni): a data-quality promise holds
per feature, so any one failing fails the metric, and Holm would gain nothing there (its first step is
Bonferroni's).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from robustness_gate.api import SLO, Features, MetricSpec, Verdict
from robustness_gate.judge.results import JudgeSettings, MetricResult
from robustness_gate.series import FeatureData, GroupedSeries

# Features named in a metric's reason; the status lists every one.
NAMED_IN_REASON = 5
# The order of features in the status: failures first, then what is still open, then what passed.
_ORDER = {Verdict.FAIL: 0, Verdict.MARGINAL: 1, Verdict.NO_DATA: 2, Verdict.PASS: 3}

JudgeOne = Callable[[MetricSpec, FeatureData, JudgeSettings], MetricResult]


def judge_features(
    metric: MetricSpec, data: GroupedSeries, settings: JudgeSettings, judge_one: JudgeOne
) -> MetricResult:
    features = metric.features
    assert features is not None
    if not data.groups:
        return _result(metric, data, Verdict.NO_DATA, f"no series with a {features.label} label yet", [], "")
    judge = _drift if metric.drift is not None else _ratio
    return judge(metric, features, data, settings, judge_one)


def _drift(
    metric: MetricSpec, features: Features, data: GroupedSeries, settings: JudgeSettings, judge_one: JudgeOne
) -> MetricResult:
    count = len(data.groups)
    first = [judge_one(_named(metric, group), member, _at(settings, count)) for group, member in _members(data)]
    results = list(first)
    # Holm: the k-th smallest p-value (0-based) is tested at alpha / (count - k), while every smaller one was.
    order = sorted(range(count), key=lambda i: _p(first[i]))
    for rank, index in enumerate(order):
        level = settings.alpha / (count - rank)
        if _p(first[index]) > level:
            break
        if rank > 0:  # the first is tested at alpha / count, as already judged
            group, member = data.groups[index], data.members[index]
            results[index] = judge_one(_named(metric, group), member, dataclasses.replace(settings, alpha=level))
    live = [r for r in results if r.verdict is not Verdict.NO_DATA]
    drifted = [r for r in results if r.verdict is Verdict.FAIL]
    critical = [r for r in drifted if r.name in features.critical]
    test = f"{results[0].test} per feature, Holm over {count}"
    if not live:
        return _result(metric, data, Verdict.NO_DATA, _no_data(results), results, test)
    needed = math.ceil(features.max_drifted_share * len(live) - 1e-9)
    share_text = f"{len(drifted)} of {len(live)} features drifted"
    rule = f"fails at {needed} (maxDriftedShare {features.max_drifted_share:g})"
    if critical:
        at = min(r.look or data.looks for r in critical)
        reason = f"critical feature {_names(critical)} drifted: {_first_reason(critical)}; {share_text}"
        return _result(metric, data, Verdict.FAIL, reason, results, test, look=at)
    if len(drifted) >= needed:
        at = sorted(r.look or data.looks for r in drifted)[needed - 1]
        reason = f"{share_text}, {rule}: {_names(drifted)}; {_first_reason(drifted)}"
        return _result(metric, data, Verdict.FAIL, reason, results, test, look=at)
    open_ = [r for r in results if r.verdict in (Verdict.MARGINAL, Verdict.NO_DATA)]
    drifted_text = f" ({_names(drifted)})" if drifted else ""
    if not open_:
        reason = f"{share_text}{drifted_text}, {rule}; no critical feature drifted"
        return _result(metric, data, Verdict.PASS, reason, results, test)
    reason = f"{share_text}{drifted_text}, {rule}; {len(open_)} not yet settled: {_first_reason(open_)}"
    return _result(metric, data, Verdict.MARGINAL, reason, results, test)


def _ratio(
    metric: MetricSpec, features: Features, data: GroupedSeries, settings: JudgeSettings, judge_one: JudgeOne
) -> MetricResult:
    count = len(data.groups)
    level = _at(settings, count)
    results = [judge_one(_ratio_feature(metric, features, group), member, level) for group, member in _members(data)]
    test = f"{results[0].test} per feature, Bonferroni over {count}"
    failed = [r for r in results if r.verdict is Verdict.FAIL]
    if failed:
        at = min(r.look or data.looks for r in failed)
        reason = f"{len(failed)} of {count} features failed: {_names(failed)}; {_first_reason(failed)}"
        return _result(metric, data, Verdict.FAIL, reason, results, test, look=at)
    live = [r for r in results if r.verdict is not Verdict.NO_DATA]
    if not live:
        return _result(metric, data, Verdict.NO_DATA, _no_data(results), results, test)
    open_ = [r for r in results if r.verdict is not Verdict.PASS]
    if not open_:
        return _result(metric, data, Verdict.PASS, f"all {count} features hold", results, test)
    reason = f"{count - len(open_)} of {count} features hold, {len(open_)} not yet settled: {_first_reason(open_)}"
    return _result(metric, data, Verdict.MARGINAL, reason, results, test)


def _p(result: MetricResult) -> float:
    return result.p_value if result.p_value is not None else 1.0


def _members(data: GroupedSeries) -> list[tuple[str, FeatureData]]:
    return list(zip(data.groups, data.members, strict=True))


def _at(settings: JudgeSettings, count: int) -> JudgeSettings:
    return dataclasses.replace(settings, alpha=settings.alpha / count)


def _named(metric: MetricSpec, group: str) -> MetricSpec:
    """The metric as judged for one feature: named after the feature (for its reason and status entry)."""
    return metric.model_copy(update={"name": group, "features": None})


def _ratio_feature(metric: MetricSpec, features: Features, group: str) -> MetricSpec:
    named = _named(metric, group)
    bound = features.slo.get(group)
    if bound is None or metric.slo is None:
        return named
    return named.model_copy(update={"slo": SLO(max=bound)})


def _names(results: list[MetricResult]) -> str:
    shown = ", ".join(r.name for r in results[:NAMED_IN_REASON])
    more = len(results) - NAMED_IN_REASON
    return shown + (f" and {more} more" if more > 0 else "")


def _first_reason(results: list[MetricResult]) -> str:
    first = results[0]
    return f"{first.name}: {first.message}"


def _no_data(results: list[MetricResult]) -> str:
    return f"no feature has enough data yet ({_first_reason(results)})"


def _result(
    metric: MetricSpec,
    data: GroupedSeries,
    verdict: Verdict,
    reason: str,
    results: list[MetricResult],
    test: str,
    look: int | None = None,
) -> MetricResult:
    ordered = sorted(results, key=lambda r: (_ORDER[r.verdict], _p(r), r.name))
    worst = ordered[0] if ordered else None
    return MetricResult(
        name=metric.name,
        kind=metric.kind,
        verdict=verdict,
        test=test,
        message=reason,
        # The headline numbers are those of the feature listed first (the most failing one).
        canary=worst.canary if worst else None,
        baseline=worst.baseline if worst else None,
        p_value=worst.p_value if worst else None,
        effect=worst.effect if worst else None,
        canary_traffic=worst.canary_traffic if worst else None,
        baseline_traffic=worst.baseline_traffic if worst else None,
        look=look if look is not None else data.looks,
        features=tuple(ordered),
    )
