"""Talking to the cluster while it comes up: a small HTTPS client (the kubernetes package is slow to import),
health probes, readiness checks polled together, and the API objects the cluster needs (Nodes, CRDs)."""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hack.localcluster.config import FIELD_MANAGER, KWOK_NODE_ANNOTATION, ClusterError


class Api:
    """Just enough of a Kubernetes REST client for bootstrapping."""

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        self.port = port
        self.ctx = ctx

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=5)
        try:
            headers = {"Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed

    def ok(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        accept: Iterable[int] = (200, 201),
    ) -> Any:
        status, parsed = self.request(method, path, body, content_type)
        if status not in tuple(accept):
            raise RuntimeError(f"{method} {path} -> HTTP {status}: {str(parsed)[:300]}")
        return parsed


def https_get(port: int, path: str, ctx: ssl.SSLContext) -> tuple[int, str]:
    return _get(http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=2), path)


def http_get(port: int, path: str) -> tuple[int, str]:
    return _get(http.client.HTTPConnection("127.0.0.1", port, timeout=2), path)


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, str]:
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def ok(response: tuple[int, str], want: str | None = "ok") -> bool:
    """For probes: True on HTTP 200 (with body ``want``); otherwise raises, so the timeout message shows why."""
    status, body = response
    if status != 200 or (want is not None and body.strip() != want):
        # /readyz and /healthz list every check; the failing ones start with "[-]".
        failing = [line for line in body.splitlines() if line.startswith("[-]")]
        raise RuntimeError(f"HTTP {status}: {'; '.join(failing) if failing else body.strip()[:300]}")
    return True


def condition(obj: Any, kind: str) -> bool:
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conds)


def in_background(component: str, what: str, fn: Callable[[], None], log: Path | None = None) -> Callable[[], bool]:
    """Runs fn in a thread while the main thread keeps polling the processes; the returned probe is True once fn
    has finished and raises ClusterError if it failed."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the main thread by probe()
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"localcluster-{component}", daemon=True)
    thread.start()

    def probe() -> bool:
        if thread.is_alive():
            return False
        if errors:
            if isinstance(errors[0], ClusterError):
                raise errors[0]
            raise ClusterError(component, f"{what} failed: {errors[0]!r}", log) from errors[0]
        return True

    return probe


@dataclass
class Check:
    """One readiness condition, polled until ``probe`` returns True; failures are blamed on ``component``."""

    name: str  # key in LocalCluster.timings
    component: str
    probe: Callable[[], bool]
    since: float  # monotonic start of what is being timed
    on_ready: Callable[[], list[Check]] | None = None  # may start the next component and add its checks
    last_error: str = ""


# ---------------------------------------------------------------------------------------------------------------------
# API objects


def node_manifest(name: str) -> dict[str, Any]:
    # Node status may be set on create (that is how kubelets register); kwok's node-initialize stage then
    # adds the Ready conditions, the InternalIP (--node-ip) and the kubelet port (--node-port).
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", KWOK_NODE_ANNOTATION[0]: KWOK_NODE_ANNOTATION[1]},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {"allocatable": resources, "capacity": resources},
    }


def nodes_ready(api: Api, count: int) -> bool:
    items = api.ok("GET", "/api/v1/nodes")["items"]
    not_ready = [n["metadata"]["name"] for n in items if not condition(n, "Ready")]
    if len(items) < count or not_ready:
        raise RuntimeError(f"{len(items)} of {count} nodes exist; not Ready: {not_ready}")
    return True


def apply_crds(api: Api, directory: Path) -> list[str]:
    # Server-side apply: the CRDs are too big for client-side apply's last-applied annotation.
    names: list[str] = []
    for path in sorted(directory.glob("*-crd.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            name = doc["metadata"]["name"]
            api.ok(
                "PATCH",
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}?fieldManager={FIELD_MANAGER}&force=true",
                doc,
                "application/apply-patch+yaml",
            )
            names.append(name)
    return names


def crds_established(api: Api, names: list[str]) -> bool:
    for name in names:
        crd = api.ok("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        if not condition(crd, "Established"):
            raise RuntimeError(f"CRD {name} is not Established yet")
    return True
