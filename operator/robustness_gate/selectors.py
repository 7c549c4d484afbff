"""PURE: a gate's selectors rendered into the two sides of its queries, and the spec checks the schema
cannot make (templates that render, selectors that tell the sides apart)."""

from __future__ import annotations

from robustness_gate.api import RobustnessGate, RobustnessGateStatus
from robustness_gate.metrics.queries import metric_queries
from robustness_gate.metrics.templates import Sides, TemplateError, escape_string, render
from robustness_gate.targets.argo_rollout import DEFAULT_BASELINE_SELECTOR as ARGO_BASELINE_SELECTOR
from robustness_gate.targets.argo_rollout import DEFAULT_CANARY_SELECTOR as ARGO_CANARY_SELECTOR
from robustness_gate.targets.deployment import DEFAULT_BASELINE_SELECTOR as DEPLOYMENT_BASELINE_SELECTOR
from robustness_gate.targets.deployment import DEFAULT_CANARY_SELECTOR as DEPLOYMENT_CANARY_SELECTOR
from robustness_gate.targets.live import LiveTarget

# Placeholder values used to check selector templates before any target exists.
_PROBE_VARIABLES = {
    "canaryHash": "canary-probe",
    "stableHash": "stable-probe",
    "canaryName": "canary-probe",
    "stableName": "stable-probe",
    "namespace": "namespace-probe",
}


def _selector_templates(gate: RobustnessGate, defaults: tuple[str, str]) -> tuple[str, str]:
    selectors = gate.spec.selectors
    return selectors.canary or defaults[0], selectors.baseline or defaults[1]


def _render_sides(canary: str, baseline: str, variables: dict[str, str]) -> Sides:
    escaped = {key: escape_string(value) for key, value in variables.items()}
    rendered = render(canary, escaped, "spec.selectors.canary"), render(baseline, escaped, "spec.selectors.baseline")
    try:
        return Sides.parse(*rendered)
    except TemplateError as error:
        if "identical" in error.detail or "overlapping" in error.detail:
            raise TemplateError(
                "spec.selectors",
                f"canary {rendered[0]!r} and baseline {rendered[1]!r} select the same series ({error.detail}); "
                "tell them apart with {{canaryHash}} and {{stableHash}}",
            ) from None
        raise TemplateError(f"spec.selectors ({error.where})", error.detail) from None


def target_sides(gate: RobustnessGate, target: LiveTarget) -> Sides:
    canary, baseline = _selector_templates(gate, target.default_selectors)
    return _render_sides(canary, baseline, target.observation.variables)


def recorded_sides(gate: RobustnessGate, status: RobustnessGateStatus) -> Sides | None:
    """The sides of the analysis that `status` records, rendered as the operator renders them from its target
    (None before an analysis started); for showing its queries."""
    if not status.revision or not status.stable_revision:
        return None
    target = gate.spec.target_ref
    defaults = (
        (ARGO_CANARY_SELECTOR, ARGO_BASELINE_SELECTOR)
        if target.kind == "Rollout"
        else (DEPLOYMENT_CANARY_SELECTOR, DEPLOYMENT_BASELINE_SELECTOR)
    )
    stable = gate.spec.stable_ref.name if gate.spec.stable_ref is not None else target.name
    variables = {
        "canaryHash": status.revision,
        "stableHash": status.stable_revision,
        "canaryName": target.name,
        "stableName": stable,
        "namespace": gate.metadata.namespace,
    }
    canary, baseline = _selector_templates(gate, defaults)
    return _render_sides(canary, baseline, variables)


def semantic_problems(gate: RobustnessGate) -> list[str]:
    """What the schema cannot check: templates that render, selectors that tell the sides apart."""
    problems: list[str] = []
    defaults = ('pod_template_hash="{{canaryHash}}"', 'pod_template_hash="{{stableHash}}"')
    canary, baseline = _selector_templates(gate, defaults)
    probe = dict(_PROBE_VARIABLES)
    if gate.spec.stable_ref is None:
        # A Rollout or a single Deployment is both sides: its name cannot tell them apart.
        probe["canaryName"] = probe["stableName"] = gate.spec.target_ref.name
    sides: Sides | None = None
    try:
        sides = _render_sides(canary, baseline, probe)
    except TemplateError as error:
        problems.append(f"{error.where}: {error.detail}")
    if sides is not None:
        for index, metric in enumerate(gate.spec.metrics):
            try:
                metric_queries(metric, sides, gate.spec.analysis.interval_seconds, f"spec.metrics[{index}]")
            except TemplateError as error:
                problems.append(f"{error.where}: {error.detail}")
    return problems
