"""`robustness-gate`: analyze a canary from the command line, and generate the CRD.

Exit codes of `analyze`: 0 pass (promote), 1 fail (roll back), 2 inconclusive or not enough
data yet, 3 invalid input or a Prometheus error.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from robustness_gate import __version__
from robustness_gate.analysis import AnalysisReport, replay
from robustness_gate.api import (
    Action,
    FieldProblem,
    GateValidationError,
    PrometheusSpec,
    RobustnessGate,
    RobustnessGateStatus,
    Verdict,
    gate_document,
    parse_gate,
)
from robustness_gate.durations import format_duration, parse_duration
from robustness_gate.judge import MetricResult
from robustness_gate.metrics.prometheus import Credentials, PrometheusSource, prometheus_source
from robustness_gate.metrics.queries import metric_queries
from robustness_gate.metrics.source import REFUSED, MetricsError, MetricSource
from robustness_gate.metrics.templates import Sides, TemplateError

EXIT_PASS, EXIT_FAIL, EXIT_PENDING, EXIT_ERROR = 0, 1, 2, 3
EXIT_BY_ACTION = {
    Action.PROMOTE: EXIT_PASS,
    Action.ROLLBACK: EXIT_FAIL,
    Action.CONTINUE: EXIT_PENDING,
    Action.INCONCLUSIVE: EXIT_PENDING,
}
RESULT_KIND = "AnalysisResult"


class InputError(Exception):
    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


# Gates analysed at once by `run` (the kopf side, handlers.py, is imported only when the operator starts).
DEFAULT_CONCURRENCY = 16


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"{value} is out of range: give 1 to 256")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    handler: Any = args.handler
    return int(handler(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustness-gate", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--version", action="version", version=f"robustness-gate {__version__}")
    commands = parser.add_subparsers(dest="command")

    analyze_cmd = commands.add_parser("analyze", help="judge a canary against its baseline from Prometheus data")
    analyze_cmd.add_argument("-f", "--file", required=True, help="RobustnessGate YAML (or - for stdin)")
    analyze_cmd.add_argument("--prometheus", help="Prometheus base URL (default: spec.prometheus.address)")
    analyze_cmd.add_argument("--canary", required=True, help='label matchers of the canary, e.g. version="v2"')
    analyze_cmd.add_argument("--baseline", required=True, help='label matchers of the baseline, e.g. version="v1"')
    analyze_cmd.add_argument("--since", help="analyse the last DURATION (e.g. 30m); default: spec maxDuration")
    analyze_cmd.add_argument("--start", help="analysis start (RFC 3339 or unix seconds)")
    analyze_cmd.add_argument("--end", help="analysis end (RFC 3339 or unix seconds; default now)")
    analyze_cmd.add_argument("--bearer-token-file", help="file holding a bearer token for Prometheus")
    analyze_cmd.add_argument("-o", "--output", choices=("table", "json"), default="table")
    analyze_cmd.set_defaults(handler=_analyze_command)

    run_cmd = commands.add_parser("run", help="run the operator: watch RobustnessGates and act on their targets")
    run_cmd.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch only this namespace (repeatable; default: all)"
    )
    run_cmd.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then KUBECONFIG, ~/.kube/config)")
    run_cmd.add_argument(
        "--http-address",
        default="127.0.0.1:8080",
        help="verdict API (/api/v1/verdict/<namespace>/<gate>), /healthz and /readyz; '' to disable",
    )
    run_cmd.add_argument("--metrics-address", default="127.0.0.1:8090", help="Prometheus /metrics; '' to disable")
    run_cmd.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    run_cmd.add_argument("--log-format", default="text", choices=("text", "json"))
    run_cmd.add_argument(
        "--leader-elect", action="store_true", help="hold a Lease so that only one of several replicas acts"
    )
    run_cmd.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    run_cmd.add_argument("--lease-name", default="robustness-gate", help="name of the Lease")
    run_cmd.add_argument("--lease-duration", type=int, default=15, help="seconds a leader's Lease lasts")
    run_cmd.add_argument(
        "--concurrent-steps",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        help=f"gates analysed at once, on as many threads (default {DEFAULT_CONCURRENCY})",
    )
    run_cmd.set_defaults(handler=_run_command)

    check_cmd = commands.add_parser(
        "check", help="wait for a gate's verdict on a revision (Argo Rollouts job metrics): exit 0 pass, 1 fail"
    )
    check_cmd.add_argument("--gate", required=True, help="NAMESPACE/NAME of the RobustnessGate")
    check_cmd.add_argument("--revision", help="canary pod-template hash to wait for (default: any)")
    check_cmd.add_argument("--timeout", default="30m", help="give up after this long (exit 2); default 30m")
    check_cmd.add_argument("--poll", default="5s", help="how often to read the gate; default 5s")
    check_cmd.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, KUBECONFIG, ~/.kube/config)")
    check_cmd.set_defaults(handler=_check_command)

    status_cmd = commands.add_parser("status", help="show a gate's verdict table from the cluster")
    status_cmd.add_argument("name", help="RobustnessGate name")
    status_cmd.add_argument("-n", "--namespace", default="default")
    status_cmd.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config)")
    status_cmd.add_argument("-o", "--output", choices=("table", "json"), default="table")
    status_cmd.add_argument(
        "--queries", action="store_true", help="also show the PromQL each metric sends, per side, as rendered"
    )
    status_cmd.set_defaults(handler=_status_command)

    crds_cmd = commands.add_parser("crds", help="write (or --check) the generated CustomResourceDefinition")
    crds_cmd.add_argument("--check", action="store_true", help="exit 1 if the files on disk are stale")
    crds_cmd.add_argument("--root", default=".", help="repository root holding crds/ (default: .)")
    crds_cmd.set_defaults(handler=_crds_command)
    return parser


# ---------------------------------------------------------------- run


def _run_command(args: argparse.Namespace) -> int:
    # Imported here: `analyze` and `crds` need neither kopf nor the Kubernetes client.
    import socket
    import threading

    from prometheus_client import start_http_server

    from robustness_gate import logs
    from robustness_gate.controller import Controller
    from robustness_gate.handlers import run
    from robustness_gate.kube import Kube, api_client
    from robustness_gate.leader import LeaderElector
    from robustness_gate.notify import WebhookNotifier
    from robustness_gate.server import OperatorServer, watched_only
    from robustness_gate.telemetry import Telemetry
    from robustness_gate.watched import WatchedObjects
    from robustness_gate.workers import GateWorkers

    logs.configure(args.log_level, args.log_format)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = str(Path(args.kubeconfig).resolve())  # kopf logs in from the same file
    telemetry = Telemetry()
    watched = WatchedObjects()  # Deployments and ReplicaSets from kopf's watches: targets without a read per step
    kube = Kube(api_client(args.kubeconfig), telemetry, watched)

    def counted_source(spec: PrometheusSpec, credentials: Credentials) -> MetricSource:
        source = prometheus_source(spec, credentials)
        if isinstance(source, PrometheusSource):
            source.telemetry = telemetry  # robustness_gate_prometheus_queries_total
        return source

    webhook = os.environ.get("RG_NOTIFY_WEBHOOK_URL", "").strip()
    notifier = WebhookNotifier(webhook) if webhook else None
    elector = None
    if args.leader_elect:
        identity = f"{socket.gethostname()}-{os.getpid()}"
        elector = LeaderElector(kube, args.lease_namespace, args.lease_name, identity, args.lease_duration).start()
    leading = elector.leading.is_set if elector is not None else (lambda: True)
    controller = Controller(kube, source_factory=counted_source, telemetry=telemetry, notify=notifier)
    workers = GateWorkers(kube, controller, telemetry, leading, concurrency=args.concurrent_steps)
    ready = threading.Event()
    server = None
    if args.http_address:
        reader = watched_only(kube.gate, list(args.namespace))
        server = OperatorServer(args.http_address, reader, ready.is_set).start()
        logging.getLogger("robustness_gate").info("verdict API on http://%s", args.http_address)
    if args.metrics_address:
        host, _, port = args.metrics_address.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1", registry=telemetry.registry)
    try:
        run(workers, namespaces=list(args.namespace), ready=ready, watched=watched)
    finally:
        if server is not None:
            server.stop()
        if notifier is not None:
            notifier.close()
        if elector is not None:
            elector.stop()
    return 0


def _check_command(args: argparse.Namespace) -> int:
    """Poll the gate until it has a verdict on the revision: 0 pass, 1 fail, 2 timeout/inconclusive, 3 error."""
    from robustness_gate.kube import Kube, KubeError, api_client
    from robustness_gate.server import FAIL, INVALID, PASS, PENDING, verdict_document

    namespace, _, name = args.gate.partition("/")
    if not namespace or not name:
        print("--gate must be NAMESPACE/NAME", file=sys.stderr)
        return EXIT_ERROR
    try:
        timeout, poll = parse_duration(args.timeout), parse_duration(args.poll)
    except ValueError as error:
        print(f"--timeout/--poll: {error}", file=sys.stderr)
        return EXIT_ERROR
    kube = Kube(api_client(args.kubeconfig))
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            body = kube.gate(namespace, name)
        except KubeError as error:
            print(f"cannot read RobustnessGate {args.gate}: {error}", file=sys.stderr)
            body = None
            if error.status in (401, 403):
                return EXIT_ERROR
        if body is not None:
            document = verdict_document(body, args.revision)
            line = f"{document['verdict']}: {document['reason']}"
            if line != last:
                print(f"{args.gate} revision {document['revision']}: {line}", flush=True)
                last = line
            verdict = document["verdict"]
            if verdict == PASS:
                return EXIT_PASS
            if verdict == FAIL:
                return EXIT_FAIL
            if verdict == INVALID:
                return EXIT_ERROR
            if verdict != PENDING:
                return EXIT_PENDING
        elif not last:
            print(f"RobustnessGate {args.gate} not found yet", file=sys.stderr)
            last = "missing"
        if time.monotonic() + poll > deadline:
            print(f"no verdict within {args.timeout}", file=sys.stderr)
            return EXIT_PENDING
        time.sleep(poll)


def _status_command(args: argparse.Namespace) -> int:
    from robustness_gate.kube import Kube, KubeError, api_client

    console = Console(soft_wrap=False)
    try:
        body = Kube(api_client(args.kubeconfig)).gate(args.namespace, args.name)
    except KubeError as error:
        console.print(f"[red]{error}[/]", highlight=False)
        return EXIT_ERROR
    if body is None:
        console.print(f"[red]RobustnessGate {args.namespace}/{args.name} not found[/]", highlight=False)
        return EXIT_ERROR
    queries: dict[str, list[dict[str, str]]] | None = None
    if args.queries:
        try:
            queries = _recorded_queries(body)
        except (GateValidationError, TemplateError) as error:
            console.print(f"[red]cannot render the gate's queries: {error}[/]", highlight=False)
            return EXIT_ERROR
    if args.output == "json":
        document = dict(body.get("status") or {})
        if queries is not None:
            document["queries"] = queries
        print(json.dumps(document, indent=2))
        return 0
    print_gate_status(console, body)
    if queries is not None:
        print_queries(console, queries)
    return 0


def _recorded_queries(body: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The PromQL of the analysis the gate's status records, as the operator sends it; empty before one."""
    from robustness_gate.selectors import recorded_sides

    meta = body.get("metadata") or {}
    gate = parse_gate(gate_document(body, meta.get("name"), meta.get("namespace")))
    status = RobustnessGateStatus.model_validate(body.get("status") or {})
    sides = recorded_sides(gate, status)
    return {} if sides is None else rendered_queries(gate, sides)


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


# ---------------------------------------------------------------- analyze


def _analyze_command(args: argparse.Namespace) -> int:
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
        _print_table(console, gate, report, code)
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


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


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
            "start": _iso(report.start),
            "end": _iso(window_end),
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
            "at": _iso(report.end),
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


def _print_table(console: Console, gate: RobustnessGate, report: AnalysisReport, code: int) -> None:
    table = Table(
        title=f"{gate.metadata.namespace}/{gate.metadata.name}: look {report.looks} of {report.available}, "
        f"{format_duration(report.elapsed)} after {_iso(report.start)} (at {_iso(report.end)})",
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
    console.print(table)
    action = report.decision.action
    when = f" at look {report.looks} ({_iso(report.end)}, after {format_duration(report.elapsed)})"
    console.print(
        f"score [bold]{report.verdict.score:g}[/]  verdict [bold]{report.verdict.verdict.value}[/]  decision "
        f"[{_ACTION_STYLE[action]}]{action.value}[/]{when if report.decided else ''} (exit {code})"
    )
    console.print(f"reason: {report.decision.reason}", markup=False, highlight=False)
    note = replay_note(gate, report)
    if note:
        console.print(f"note: {note}", markup=False, highlight=False)


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


# ---------------------------------------------------------------- crds


def _crds_command(args: argparse.Namespace) -> int:
    from robustness_gate.crd import check_files, write_files

    root = Path(args.root)
    if args.check:
        stale = check_files(root)
        for path in stale:
            print(f"stale: {path} (run `robustness-gate crds` to regenerate)", file=sys.stderr)
        return 1 if stale else 0
    for path in write_files(root):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
