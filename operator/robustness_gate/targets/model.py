"""PURE: the data every target kind produces: what it observed and which patches to send."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

Kind = Literal["Rollout", "Deployment"]


@dataclass(frozen=True)
class ObjectRef:
    kind: Kind
    name: str


@dataclass(frozen=True)
class Patch:
    """One PATCH request: a merge patch (dict) or a JSON patch (list of operations)."""

    target: ObjectRef
    body: dict[str, Any] | list[dict[str, Any]]
    content_type: str = MERGE_PATCH
    subresource: Literal["status"] | None = None

    def describe(self) -> str:
        where = f"{self.target.kind}/{self.target.name}" + (f" ({self.subresource})" if self.subresource else "")
        kind = "merge patch" if self.content_type == MERGE_PATCH else "JSON patch"
        return f"{kind} on {where}"


@dataclass(frozen=True)
class Observation:
    """What a target looks like now.

    `revision` identifies the canary (a pod-template hash) when one is in progress, else None.
    `state` fingerprints the fields a pending operation depends on: an operation decided in one
    state is applied later (after a restart) only if the state is unchanged.
    """

    revision: str | None
    stable_revision: str | None
    variables: dict[str, str] = field(default_factory=dict)
    state: str = ""
    message: str = ""

    @property
    def in_progress(self) -> bool:
        return self.revision is not None


class TargetError(Exception):
    """The target cannot be analysed as configured (wrong kind of strategy, missing object, ...)."""
