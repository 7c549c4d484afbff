"""The only module that talks to the Kubernetes API.

Objects are read and written as plain JSON dicts (the API's own field names), so the pure target
code sees exactly what `kubectl get -o json` shows. API errors become `KubeError` with the status
code and the API's reason, never with request bodies (which could hold secrets).
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from robustness_gate.api import GROUP, PLURAL, VERSION
from robustness_gate.errors import KubeError
from robustness_gate.targets.deployment import REVISION
from robustness_gate.targets.model import Patch
from robustness_gate.telemetry_sink import NULL_TELEMETRY, TelemetrySink

if TYPE_CHECKING:
    from robustness_gate.watched import WatchedObjects

ROLLOUTS_GROUP = "argoproj.io"
ROLLOUTS_VERSION = "v1alpha1"
ROLLOUTS_PLURAL = "rollouts"
COMPONENT = "robustness-gate"
CONNECTION_POOL_SIZE = 100  # idle apiserver connections kept for reuse


def api_client(kubeconfig: str | None = None, context: str | None = None) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG or ~/.kube/config)."""
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    # Every gate thread shares this client. The default pool (5 per CPU) is soon too small: each request
    # beyond it opened, and then dropped, a TLS connection of its own.
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    return client.ApiClient(configuration)


def _error(error: ApiException, what: str) -> KubeError:
    reason = ""
    try:
        reason = str(json.loads(error.body or "{}").get("message", ""))
    except (ValueError, AttributeError):
        reason = ""
    return KubeError(f"{what}: HTTP {error.status} {error.reason}{': ' + reason if reason else ''}", error.status or 0)


def _json(response: Any) -> dict[str, Any]:
    data = json.loads(response.data)
    if not isinstance(data, dict):
        raise KubeError("unexpected API answer (not a JSON object)")
    return data


class Kube:
    """Reads targets, applies target patches, writes gate status and Events.

    With `telemetry`, every request is counted (by verb and kind) before it is sent, failed ones included.
    With `watched`, Deployments and their ReplicaSets are read from the watch streams when they are there.
    """

    def __init__(
        self, api: client.ApiClient, telemetry: TelemetrySink = NULL_TELEMETRY, watched: WatchedObjects | None = None
    ) -> None:
        self.api = api
        self.telemetry = telemetry
        self.watched = watched
        # resourceVersion of each gate after our last status write (a worker may then step on the watch's copy).
        self._written: dict[tuple[str, str], str] = {}
        self._written_lock = threading.Lock()
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.coordination = client.CoordinationV1Api(api)
        self.instance = socket.gethostname()

    def _count(self, verb: str, kind: str) -> None:
        self.telemetry.api_request(verb, kind)

    def _watched_read(self, kind: str, hit: bool) -> None:
        self.telemetry.watched_read(kind, hit)

    def uncached(self) -> Kube:
        """The same client reading everything from the API: what the controller acts on."""
        live = copy.copy(self)  # shares the client, counters and written versions
        live.watched = None
        return live

    # ------------------------------------------------------------ reads

    def gate(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The gate as stored now (each step starts from the stored status, not a cached copy)."""
        return self._custom_object("RobustnessGate", (GROUP, VERSION, PLURAL), namespace, name)

    def rollout(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._custom_object("Rollout", (ROLLOUTS_GROUP, ROLLOUTS_VERSION, ROLLOUTS_PLURAL), namespace, name)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.watched is not None:
            found = self.watched.deployment(namespace, name)
            self._watched_read("Deployment", found is not None)
            if found is not None:
                return found
        return self._get(
            "Deployment",
            namespace,
            name,
            lambda: self.apps.read_namespaced_deployment(name, namespace, _preload_content=False),
        )

    def replica_sets(self, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        """ReplicaSets owned by the Deployment (by owner UID, within its selector's labels)."""
        meta = deployment["metadata"]
        if self.watched is not None:
            owned = self.watched.replica_sets(meta["namespace"], meta["uid"])
            # Only a view that holds the Deployment's current revision is used: the watch may not have
            # delivered a ReplicaSet the Deployment controller has just made.
            current = (meta.get("annotations") or {}).get(REVISION)
            hit = any((rs["metadata"].get("annotations") or {}).get(REVISION) == current for rs in owned)
            self._watched_read("ReplicaSet", hit)
            if hit:
                return owned
        labels = (deployment.get("spec", {}).get("selector") or {}).get("matchLabels") or {}
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        self._count("list", "ReplicaSet")
        try:
            listing = _json(
                self.apps.list_namespaced_replica_set(
                    meta["namespace"], label_selector=selector, _preload_content=False
                )
            )
        except ApiException as error:
            raise _error(error, f"listing ReplicaSets of Deployment {meta['namespace']}/{meta['name']}") from None
        owned = []
        for item in listing.get("items") or []:
            owners = item.get("metadata", {}).get("ownerReferences") or []
            if any(owner.get("uid") == meta["uid"] and owner.get("controller") for owner in owners):
                owned.append(item)
        return owned

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded; errors name the Secret and key, never the value."""
        self._count("get", "Secret")
        try:
            secret = _json(self.core.read_namespaced_secret(name, namespace, _preload_content=False))
        except ApiException as error:
            raise _error(error, f"reading Secret {namespace}/{name}") from None
        encoded = (secret.get("data") or {}).get(key)
        if encoded is None:
            raise KubeError(f"Secret {namespace}/{name} has no key {key!r}", 404)
        try:
            return base64.b64decode(encoded).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            raise KubeError(f"Secret {namespace}/{name} key {key!r} is not valid UTF-8 text") from None

    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(
            "Lease",
            namespace,
            name,
            lambda: self.coordination.read_namespaced_lease(name, namespace, _preload_content=False),
        )

    def _custom_object(
        self, kind: str, resource: tuple[str, str, str], namespace: str, name: str
    ) -> dict[str, Any] | None:
        group, version, plural = resource
        return self._get(
            kind,
            namespace,
            name,
            lambda: self.custom.get_namespaced_custom_object(
                group, version, namespace, plural, name, _preload_content=False
            ),
        )

    def _get(self, kind: str, namespace: str, name: str, read: Callable[[], Any]) -> dict[str, Any] | None:
        """One object read from the API (counted); None when it does not exist."""
        self._count("get", kind)
        try:
            return _json(read())
        except ApiException as error:
            if error.status == 404:
                return None
            raise _error(error, f"reading {kind} {namespace}/{name}") from None

    # ------------------------------------------------------------ writes

    def write_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> bool:
        """Create or replace (optimistically, by resourceVersion); False when another replica wrote first."""
        body: Any = lease
        self._count("update" if lease["metadata"].get("resourceVersion") else "create", "Lease")
        try:
            if lease["metadata"].get("resourceVersion"):
                self.coordination.replace_namespaced_lease(name, namespace, body)
            else:
                self.coordination.create_namespaced_lease(namespace, body)
            return True
        except ApiException as error:
            if error.status in (409, 422):
                return False
            raise _error(error, f"writing Lease {namespace}/{name}") from None

    def apply(self, namespace: str, patch: Patch) -> None:
        """Send one target patch with its exact content type (merge or JSON patch)."""
        what = f"{patch.describe()} in {namespace}"
        self._count("patch", patch.target.kind)
        try:
            if patch.target.kind == "Rollout":
                if patch.subresource == "status":
                    self.custom.patch_namespaced_custom_object_status(
                        ROLLOUTS_GROUP,
                        ROLLOUTS_VERSION,
                        namespace,
                        ROLLOUTS_PLURAL,
                        patch.target.name,
                        patch.body,
                        _content_type=patch.content_type,
                    )
                else:
                    self.custom.patch_namespaced_custom_object(
                        ROLLOUTS_GROUP,
                        ROLLOUTS_VERSION,
                        namespace,
                        ROLLOUTS_PLURAL,
                        patch.target.name,
                        patch.body,
                        _content_type=patch.content_type,
                    )
            else:
                self.apps.patch_namespaced_deployment(
                    patch.target.name, namespace, patch.body, _content_type=patch.content_type
                )
        except ApiException as error:
            raise _error(error, what) from None

    def patch_gate_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self._count("patch", "RobustnessGate")
        with self._written_lock:
            self._written.pop((namespace, name), None)  # unknown until the API answers
        try:
            stored = _json(
                self.custom.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    {"status": status},
                    _content_type="application/merge-patch+json",
                    _preload_content=False,
                )
            )
        except ApiException as error:
            raise _error(error, f"writing status of RobustnessGate {namespace}/{name}") from None
        version = (stored.get("metadata") or {}).get("resourceVersion")
        if version:
            with self._written_lock:
                self._written[(namespace, name)] = str(version)

    def written_version(self, namespace: str, name: str) -> str | None:
        """The gate's resourceVersion right after our last status write to it, if that write succeeded."""
        with self._written_lock:
            return self._written.get((namespace, name))

    def forget_written(self, namespace: str, name: str) -> None:
        with self._written_lock:
            self._written.pop((namespace, name), None)

    def event(self, gate: dict[str, Any], type_: str, reason: str, message: str, key: str | None = None) -> None:
        """A core/v1 Event on the gate (what `kubectl describe rgate` shows). With `key`, the Event's name is
        derived from the gate's UID and the key, so posting it again finds it there and adds nothing."""
        meta = gate["metadata"]
        now = dt.datetime.now(dt.UTC)
        if key is None:
            naming: dict[str, str] = {"generateName": f"{meta['name']}."}
        else:
            digest = hashlib.sha256(f"{meta.get('uid')}/{key}".encode()).hexdigest()[:16]
            naming = {"name": f"{meta['name']}.{digest}"}
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {**naming, "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": gate.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": gate.get("kind", "RobustnessGate"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }
        self._count("create", "Event")
        try:
            self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as error:
            if key is not None and error.status == 409:
                return  # this very Event was posted before (an operator killed right after posting it)
            raise _error(error, f"creating an Event for RobustnessGate {meta['namespace']}/{meta['name']}") from None
