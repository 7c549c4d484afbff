"""`robustness-gate analyze`: the operator's replay over a window of a real Prometheus, without a cluster."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml
from rich.console import Console

from robustness_gate.analysis import replay
from robustness_gate.api import (
    FieldProblem,
    GateValidationError,
    RobustnessGate,
    parse_gate,
)
from robustness_gate.cli.common import EXIT_BY_ACTION, EXIT_ERROR, InputError
from robustness_gate.cli.render import print_table, result_document
from robustness_gate.durations import parse_duration
from robustness_gate.metrics.prometheus import Credentials, PrometheusSource, prometheus_source
from robustness_gate.metrics.queries import metric_queries
from robustness_gate.metrics.source import REFUSED, MetricsError
from robustness_gate.metrics.templates import Sides, TemplateError


def analyze_command(args: argparse.Namespace) -> int:
    console = Console(stderr=False, soft_wrap=False)
    try:
        gate, sides, source, start, end = _prepare(args)
    except InputError as error:
        return _report_error(args.output, "invalid", error.problems)
    try:
        report = replay(gate, sides, source, start, end)
    except MetricsError as error:
        if error.kind == REFUSED:
            return _report_error(args.output, "data", [FieldProblem(path="spec.metrics", message=str(error))])
        return _report_error(args.output, "prometheus", [FieldProblem(path="prometheus", message=str(error))])
    finally:
        source.close()
    code = EXIT_BY_ACTION[report.decision.action]
    if args.output == "json":
        print(json.dumps(result_document(gate, report, code, sides), indent=2))
    else:
        print_table(console, gate, report, code)
    return code


def _prepare(args: argparse.Namespace) -> tuple[RobustnessGate, Sides, PrometheusSource, float, float]:
    """Validate everything before the first query: bad input never reaches Prometheus."""
    problems: list[FieldProblem] = []
    gate: RobustnessGate | None = None
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        gate = parse_gate(_with_prometheus(yaml.safe_load(text), args.prometheus))
    except OSError as error:
        problems.append(FieldProblem(path="--file", message=f"cannot read {args.file}: {error.strerror}"))
    except yaml.YAMLError as error:
        problems.append(FieldProblem(path="--file", message=f"invalid YAML: {error}".replace("\n", " ")))
    except GateValidationError as error:
        problems.extend(error.problems)
    sides: Sides | None = None
    try:
        sides = Sides.parse(args.canary, args.baseline)
    except TemplateError as error:
        problems.append(FieldProblem(path="--canary/--baseline", message=f"{error.where}: {error.detail}"))
    start = end = 0.0
    try:
        start, end = _time_range(args, gate)
    except ValueError as error:
        problems.append(FieldProblem(path="--since/--start/--end", message=str(error)))
    if gate is not None and sides is not None:
        for index, metric in enumerate(gate.spec.metrics):
            try:
                metric_queries(metric, sides, gate.spec.analysis.interval_seconds, f"spec.metrics[{index}]")
            except TemplateError as error:
                problems.append(FieldProblem(path=error.where, message=error.detail))
    token = None
    if args.bearer_token_file:
        try:
            token = Path(args.bearer_token_file).read_text().strip()
        except OSError as error:
            problems.append(FieldProblem(path="--bearer-token-file", message=f"cannot read it: {error.strerror}"))
    if args.prometheus and not args.prometheus.startswith(("http://", "https://")):
        problems.append(FieldProblem(path="--prometheus", message="must be an http:// or https:// URL"))
    if problems or gate is None or sides is None:
        raise InputError(problems)
    prometheus = gate.spec.prometheus
    if args.prometheus:
        prometheus = prometheus.model_copy(update={"address": args.prometheus})
    source = prometheus_source(prometheus, Credentials(bearer_token=token))
    return gate, sides, source, start, end


def _with_prometheus(document: object, address: str | None) -> object:
    """The gate with `--prometheus` as its spec.prometheus when it has none: the flag gives the address."""
    if not address or not isinstance(document, dict) or not isinstance(document.get("spec"), dict):
        return document
    spec = document["spec"]
    if spec.get("prometheus") is not None:
        return document
    return {**document, "spec": {**spec, "prometheus": {"address": address}}}


def _time_range(args: argparse.Namespace, gate: RobustnessGate | None) -> tuple[float, float]:
    if args.since and args.start:
        raise ValueError("give --since or --start, not both")
    end = _parse_time(args.end, "--end") if args.end else time.time()
    if args.start:
        start = _parse_time(args.start, "--start")
    else:
        since = args.since or (gate.spec.analysis.max_duration if gate else "30m")
        start = end - parse_duration(since)
    if start >= end:
        raise ValueError("the analysis start must be before its end")
    return start, end


def _parse_time(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{flag} {text!r} is neither RFC 3339 (2026-01-02T15:04:05Z) nor unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _report_error(output: str, kind: str, problems: list[FieldProblem]) -> int:
    if output == "json":
        document = {
            "apiVersion": "robustness.dev/v1alpha1",
            "kind": "AnalysisError",
            "error": {"type": kind, "problems": [p.model_dump() for p in problems]},
            "exitCode": EXIT_ERROR,
        }
        print(json.dumps(document, indent=2))
    else:
        title = {"invalid": "invalid input", "data": "data refused"}.get(kind, "Prometheus error")
        # Plain text: one unwrapped line per problem, easy to grep in CI logs.
        print(f"error: {title}", file=sys.stderr)
        for problem in problems:
            print(f"  {problem.path}: {problem.message}", file=sys.stderr)
    return EXIT_ERROR
