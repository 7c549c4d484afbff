"""The whole resource: metadata, spec and status."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from robustness_gate.api.base import API_VERSION, KIND, Model
from robustness_gate.api.spec import RobustnessGateSpec
from robustness_gate.api.status import RobustnessGateStatus


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = "gate"
    namespace: str = "default"


class RobustnessGate(Model):
    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: RobustnessGateSpec
    status: RobustnessGateStatus | None = None

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if value != API_VERSION:
            raise ValueError(f"apiVersion must be {API_VERSION}")
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value != KIND:
            raise ValueError(f"kind must be {KIND}")
        return value
