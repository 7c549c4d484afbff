"""How a step writes what it found: the gate's status as a merge patch against what is stored (nothing
when nothing changed), its conditions, and Events about it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from robustness_gate.api import Condition, RobustnessGateStatus
from robustness_gate.durations import iso as iso  # re-exported: the controller's tests take it from here
from robustness_gate.telemetry_sink import NULL_TELEMETRY, TelemetrySink

log = logging.getLogger("robustness_gate.controller")


class StatusApi(Protocol):
    def patch_gate_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...

    def event(self, gate: dict[str, Any], type_: str, reason: str, message: str, key: str | None = None) -> None:
        """Post an Event; with `key`, at most one Event per gate and key, however often it is posted."""
        ...


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning `old` into `new`: keys that disappear are set to null."""
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif value != before:
            patch[key] = value
    return patch


@dataclass
class StatusWriter:
    """Writes status as a merge patch against what is stored, and Events about the gate."""

    kube: StatusApi
    body: dict[str, Any]
    namespace: str
    name: str
    stored: dict[str, Any]
    generation: Any
    clock: Callable[[], float]
    telemetry: TelemetrySink = NULL_TELEMETRY

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def condition(self, status: RobustnessGateStatus, type_: str, value: str, reason: str, message: str) -> None:
        now = iso(self.clock())
        for existing in status.conditions:
            if existing.type == type_:
                if existing.status != value:
                    existing.last_transition_time = now
                existing.status, existing.reason, existing.message = value, reason, message
                existing.observed_generation = self.generation
                return
        status.conditions.append(
            Condition(
                type=type_,
                status=value,
                reason=reason,
                message=message,
                last_transition_time=now,
                observed_generation=self.generation,
            )
        )

    def write(self, status: RobustnessGateStatus) -> bool:
        """Patch what changed; True when anything did."""
        with self.telemetry.step_part("status"):
            status.observed_generation = self.generation
            new = status.model_dump(by_alias=True, mode="json", exclude_none=True)
            patch = merge_patch(self.stored, new)
            if not patch:
                return False
            self.kube.patch_gate_status(self.namespace, self.name, patch)
            self.stored = new
            return True

    def event(self, type_: str, reason: str, message: str, key: str | None = None) -> None:
        try:
            with self.telemetry.step_part("status"):
                self.kube.event(self.body, type_, reason, message, key)
        except Exception as error:  # an Event is informative; failing to post one must not stop the gate
            log.warning("gate %s: could not post Event %s: %s", self.key, reason, error)
