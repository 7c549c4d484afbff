"""`robustness-gate run`: the operator's composition root (Kubernetes client, controller, workers, kopf,
the verdict API, leader election, metrics).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from robustness_gate.api import (
    PrometheusSpec,
)
from robustness_gate.metrics.prometheus import Credentials, PrometheusSource, prometheus_source
from robustness_gate.metrics.source import MetricSource


def run_command(args: argparse.Namespace) -> int:
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
