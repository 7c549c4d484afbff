"""The gate's score: weights of passing live metrics over all live metrics, and the critical metrics."""

from __future__ import annotations

from robustness_gate.api import RobustnessGateSpec, Verdict
from robustness_gate.judge.results import GateVerdict, MetricResult


def score_gate(spec: RobustnessGateSpec, results: list[MetricResult]) -> GateVerdict:
    """Weighted score 0-100 over live metrics; a critical failure fails the gate whatever the score."""
    live = [r for r in results if not r.dry_run]
    total_weight = sum(r.weight for r in live)
    passed = sum(r.weight for r in live if r.verdict is Verdict.PASS)
    score = round(100.0 * passed / total_weight, 2) if total_weight else 0.0
    with_data = [r for r in live if r.verdict is not Verdict.NO_DATA]
    failed = [r for r in live if r.verdict is Verdict.FAIL]
    critical_failed = [r for r in failed if r.critical]
    if critical_failed:
        first = critical_failed[0]
        return GateVerdict(Verdict.FAIL, score, f"critical metric {first.name} failed: {first.message}", results)
    if failed:
        data_weight = sum(r.weight for r in with_data)
        surviving = 100.0 * (data_weight - sum(r.weight for r in failed)) / data_weight
        if surviving < spec.scoring.marginal:
            names = ", ".join(r.name for r in failed)
            return GateVerdict(
                Verdict.FAIL,
                score,
                f"{names} failed, leaving {surviving:.0f} < marginal {spec.scoring.marginal}: {failed[0].message}",
                results,
            )
    if not with_data:
        return GateVerdict(Verdict.NO_DATA, score, f"no metric has enough data yet: {live[0].message}", results)
    blocking = [r for r in live if r.critical and r.verdict is not Verdict.PASS]
    if score >= spec.scoring.pass_ and not blocking:
        return GateVerdict(Verdict.PASS, score, f"score {score:g} ≥ pass {spec.scoring.pass_}", results)
    pending = [r for r in live if r.verdict is not Verdict.PASS]
    detail = f"{pending[0].name}: {pending[0].message}" if pending else ""
    return GateVerdict(Verdict.MARGINAL, score, f"score {score:g} < pass {spec.scoring.pass_}; {detail}", results)
