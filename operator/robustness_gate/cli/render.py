"""How results are shown: the analyze table and JSON document, a gate's status table, the queries."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from robustness_gate.analysis import AnalysisReport
from robustness_gate.api import (
    Action,
    RobustnessGate,
    RobustnessGateStatus,
    Verdict,
)
from robustness_gate.cli.common import RESULT_KIND
from robustness_gate.durations import format_duration, iso
from robustness_gate.judge import MetricResult
from robustness_gate.metrics.queries import metric_queries
from robustness_gate.metrics.templates import Sides


def rendered_queries(gate: RobustnessGate, sides: Sides) -> dict[str, list[dict[str, str]]]:
    """Per metric: each query sent for one look (role, side, PromQL after templating and the exact-increment
    rewrite); side "both" is one query split by the label that tells the sides apart."""
    interval = gate.spec.analysis.interval_seconds
    return {
        metric.name: [
            {"role": query.role, "side": query.side, "promql": query.promql}
            for query in metric_queries(metric, sides, interval)
        ]
        for metric in gate.spec.metrics
    }


def print_queries(console: Console, queries: dict[str, list[dict[str, str]]]) -> None:
    if not queries:
        console.print("queries: none yet (no analysis has started)")
        return
    for name, parts in queries.items():
        for part in parts:
            console.print(
                f"query {name} {part['role']} ({part['side']}): {part['promql']}", markup=False, highlight=False
            )


def print_gate_status(console: Console, body: dict[str, Any]) -> None:
    """The verdict table of a gate as the operator recorded it in status."""
    status = RobustnessGateStatus.model_validate(body.get("status") or {})
    kinds: dict[str, tuple[str, bool]] = {}
    for metric in (body.get("spec") or {}).get("metrics") or []:
        kind = next((k for k in ("errorRate", "ratio", "latency", "drift", "custom") if k in metric), "custom")
        kinds[str(metric.get("name"))] = (kind, bool(metric.get("critical")))
    meta = body.get("metadata") or {}
    table = Table(
        title=f"{meta.get('namespace')}/{meta.get('name')}: canary {status.revision or '-'} vs stable "
        f"{status.stable_revision or '-'}, {status.looks} looks since {status.started_at or '-'}",
        show_lines=True,
    )
    for column in ("metric", "verdict", "canary", "baseline", "bounds", "p", "effect", "reason"):
        table.add_column(column, overflow="fold")
    for metric in status.metrics:
        kind, critical = kinds.get(metric.name, ("custom", False))
        style = _VERDICT_STYLE[metric.verdict]
        bounds = (
            "-"
            if metric.lower is None and metric.upper is None
            else (f"[{_plain(metric.lower)}, {_plain(metric.upper)}]")
        )
        table.add_row(
            metric.name + (" *" if critical else ""),
            f"[{style}]{metric.verdict.value}{' (dry run)' if metric.dry_run else ''}[/]",
            _value(metric.canary, kind),
            _value(metric.baseline, kind),
            bounds,
            _plain(metric.p_value),
            _plain(metric.effect),
            metric.message,
        )
        for feature in (metric.features or [])[:FEATURES_SHOWN]:
            table.add_row(
                f"  {metric.name}/{feature.name}",
                f"[{_VERDICT_STYLE[feature.verdict]}]{feature.verdict.value}[/]",
                _value(feature.canary, kind),
                _value(feature.baseline, kind),
                "-",
                _plain(feature.p_value),
                _plain(feature.effect),
                feature.message,
            )
    console.print(table)
    decision = status.decision
    score = "-" if status.score is None else f"{status.score:g}"
    console.print(
        f"phase [bold]{status.phase.value}[/]  score [bold]{score}[/]  verdict "
        f"[bold]{status.verdict.value if status.verdict else '-'}[/]"
    )
    if decision is not None:
        style = _ACTION_STYLE.get(decision.action, "bold")
        extra = " (dry run)" if decision.dry_run else ""
        console.print(f"decision [{style}]{decision.action.value}[/] → {decision.operation.value}{extra}")
    console.print(f"reason: {status.message}", markup=False, highlight=False)


def _json_number(value: float | None) -> float | str | None:
    if value is None:
        return None
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return value


def metric_document(result: MetricResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "kind": result.kind,
        "verdict": result.verdict.value,
        "test": result.test,
        "canary": _json_number(result.canary),
        "baseline": _json_number(result.baseline),
        "lower": _json_number(result.lower),
        "upper": _json_number(result.upper),
        "pValue": _json_number(result.p_value),
        "effect": _json_number(result.effect),
        "sloMet": result.slo_met,
        "canaryTraffic": _json_number(result.canary_traffic),
        "baselineTraffic": _json_number(result.baseline_traffic),
        "weight": result.weight,
        "critical": result.critical,
        "dryRun": result.dry_run,
        "look": result.look,
        "message": result.message,
        **(
            {
                "referenceCanary": _json_number(result.reference_canary),
                "referenceBaseline": _json_number(result.reference_baseline),
            }
            if result.reference_canary is not None or result.reference_baseline is not None
            else {}
        ),
        **({"features": [_feature_document(f) for f in result.features]} if result.features else {}),
    }


def _feature_document(result: MetricResult) -> dict[str, Any]:
    return {
        "name": result.name,
        "verdict": result.verdict.value,
        "canary": _json_number(result.canary),
        "baseline": _json_number(result.baseline),
        "pValue": _json_number(result.p_value),
        "effect": _json_number(result.effect),
        "message": result.message,
    }


def result_document(
    gate: RobustnessGate, report: AnalysisReport, code: int, sides: Sides | None = None
) -> dict[str, Any]:
    """The stable JSON output of `analyze -o json` (documented in docs/cli.md)."""
    interval = gate.spec.analysis.interval_seconds
    window_end = report.start + report.available * interval
    return {
        "apiVersion": "robustness.dev/v1alpha1",
        "kind": RESULT_KIND,
        "gate": {"name": gate.metadata.name, "namespace": gate.metadata.namespace},
        "window": {
            "start": iso(report.start),
            "end": iso(window_end),
            "interval": gate.spec.analysis.interval,
            "looks": report.available,
            "elapsed": format_duration(window_end - report.start),
        },
        "verdict": report.verdict.verdict.value,
        "score": report.verdict.score,
        "decision": {
            "action": report.decision.action.value,
            "reason": report.decision.reason,
            "look": report.looks,
            "at": iso(report.end),
            "elapsed": format_duration(report.elapsed),
        },
        "note": replay_note(gate, report),
        "falsePositiveRate": gate.spec.analysis.false_positive_rate,
        "metrics": [metric_document(result) for result in report.verdict.metrics],
        **({"queries": rendered_queries(gate, sides)} if sides is not None else {}),
        "exitCode": code,
    }


def replay_note(gate: RobustnessGate, report: AnalysisReport) -> str | None:
    """Why looks of the window were not judged, if some were not: the analysis ended at its first decision."""
    if not report.unjudged:
        return None
    analysis = gate.spec.analysis
    looks = f"{report.unjudged} later look{'s' if report.unjudged > 1 else ''} of the window"
    if report.elapsed >= analysis.max_duration_seconds and report.decision.action is not Action.ROLLBACK:
        return (
            f"the window is longer than maxDuration {analysis.max_duration}: the analysis ended at look "
            f"{report.looks}, and the {looks} were not judged"
        )
    return f"the analysis ended at its first decision, at look {report.looks}; the {looks} were not judged"


_VERDICT_STYLE = {
    Verdict.PASS: "green",
    Verdict.FAIL: "bold red",
    Verdict.MARGINAL: "yellow",
    Verdict.NO_DATA: "dim",
}


_ACTION_STYLE = {
    Action.PROMOTE: "bold green",
    Action.ROLLBACK: "bold red",
    Action.CONTINUE: "yellow",
    Action.INCONCLUSIVE: "yellow",
}


def print_table(console: Console, gate: RobustnessGate, report: AnalysisReport, code: int) -> None:
    table = Table(
        title=f"{gate.metadata.namespace}/{gate.metadata.name}: look {report.looks} of {report.available}, "
        f"{format_duration(report.elapsed)} after {iso(report.start)} (at {iso(report.end)})",
        show_lines=True,
        expand=False,
    )
    for column in ("metric", "verdict", "canary", "baseline", "test", "bound / p", "effect", "reason"):
        table.add_column(column, overflow="fold")
    for result in report.verdict.metrics:
        style = _VERDICT_STYLE[result.verdict]
        verdict = result.verdict.value + (" (dry run)" if result.dry_run else "")
        table.add_row(
            result.name + (" *" if result.critical else ""),
            f"[{style}]{verdict}[/]",
            _value(result.canary, result.kind),
            _value(result.baseline, result.kind),
            result.test,
            _bound(result),
            _plain(result.effect),
            result.message,
        )
        for feature in result.features[:FEATURES_SHOWN]:
            table.add_row(
                f"  {result.name}/{feature.name}",
                f"[{_VERDICT_STYLE[feature.verdict]}]{feature.verdict.value}[/]",
                _value(feature.canary, result.kind),
                _value(feature.baseline, result.kind),
                "",
                _plain(feature.p_value),
                _plain(feature.effect),
                feature.message,
            )
    console.print(table)
    action = report.decision.action
    when = f" at look {report.looks} ({iso(report.end)}, after {format_duration(report.elapsed)})"
    console.print(
        f"score [bold]{report.verdict.score:g}[/]  verdict [bold]{report.verdict.verdict.value}[/]  decision "
        f"[{_ACTION_STYLE[action]}]{action.value}[/]{when if report.decided else ''} (exit {code})"
    )
    console.print(f"reason: {report.decision.reason}", markup=False, highlight=False)
    note = replay_note(gate, report)
    if note:
        console.print(f"note: {note}", markup=False, highlight=False)


# A metric over many features shows its first features (failures first) under it; -o json has all of them.
FEATURES_SHOWN = 5


def _value(value: float | None, kind: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    if kind in ("errorRate", "ratio"):
        return f"{100 * value:.3g}%"
    if kind == "latency":
        return f"{1000 * value:.4g} ms"
    return f"{value:.4g}"


def _plain(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.3g}"


def _bound(result: MetricResult) -> str:
    parts = []
    if result.lower is not None or result.upper is not None:
        parts.append(f"[{_plain(result.lower)}, {_plain(result.upper)}]")
    if result.p_value is not None:
        parts.append(f"p={result.p_value:.2g}")
    return " ".join(parts) or "-"
