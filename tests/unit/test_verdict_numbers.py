"""Every number in a verdict is the deciding look's, and never contradicts its reason.

Over many random streams (healthy, harmful, bursty, low traffic): a "harm shown" reason's bound excludes the
tolerated ratio and its p-value is within the budget; a "shown safe" reason's bound lies on the safe side of
the pass limit; an SLO failure's interval lies above the objective and an SLO pass's below it; and a failure
shown at an earlier look is reported with that look's numbers.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robustness_gate.api import MetricSpec, Verdict
from robustness_gate.judge import PASS_BETA, PASS_FACTOR, JudgeSettings, judge_metric
from robustness_gate.series import CountSeries, HistogramSeries

ALPHA = 0.01
SETTINGS = JudgeSettings(alpha=ALPHA, min_canary=50, min_baseline=50)
ERRORS = {"errors": "e{ {{selector}} }", "total": "t{ {{selector}} }"}
TOLERANCE = 0.2
SAFE_BOUND = re.compile(r"shown (below|above) ([0-9.e+-]+) \((upper|lower) bound ([0-9.e+-]+|inf) at 90%\)")
SHOWN_AT = re.compile(r"(?:shown|violated) at look (\d+)")


def _metric(**fields: Any) -> MetricSpec:
    return MetricSpec.model_validate({"name": "m", **fields})


@st.composite
def streams(draw: st.DrawFn) -> CountSeries:
    """Looks of canary and baseline counts: a per-side rate, a per-look spread around it, an occasional burst."""
    looks = draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    base_rate = draw(st.sampled_from([0.002, 0.01, 0.05]))
    ratio = draw(st.sampled_from([0.1, 0.25, 0.5, 1.0, 1.2, 1.5, 2.0, 4.0, 8.0]))
    traffic = draw(st.sampled_from([20, 200, 2000, 20000]))
    spread = draw(st.sampled_from([0.0, 0.5, 1.5]))  # log-normal look-to-look variation of the rate
    burst = draw(st.sampled_from([0.0, 0.1]))  # chance that a look on one side runs at 15%

    def side(rate: float, share: float) -> tuple[np.ndarray, np.ndarray]:
        n = rng.poisson(traffic * share, looks).astype(float)
        rates = np.minimum(rate * np.exp(spread * rng.standard_normal(looks) - spread**2 / 2), 1.0)
        rates = np.where(rng.random(looks) < burst, 0.15, rates)
        return rng.binomial(n.astype(int), rates).astype(float), n

    canary_events, canary_total = side(min(base_rate * ratio, 1.0), 0.25)
    baseline_events, baseline_total = side(base_rate, 0.75)
    return CountSeries(canary_events, canary_total, baseline_events, baseline_total)


def _safe_bound(message: str) -> tuple[str, float, float] | None:
    match = SAFE_BOUND.search(message)
    if match is None:
        return None
    return match.group(1), float(match.group(2)), float(match.group(4))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams(), increase=st.booleans())
def test_a_comparison_reason_and_its_numbers_agree(data: CountSeries, increase: bool) -> None:
    direction = "Increase" if increase else "Decrease"
    metric = _metric(errorRate=ERRORS, compare={"direction": direction, "tolerance": TOLERANCE})
    result = judge_metric(metric, data, SETTINGS)
    r0 = 1 + TOLERANCE if increase else 1 - TOLERANCE
    assert result.look is not None and 1 <= result.look <= max(1, data.looks)
    if result.verdict is Verdict.FAIL:
        assert result.lower is not None and result.upper is not None and result.p_value is not None
        assert result.p_value <= ALPHA, result.message
        if increase:
            assert result.lower >= r0, result.message
        else:
            assert result.upper <= r0, result.message
        shown = SHOWN_AT.search(result.message)
        assert shown is not None and int(shown.group(1)) == result.look, result.message
        # The numbers are those of the data up to that look.
        assert result.canary_traffic == float(data.canary_total[: result.look].sum())
        assert result.effect is not None
        assert "harm shown at look" in result.message
    safe = _safe_bound(result.message)
    if result.verdict is Verdict.PASS:
        assert safe is not None, result.message
    if safe is not None:
        relation, limit, bound = safe
        pass_limit = r0 * PASS_FACTOR if increase else r0 / PASS_FACTOR
        assert math.isclose(limit, pass_limit, rel_tol=1e-3)
        assert (relation == "below" and bound <= limit) or (relation == "above" and bound >= limit), result.message
        assert result.lower is not None and result.upper is not None
        # The shown bound is at 90%, so the 98% interval reported beside it is at least as wide.
        if increase:
            assert result.upper >= bound * (1 - 1e-3), result.message
        else:
            assert result.lower <= bound * (1 + 1e-3), result.message
    assert 0 < PASS_BETA < 1


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams(), objective=st.sampled_from([0.005, 0.02, 0.1]))
def test_an_slo_reason_and_its_interval_agree(data: CountSeries, objective: float) -> None:
    metric = _metric(errorRate=ERRORS, slo={"max": objective})
    result = judge_metric(metric, data, SETTINGS)
    if result.verdict is Verdict.FAIL:
        assert result.lower is not None and result.lower >= objective, result.message
        assert result.slo_met is False
        shown = SHOWN_AT.search(result.message)
        assert shown is not None and int(shown.group(1)) == result.look, result.message
        assert result.canary_traffic == float(data.canary_total[: result.look].sum())
    if result.verdict is Verdict.PASS:
        assert result.upper is not None and result.upper <= objective, result.message
        assert result.slo_met is True


def test_a_failure_shown_early_keeps_that_looks_numbers_as_later_looks_come() -> None:
    rng = np.random.default_rng(7)
    looks = 30
    total = np.full(looks, 1000.0)
    canary = np.where(np.arange(looks) < 8, rng.binomial(1000, 0.06, looks), rng.binomial(1000, 0.01, looks))
    data = CountSeries(canary.astype(float), total, rng.binomial(3000, 0.01, looks).astype(float), 3 * total)
    metric = _metric(errorRate=ERRORS, compare={"tolerance": TOLERANCE})
    now = judge_metric(metric, data, SETTINGS)
    assert now.verdict is Verdict.FAIL and now.look is not None and now.look < looks
    cut = CountSeries(
        data.canary_events[: now.look],
        data.canary_total[: now.look],
        data.baseline_events[: now.look],
        data.baseline_total[: now.look],
    )
    then = judge_metric(metric, cut, SETTINGS)
    assert then.look == now.look
    assert (then.message, then.lower, then.upper, then.p_value, then.effect) == (
        now.message,
        now.lower,
        now.upper,
        now.p_value,
        now.effect,
    )


def test_a_drift_reason_names_the_look_that_showed_it() -> None:
    bounds = (0.2, 0.4, 0.6, 0.8)
    looks = 6
    canary = np.tile([5.0, 5.0, 20.0, 60.0, 110.0], (looks, 1))
    baseline = np.tile([60.0, 120.0, 120.0, 60.0, 40.0], (looks, 1))
    metric = _metric(drift={"histogram": "score", "max": 0.2})
    result = judge_metric(metric, HistogramSeries(bounds=bounds, canary=canary, baseline=baseline), SETTINGS)
    assert result.verdict is Verdict.FAIL
    assert f"shown at look {looks}" in result.message and result.look == looks
