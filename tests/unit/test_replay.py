"""One replay for the operator and `analyze`: looks judged in order, the first decision ends the analysis."""

from __future__ import annotations

import pytest
from fakes import (
    REPLAY_INTERVAL as INTERVAL,
)
from fakes import (
    REPLAY_SIDES as SIDES,
)
from fakes import (
    REPLAY_START as START,
)
from fakes import (
    StreamSource,
)
from fakes import (
    look_time as _at,
)
from fakes import (
    replay_gate as _gate,
)

from robustness_gate.analysis import judge_look, replay
from robustness_gate.api import Action
from robustness_gate.metrics.source import Window


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
