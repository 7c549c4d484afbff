"""One replay for the operator and `analyze`: looks judged in order, the first decision ends the analysis."""

from __future__ import annotations

import numpy as np
import pytest

from robustness_gate.analysis import judge_look, replay
from robustness_gate.api import Action, MetricSpec, RobustnessGate, parse_gate
from robustness_gate.metrics.source import Window
from robustness_gate.metrics.templates import Sides
from robustness_gate.series import CountSeries, MetricData

SIDES = Sides.parse('version="v2"', 'version="v1"')
START = 1_800_000_000.0
INTERVAL = 30.0
LONG = 200  # looks the source can serve; every window reads its first looks of the same stream


def _gate(**analysis: str) -> RobustnessGate:
    return parse_gate(
        {
            "apiVersion": "robustness.dev/v1alpha1",
            "kind": "RobustnessGate",
            "metadata": {"name": "g", "namespace": "ml"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
                "prometheus": {"address": "http://127.0.0.1:9"},
                "analysis": {"interval": "30s", "minDuration": "2m", "maxDuration": "30m", **analysis},
                "metrics": [
                    {
                        "name": "errors",
                        "critical": True,
                        "compare": {"tolerance": 0.2},
                        "errorRate": {"errors": "e{ {{selector}} }", "total": "t{ {{selector}} }"},
                    }
                ],
            },
        }
    )


class StreamSource:
    """A fixed stream of looks from START: a window sees its first looks, whatever its length."""

    def __init__(self, canary_rate: float, seed: int = 3, traffic: float = 2000.0) -> None:
        rng = np.random.default_rng(seed)
        self.total = np.full(LONG, traffic)
        self.canary = rng.binomial(int(traffic), canary_rate, LONG).astype(float)
        self.baseline = rng.binomial(int(traffic), 0.01, LONG).astype(float)
        self.windows: list[Window] = []

    def fetch(self, metric: MetricSpec, sides: Sides, window: Window) -> MetricData:
        assert window.start == START and window.looks <= LONG
        self.windows.append(window)
        k = window.looks
        return CountSeries(self.canary[:k], self.total[:k], self.baseline[:k], self.total[:k].copy())


def _at(looks: int) -> float:
    return START + looks * INTERVAL


@pytest.mark.parametrize(("rate", "action"), [(0.05, Action.ROLLBACK), (0.01, Action.PROMOTE)])
def test_a_later_end_changes_nothing_once_decided(rate: float, action: Action) -> None:
    gate = _gate()
    first = replay(gate, SIDES, StreamSource(rate), START, _at(60))
    assert first.decision.action is action and first.decided
    assert first.looks < 60 and first.unjudged == 60 - first.looks
    assert first.end == _at(first.looks) and first.elapsed == first.looks * INTERVAL
    for end in (first.looks, first.looks + 1, 100):
        later = replay(gate, SIDES, StreamSource(rate), START, _at(end))
        assert (later.looks, later.decision, later.verdict) == (first.looks, first.decision, first.verdict)
    earlier = replay(gate, SIDES, StreamSource(rate), START, _at(first.looks - 1))
    assert earlier.decision.action is Action.CONTINUE and earlier.looks == first.looks - 1


def test_each_look_is_judged_on_the_data_up_to_it() -> None:
    gate = _gate()
    source = StreamSource(0.05)
    report = replay(gate, SIDES, source, START, _at(60))
    data = {"errors": source.fetch(gate.spec.metrics[0], SIDES, Window(START, INTERVAL, 60))}
    for look in range(1, report.looks):
        assert judge_look(gate, data, START, look).decision.action is Action.CONTINUE
    assert judge_look(gate, data, START, report.looks).decision == report.decision


def test_a_promotion_says_when_it_fell() -> None:
    report = replay(_gate(), SIDES, StreamSource(0.01), START, _at(60))
    assert report.decision.action is Action.PROMOTE
    minimum = 4  # minDuration 2m at 30 s looks
    assert report.looks >= minimum
    minutes, seconds = divmod(int(report.looks * INTERVAL), 60)
    assert report.decision.reason.endswith(f"after {minutes}m" + (f"{seconds}s" if seconds else ""))


def test_a_window_past_max_duration_ends_at_max_duration() -> None:
    # Too little traffic to decide: the analysis is inconclusive at maxDuration and later looks are not judged.
    gate = _gate(maxDuration="5m", minDuration="1m")
    report = replay(gate, SIDES, StreamSource(0.01, traffic=20.0), START, _at(40))
    assert report.decision.action in (Action.INCONCLUSIVE, Action.PROMOTE)
    assert report.looks == 10 and report.unjudged == 30
    assert "maxDuration 5m" in report.decision.reason


def test_resuming_from_a_recorded_look_decides_as_from_the_start() -> None:
    gate = _gate()
    whole = replay(gate, SIDES, StreamSource(0.05), START, _at(60))
    for resumed_from in (1, 2, whole.looks - 1, whole.looks):
        resumed = replay(gate, SIDES, StreamSource(0.05), START, _at(60), first_look=resumed_from)
        assert (resumed.looks, resumed.decision) == (whole.looks, whole.decision)


def test_an_empty_window_is_look_zero() -> None:
    report = replay(_gate(), SIDES, StreamSource(0.01), START, START + 10.0)
    assert report.looks == 0 and report.decision.action is Action.CONTINUE
