"""Parsing a gate document, and its problems as field paths and fixes a user can act on."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from robustness_gate.api.base import Model
from robustness_gate.api.resource import RobustnessGate


class FieldProblem(Model):
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class GateValidationError(ValueError):
    """One entry per problem, each naming the field path and what is allowed."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(problem) for problem in problems))


def gate_document(body: dict[str, Any], name: Any, namespace: Any) -> dict[str, Any]:
    """The part of a RobustnessGate object that parse_gate reads: apiVersion, kind, spec, name and namespace
    (status, managedFields and the other metadata left out)."""
    return {key: body.get(key) for key in ("apiVersion", "kind", "spec")} | {
        "metadata": {"name": name, "namespace": namespace}
    }


def parse_gate(document: Any) -> RobustnessGate:
    """Validate a decoded YAML/JSON document into a RobustnessGate or raise GateValidationError."""
    if not isinstance(document, dict):
        raise GateValidationError(
            [FieldProblem(path="(document)", message="expected a RobustnessGate mapping at the top level")]
        )
    try:
        return RobustnessGate.model_validate(document)
    except ValidationError as error:
        raise GateValidationError(_problems(error)) from None


def _problems(error: ValidationError) -> list[FieldProblem]:
    problems = []
    for item in error.errors(include_url=False):
        location = tuple(item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            allowed = _allowed_fields(location[:-1])
            message = "unknown field" + (f"; allowed here: {', '.join(allowed)}" if allowed else "")
        elif item["type"] == "string_pattern_mismatch" and str(location[-1]) in _DURATION_FIELDS:
            message = "not a duration; write it like 30s, 5m, 1h30m or 250ms"
        problems.append(FieldProblem(path=_path(location), message=message))
    return problems


_DURATION_FIELDS = {"interval", "minDuration", "maxDuration", "timeout"}


def _path(location: tuple[Any, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(document)"


def _allowed_fields(location: tuple[Any, ...]) -> list[str]:
    """Walk the models along a location to list the field names accepted there."""
    model: Any = RobustnessGate
    for part in location:
        if isinstance(part, int):
            continue
        field = next((f for name, f in model.model_fields.items() if (f.alias or name) == part or name == part), None)
        if field is None:
            return []
        model = _model_of(field.annotation)
        if model is None:
            return []
    return sorted((f.alias or name) for name, f in model.model_fields.items())


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
