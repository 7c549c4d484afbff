"""The commands that read gates from the cluster: `check` (an Argo Rollouts job's wait for a verdict) and
`status` (a gate's verdict table, and with --queries the PromQL its analysis sends).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from rich.console import Console

from robustness_gate.api import (
    GateValidationError,
    RobustnessGateStatus,
    gate_document,
    parse_gate,
)
from robustness_gate.cli.common import EXIT_ERROR, EXIT_FAIL, EXIT_PASS, EXIT_PENDING
from robustness_gate.cli.render import print_gate_status, print_queries, rendered_queries
from robustness_gate.durations import parse_duration
from robustness_gate.metrics.templates import TemplateError


def check_command(args: argparse.Namespace) -> int:
    """Poll the gate until it has a verdict on the revision: 0 pass, 1 fail, 2 timeout/inconclusive, 3 error."""
    from robustness_gate.errors import KubeError
    from robustness_gate.kube import Kube, api_client
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


def status_command(args: argparse.Namespace) -> int:
    from robustness_gate.errors import KubeError
    from robustness_gate.kube import Kube, api_client

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
            queries = recorded_queries(body)
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


def recorded_queries(body: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    """The PromQL of the analysis the gate's status records, as the operator sends it; empty before one."""
    from robustness_gate.selectors import recorded_sides

    meta = body.get("metadata") or {}
    gate = parse_gate(gate_document(body, meta.get("name"), meta.get("namespace")))
    status = RobustnessGateStatus.model_validate(body.get("status") or {})
    sides = recorded_sides(gate, status)
    return {} if sides is None else rendered_queries(gate, sides)
