"""Objects as the watch streams last delivered them: the gates' Deployments and ReplicaSets without an
API request per step.

A step reads its target from here and falls back to the API when the object is not (yet) here. Each
object is kept as compact JSON without `metadata.managedFields` (often half of it), and parsed on
read: a few KiB per object instead of tens as nested Python dicts, and nobody can change a copy
another thread is reading. Before it acts on a target the controller reads it from the API again.
"""

from __future__ import annotations

import json
import threading
from typing import Any

Key = tuple[str, str]


def _compact(body: dict[str, Any]) -> str:
    meta = {key: value for key, value in (body.get("metadata") or {}).items() if key != "managedFields"}
    return json.dumps({**body, "metadata": meta}, separators=(",", ":"))


def _controller_uid(body: dict[str, Any]) -> str | None:
    for owner in (body.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("controller"):
            return str(owner.get("uid"))
    return None


class WatchedObjects:
    """Deployments by namespace and name; ReplicaSets by namespace and controlling owner's UID."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._deployments: dict[Key, str] = {}
        self._replica_sets: dict[Key, tuple[str | None, str]] = {}  # (namespace, name) -> (owner UID, JSON)
        self._owned: dict[Key, set[str]] = {}  # (namespace, owner UID) -> ReplicaSet names

    def deployment_seen(self, body: dict[str, Any], deleted: bool) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        with self._lock:
            if deleted:
                self._deployments.pop(key, None)
            else:
                self._deployments[key] = _compact(body)

    def replica_set_seen(self, body: dict[str, Any], deleted: bool) -> None:
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        owner = None if deleted else _controller_uid(body)
        with self._lock:
            before = self._replica_sets.pop((namespace, name), None)
            if before is not None and before[0] is not None:
                names = self._owned.get((namespace, before[0]))
                if names is not None:
                    names.discard(name)
                    if not names:
                        del self._owned[(namespace, before[0])]
            if deleted:
                return
            self._replica_sets[(namespace, name)] = (owner, _compact(body))
            if owner is not None:
                self._owned.setdefault((namespace, owner), set()).add(name)

    def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            text = self._deployments.get((namespace, name))
        return None if text is None else dict(json.loads(text))

    def replica_sets(self, namespace: str, owner_uid: str) -> list[dict[str, Any]]:
        """The ReplicaSets this Deployment controls, as far as the watch has told (maybe none yet)."""
        with self._lock:
            names = sorted(self._owned.get((namespace, owner_uid), ()))
            texts = [self._replica_sets[(namespace, name)][1] for name in names]
        return [dict(json.loads(text)) for text in texts]

    def sizes(self) -> tuple[int, int]:
        with self._lock:
            return len(self._deployments), len(self._replica_sets)
