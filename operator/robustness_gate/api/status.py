"""What the operator writes: the RobustnessGate's status (metrics, decision, conditions)."""

from __future__ import annotations

from pydantic import Field

from robustness_gate.api.base import Model
from robustness_gate.api.enums import Action, Operation, Phase, Verdict


class FeatureStatus(Model):
    """One feature of a metric over many: its verdict and numbers, as a metric's."""

    name: str
    verdict: Verdict
    canary: float | None = None
    baseline: float | None = None
    p_value: float | None = Field(None, description="Anytime-valid p-value of the feature's test.")
    effect: float | None = None
    message: str = ""


class MetricStatus(Model):
    name: str
    verdict: Verdict
    canary: float | None = Field(None, description="Canary value: rate, share of slow requests, or value.")
    baseline: float | None = Field(None, description="Baseline value, same unit.")
    lower: float | None = Field(None, description="Lower confidence bound of the tested quantity.")
    upper: float | None = Field(None, description="Upper confidence bound of the tested quantity.")
    p_value: float | None = Field(None, description="Anytime-valid p-value of the comparison.")
    effect: float | None = Field(None, description="Effect size (rate ratio, PSI, ...).")
    slo_met: bool | None = Field(None, description="True when the SLO is met with confidence.")
    dry_run: bool = False
    look: int | None = Field(
        None, description="The look whose data gave these numbers: the first that showed a failure, else the last."
    )
    message: str = ""
    reference_canary: float | None = Field(None, description="Drift with a reference: the canary's effect from it.")
    reference_baseline: float | None = Field(None, description="Drift with a reference: the baseline's effect from it.")
    features: list[FeatureStatus] | None = Field(
        None, description="A metric over many features: every judged feature, failures first."
    )


class DecisionStatus(Model):
    action: Action
    reason: str
    at: str | None = None
    revision: str | None = Field(None, description="The canary revision the decision is about.")
    operation: Operation = Field(Operation.NONE, description="What is done to the target.")
    applied: bool = Field(False, description="True once the target was changed (or nothing had to change).")
    dry_run: bool = Field(False, description="Recorded only; the target was left as it was.")
    target_state: str | None = Field(
        None, description="The target's state when decided; a pending operation is applied only while it holds."
    )


class Condition(Model):
    type: str
    status: str = Field(json_schema_extra={"enum": ["True", "False", "Unknown"]})
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class RobustnessGateStatus(Model):
    phase: Phase = Phase.PENDING
    revision: str | None = Field(None, description="Canary revision under analysis.")
    stable_revision: str | None = None
    started_at: str | None = None
    last_look: str | None = None
    looks: int = 0
    score: float | None = None
    verdict: Verdict | None = None
    metrics: list[MetricStatus] = Field(default_factory=list)
    decision: DecisionStatus | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: int | None = None
    consecutive_errors: int = Field(0, description="Looks in a row that could not read metrics.")
    held_for_errors: bool = Field(False, description="The target was paused by onError: Pause; resumed on recovery.")
    message: str = ""
