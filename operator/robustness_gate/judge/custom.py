"""Custom values: an SLO held for consecutive looks, or a Mann-Whitney comparison."""

from __future__ import annotations

import math

import numpy as np

from robustness_gate.api import MetricSpec
from robustness_gate.judge.parts import Part, combine, kayenta_compare
from robustness_gate.judge.results import MetricResult
from robustness_gate.judge.text import num
from robustness_gate.series import BoolArray, FloatArray, ValueSeries


def judge_custom(metric: MetricSpec, data: ValueSeries) -> MetricResult:
    assert metric.custom is not None
    canary_values = np.asarray(data.canary, dtype=float)
    valid = canary_values[~np.isnan(canary_values)]
    latest = float(valid[-1]) if len(valid) else None
    baseline_valid = data.baseline[~np.isnan(data.baseline)]
    numbers: dict[str, float | bool | None] = {
        "canary": latest,
        "baseline": float(baseline_valid[-1]) if len(baseline_valid) else None,
        "canary_traffic": float(len(valid)),
        "baseline_traffic": float(len(baseline_valid)),
    }
    parts: list[Part] = []
    tests = []
    if metric.slo is not None:
        low = -math.inf if metric.slo.min is None else metric.slo.min
        high = math.inf if metric.slo.max is None else metric.slo.max
        outside = (valid < low) | (valid > high)
        needed = metric.custom.consecutive
        run = _longest_run(outside)
        bounds_text = f"[{num(low)}, {num(high)}]"
        if run >= needed:
            at = _run_reached(outside, needed)
            text = f"value outside {bounds_text} for {run} looks in a row (limit {needed}), from look {at - needed + 1}"
            parts.append(Part(True, False, text, at=at))
        elif latest is not None and not outside[-1]:
            parts.append(Part(False, True, f"value {num(latest)} within {bounds_text}"))
        else:
            parts.append(Part(False, False, f"value {num(latest)} outside {bounds_text} for {run} look(s)"))
        numbers.update(slo_met=bool(parts[-1].confirmed))
        tests.append("threshold")
    if metric.compare is not None:
        part, effect = kayenta_compare(canary_values, np.asarray(data.baseline, dtype=float), metric, "value")
        parts.append(part)
        numbers.update(effect=effect)
        tests.append("Mann-Whitney per look (Kayenta)")
    traffic_ok = len(valid) > 0
    return combine(metric, parts, traffic_ok, "no values yet", " + ".join(tests), data.looks, **numbers)


def _run_reached(flags: BoolArray, needed: int) -> int:
    """The first look (1-based) that ends `needed` flagged looks in a row."""
    current = 0
    for index, flag in enumerate(flags):
        current = current + 1 if flag else 0
        if current >= needed:
            return index + 1
    return len(flags)


def _longest_run(flags: FloatArray) -> int:
    best = current = 0
    for flag in flags:
        current = current + 1 if flag else 0
        best = max(best, current)
    return best
