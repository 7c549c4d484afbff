"""A throwaway local Kubernetes cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok fake
nodes and (optionally) the Argo Rollouts controller, all on 127.0.0.1 with free ports.

The binaries come from ``hack/cluster/build.sh`` (``make cluster-build``) and are looked up in :func:`testbin`.
Everything the cluster writes (PKI, etcd data, logs, the admin kubeconfig and ``state.json`` with the pids) lives in
one work directory, and every process has that directory on its command line, so leftovers can always be found.

The parts: ``config`` (versions, binaries, names), ``pki`` (certificates, kubeconfig), ``components`` (each
component's command line), ``bootstrap`` (readiness probes, Nodes, CRDs), ``processes`` (launch records, state.json,
stopping, leftovers) and ``cluster`` (the start-up order).

Library use::

    with LocalCluster(workdir=Path("/tmp/c1")) as c:   # start() ... stop()
        client = kubernetes.config.new_client_from_config(str(c.kubeconfig))

Command line (the processes outlive ``up``; ``down`` stops them from ``state.json``)::

    python -m hack.localcluster up [--dir DIR] [--no-rollouts] [--nodes N]
    python -m hack.localcluster status [--dir DIR]
    python -m hack.localcluster down [--dir DIR]
"""

from __future__ import annotations

from hack.localcluster.cluster import LocalCluster
from hack.localcluster.config import COMPONENTS, DEFAULT_DIR, ClusterError, testbin, versions
from hack.localcluster.processes import find_leftovers

__all__ = ["COMPONENTS", "DEFAULT_DIR", "ClusterError", "LocalCluster", "find_leftovers", "testbin", "versions"]
