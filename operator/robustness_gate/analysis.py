"""The analysis, look by look: fetch every metric since the analysis started, judge each look in order, decide.

The operator and `robustness-gate analyze` both run `replay`, so the CLI answers "what would the operator
have done by now, and when" exactly: looks are judged one after another, each on the data up to it, and the
first look whose decision is not Continue ends the analysis (minDuration, maxDuration and the gate's
policy apply as in the operator). Looks after that one, and a window reaching past maxDuration, change
nothing. The metric source and the clock are injected; nothing here keeps state between calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from robustness_gate.api import Action, RobustnessGate, Verdict
from robustness_gate.judge import GateVerdict, judge_gate
from robustness_gate.metrics.source import REFUSED, MetricsError, MetricSource, Window, fetch_all
from robustness_gate.metrics.templates import Sides
from robustness_gate.policy import Decision, decide
from robustness_gate.series import MetricData, first_looks


@dataclass(frozen=True)
class AnalysisReport:
    start: float
    end: float  # the time of the look judged last: the deciding look when the analysis ended
    looks: int  # looks judged: the deciding look's number when the analysis ended
    verdict: GateVerdict
    decision: Decision
    available: int = 0  # looks the window held; more than `looks` when a decision ended the analysis early

    @property
    def elapsed(self) -> float:
        return self.end - self.start

    @property
    def decided(self) -> bool:
        return self.decision.action is not Action.CONTINUE

    @property
    def unjudged(self) -> int:
        """Looks in the window after the one that decided: never judged, as the operator would not have."""
        return max(0, self.available - self.looks)


def judge_look(gate: RobustnessGate, data: dict[str, MetricData], start: float, look: int) -> AnalysisReport:
    """The verdict and decision at one look (1-based), on the data of looks 1..look only."""
    spec = gate.spec
    interval = spec.analysis.interval_seconds
    seen = {name: first_looks(series, look) for name, series in data.items()}
    verdict = judge_gate(spec, seen)
    decision = decide(verdict, look * interval, spec.analysis)
    return AnalysisReport(
        start=start, end=start + look * interval, looks=look, verdict=verdict, decision=decision, available=look
    )


def replay(
    gate: RobustnessGate, sides: Sides, source: MetricSource, start: float, now: float, first_look: int = 1
) -> AnalysisReport:
    """Judge the looks from `first_look` to the last one before `now`, in order, each on the data up to it;
    the first decision ends the analysis. Looks before `first_look` were judged before (Continue): the
    operator passes the number it recorded, `analyze` starts from the first. MetricsError propagates
    (never a verdict), and so does a refusal of data that cannot be right unless a look before the refused
    one decided. With no look in the window yet, the report is of look 0: no data, Continue."""
    spec = gate.spec
    window = Window.between(start, now, spec.analysis.interval_seconds)
    if window.looks == 0:
        reason = f"no look yet: the first is {spec.analysis.interval} after the start"
        verdict = GateVerdict(Verdict.NO_DATA, 0.0, reason, [])
        return AnalysisReport(start, start, 0, verdict, Decision(Action.CONTINUE, reason), available=0)
    available = window.looks
    first_look = max(1, min(first_look, window.looks))
    data, refused = _fetch_judgeable(gate, sides, source, window, first_look)
    report: AnalysisReport | None = None
    for look in range(first_look, data_looks(window, refused) + 1):
        report = judge_look(gate, data, start, look)
        if report.decided:
            break
    if refused is not None and (report is None or not report.decided):
        raise refused  # the looks before the refused one decided nothing: no verdict on data that cannot be right
    assert report is not None
    return AnalysisReport(
        start=report.start,
        end=report.end,
        looks=report.looks,
        verdict=report.verdict,
        decision=report.decision,
        available=available,
    )


def data_looks(window: Window, refused: MetricsError | None) -> int:
    """The looks that may be judged: all of the window's, or those before the first refused one."""
    if refused is None or refused.at is None:
        return window.looks
    return max(0, round((refused.at - window.start) / window.step) - 1)


def _fetch_judgeable(
    gate: RobustnessGate, sides: Sides, source: MetricSource, window: Window, first_look: int
) -> tuple[dict[str, MetricData], MetricsError | None]:
    """Every metric's data over the window; when some look holds data that cannot be right, the data before
    that look and the refusal, so that a decision taken earlier stands (as in the operator, which judged those
    looks before the bad one came) and none is taken on or after it."""
    refused: MetricsError | None = None
    while True:
        try:
            return fetch_all(source, gate.spec.metrics, sides, window), refused
        except MetricsError as error:
            if error.kind != REFUSED or error.at is None:
                raise
            refused = error if refused is None or refused.at is None or error.at <= refused.at else refused
            looks = data_looks(window, refused)
            if looks < first_look or looks >= window.looks:  # nothing left to judge, or no look left out
                raise refused from None
            window = Window(window.start, window.step, looks)
