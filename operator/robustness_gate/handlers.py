"""kopf wiring: watch RobustnessGates and step each on a pool of worker threads; watch Deployments and
ReplicaSets into the targets' cache.

Handlers only start, wake and stop workers, and feed the cache. A worker steps on the stored status,
never on a stale watch copy: it steps on the watch's copy of its gate only when that copy is the very
version its own last status write produced, and reads the gate from the API otherwise. No finalizer
is used: deleting a gate stops its worker and leaves the target as it is, even while the operator is
down.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import kopf

from robustness_gate.api import GROUP, PLURAL, VERSION
from robustness_gate.watched import WatchedObjects
from robustness_gate.workers import GateWorkers

log = logging.getLogger("robustness_gate.handlers")


class NoDiffBase(kopf.DiffBaseStorage):
    """Keeps no "last handled" essence. kopf builds one for every watch event by deep-copying the whole
    object, status included, to find changes for on.create/update handlers; this operator has none."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def registry(workers: GateWorkers, watched: WatchedObjects | None = None) -> kopf.OperatorRegistry:
    """The kopf handlers, bound to these workers (and feeding `watched`, if given)."""
    reg = kopf.OperatorRegistry()

    @kopf.on.startup(registry=reg)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        # Watch exactly the given namespaces (or all): no CRD or Namespace scanning, which least-privilege
        # RBAC does not grant.
        settings.scanning.disabled = True
        # One line per watch event would drown the decisions; handler failures still show.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        settings.watching.server_timeout = 300
        # Only event handlers are registered, which need no "last handled" state to diff against.
        settings.persistence.diffbase_storage = NoDiffBase()

    @kopf.on.login(registry=reg)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the service account; elsewhere: the kubeconfig in KUBECONFIG (or ~/.kube/config).
        info: kopf.ConnectionInfo | None = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(
            **kwargs
        )
        return info

    # The event handlers are coroutines: kopf runs a plain function in a thread pool, a handoff per event that
    # cost more than these few microseconds of bookkeeping (a gate's own status write is an event too).
    @kopf.on.event(GROUP, VERSION, PLURAL, registry=reg)
    async def gate_event(type: str, body: kopf.Body, **_: Any) -> None:
        workers.seen(dict(body), deleted=type == "DELETED" or bool(body.metadata.get("deletionTimestamp")))

    if watched is not None:

        @kopf.on.event("apps", "v1", "deployments", registry=reg)
        async def deployment_event(type: str, body: kopf.Body, **_: Any) -> None:
            watched.deployment_seen(dict(body), deleted=type == "DELETED")

        @kopf.on.event("apps", "v1", "replicasets", registry=reg)
        async def replica_set_event(type: str, body: kopf.Body, **_: Any) -> None:
            watched.replica_set_seen(dict(body), deleted=type == "DELETED")

    @kopf.on.cleanup(registry=reg)
    def stop(**_: Any) -> None:
        workers.stop_all()

    return reg


def run(
    workers: GateWorkers,
    namespaces: list[str],
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
    watched: WatchedObjects | None = None,
) -> None:
    """Run the operator until it is signalled to stop; `ready` is set once gates are being watched."""
    kopf.run(
        registry=registry(workers, watched),
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        ready_flag=ready,
        stop_flag=stop,
    )
