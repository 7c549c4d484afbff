"""`robustness-gate`: analyze a canary from the command line, and generate the CRD.

Exit codes of `analyze`: 0 pass (promote), 1 fail (roll back), 2 inconclusive or not enough
data yet, 3 invalid input or a Prometheus error.

One module per command group (run, analyze, the cluster commands) and the rendering apart.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from robustness_gate import __version__
from robustness_gate.cli.analyze import analyze_command
from robustness_gate.cli.cluster import check_command, status_command
from robustness_gate.cli.common import EXIT_ERROR, positive_int
from robustness_gate.cli.run import run_command
from robustness_gate.defaults import DEFAULT_CONCURRENCY


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
    analyze_cmd.set_defaults(handler=analyze_command)

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
        type=positive_int,
        default=DEFAULT_CONCURRENCY,
        help=f"gates analysed at once, on as many threads (default {DEFAULT_CONCURRENCY})",
    )
    run_cmd.set_defaults(handler=run_command)

    check_cmd = commands.add_parser(
        "check", help="wait for a gate's verdict on a revision (Argo Rollouts job metrics): exit 0 pass, 1 fail"
    )
    check_cmd.add_argument("--gate", required=True, help="NAMESPACE/NAME of the RobustnessGate")
    check_cmd.add_argument("--revision", help="canary pod-template hash to wait for (default: any)")
    check_cmd.add_argument("--timeout", default="30m", help="give up after this long (exit 2); default 30m")
    check_cmd.add_argument("--poll", default="5s", help="how often to read the gate; default 5s")
    check_cmd.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, KUBECONFIG, ~/.kube/config)")
    check_cmd.set_defaults(handler=check_command)

    status_cmd = commands.add_parser("status", help="show a gate's verdict table from the cluster")
    status_cmd.add_argument("name", help="RobustnessGate name")
    status_cmd.add_argument("-n", "--namespace", default="default")
    status_cmd.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, ~/.kube/config)")
    status_cmd.add_argument("-o", "--output", choices=("table", "json"), default="table")
    status_cmd.add_argument(
        "--queries", action="store_true", help="also show the PromQL each metric sends, per side, as rendered"
    )
    status_cmd.set_defaults(handler=status_command)

    crds_cmd = commands.add_parser("crds", help="write (or --check) the generated CustomResourceDefinition")
    crds_cmd.add_argument("--check", action="store_true", help="exit 1 if the files on disk are stale")
    crds_cmd.add_argument("--root", default=".", help="repository root holding crds/ (default: .)")
    crds_cmd.set_defaults(handler=_crds_command)
    return parser


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
