"""One gate's control loop: observe the target, analyse the canary, decide, act, record.

Everything needed to resume lives in the gate's status: the revision under analysis, when its
analysis started, and a decision that is written *before* the target is changed and marked
applied after. A restarted operator recomputes the analysis from Prometheus and finishes (or
skips) a pending operation, so each revision gets at most one operation.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from robustness_gate.actuation import Actuator, GateKube
from robustness_gate.analysis import AnalysisReport, replay
from robustness_gate.api import (
    Action,
    DecisionStatus,
    GateValidationError,
    MetricSpec,
    OnError,
    Operation,
    Phase,
    RobustnessGate,
    RobustnessGateStatus,
    gate_document,
    parse_gate,
)
from robustness_gate.durations import iso, parse_iso
from robustness_gate.metrics.gate_sources import GateKey, GateSources, SourceFactory
from robustness_gate.metrics.prometheus import Credentials, prometheus_source
from robustness_gate.metrics.source import REFUSED, ErrorKind, Fetched, MetricsError, MetricSource, Window, fetch_many
from robustness_gate.metrics.templates import Sides, TemplateError
from robustness_gate.notify import Notice
from robustness_gate.outcomes import pauses, phase_for
from robustness_gate.selectors import semantic_problems, target_sides
from robustness_gate.series import MetricData
from robustness_gate.status_writer import StatusWriter
from robustness_gate.targets.live import LiveTarget, read_target
from robustness_gate.targets.model import TargetError
from robustness_gate.telemetry_sink import NULL_TELEMETRY, TelemetrySink

log = logging.getLogger("robustness_gate.controller")


@dataclass
class Controller:
    """Runs one step of a gate at a time; `step` returns how long to wait before the next one."""

    kube: GateKube
    source_factory: SourceFactory = prometheus_source
    clock: Callable[[], float] = time.time
    invalid_recheck_seconds: float = 30.0
    # Prometheus needs a moment to scrape the last interval before a look reads it.
    look_delay_seconds: float = 1.0
    logger: logging.Logger = field(default=log)
    telemetry: TelemetrySink = NULL_TELEMETRY
    notify: Callable[[Notice], None] | None = None
    sources: GateSources = field(init=False, repr=False)
    actuator: Actuator = field(init=False, repr=False)
    # Per gate UID: its spec as JSON, and the gate parsed from it (None) with what is wrong (or "").
    _spec_memo: dict[str, tuple[str, RobustnessGate | None, str]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.sources = GateSources(self.source_factory, self.clock)
        self.actuator = Actuator(self.kube, self.clock, self.logger, self.telemetry, self.notify)

    def forget(self, namespace: str, name: str, uid: str) -> None:
        """The gate is deleted or no longer stepped here: close its Prometheus connection, drop its looks."""
        self.sources.forget(GateKey(namespace, name, uid))
        self._spec_memo.pop(uid, None)

    def close(self) -> None:
        """Operator stop: close every gate's Prometheus connection."""
        self.sources.close()

    # ------------------------------------------------------------ entry point

    def step(self, body: dict[str, Any]) -> float:
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        generation = meta.get("generation")
        old_status = dict(body.get("status") or {})
        previous = self._previous_status(old_status, namespace, name)
        writer = StatusWriter(self.kube, body, namespace, name, old_status, generation, self.clock, self.telemetry)
        gate, problem = self._prepared(body, namespace, name)
        if gate is None:
            return self._invalid(writer, previous, "InvalidSpec", problem)
        try:
            with self.telemetry.step_part("read"):
                target = read_target(self.kube, namespace, gate.spec)
        except TargetError as problem:
            return self._invalid(writer, previous, "TargetNotFound", str(problem))
        return self._reconcile(gate, target, previous, writer)

    def _prepared(self, body: dict[str, Any], namespace: str, name: str) -> tuple[RobustnessGate | None, str]:
        """The validated gate, or what is wrong with its spec.

        Kept per gate until its spec changes: the same spec is stepped every interval, and its checks render
        every query. Keeping the same RobustnessGate also lets the gate's source keep its queries.
        """
        document = gate_document(body, name, namespace)
        uid = str((body.get("metadata") or {}).get("uid", ""))
        try:
            fingerprint = json.dumps(document, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            fingerprint = ""  # not JSON: validation below names the field
        kept = self._spec_memo.get(uid)
        if fingerprint and kept is not None and kept[0] == fingerprint:
            return kept[1], kept[2]
        gate: RobustnessGate | None = None
        try:
            gate = parse_gate(document)
        except GateValidationError as error:
            problem = "; ".join(f"{problem.path}: {problem.message}" for problem in error.problems)
        else:
            problem = "; ".join(semantic_problems(gate))
            if problem:
                gate = None
        if fingerprint:
            self._spec_memo[uid] = (fingerprint, gate, problem)
        return gate, problem

    # ------------------------------------------------------------ states

    def _previous_status(self, raw: dict[str, Any], namespace: str, name: str) -> RobustnessGateStatus:
        try:
            return RobustnessGateStatus.model_validate(raw)
        except ValidationError:
            self.logger.warning("gate %s/%s: unreadable status; starting from a fresh one", namespace, name)
            return RobustnessGateStatus()

    def _invalid(self, writer: StatusWriter, previous: RobustnessGateStatus, reason: str, message: str) -> float:
        status = previous.model_copy(deep=True)
        status.phase = Phase.INVALID
        status.message = message
        writer.condition(status, "Valid", "False", reason, message)
        writer.condition(status, "Analyzing", "False", reason, "the gate is invalid")
        if writer.write(status) and previous.message != message:
            writer.event("Warning", reason, message)
            self.logger.warning("gate %s: %s", writer.key, message)
        return self.invalid_recheck_seconds

    def _reconcile(
        self, gate: RobustnessGate, target: LiveTarget, previous: RobustnessGateStatus, writer: StatusWriter
    ) -> float:
        interval = gate.spec.analysis.interval_seconds
        observation = target.observation
        status = previous.model_copy(deep=True)
        writer.condition(status, "Valid", "True", "Valid", f"target {target.description}")
        decision = status.decision
        if (
            decision is not None
            and decision.action is not Action.CONTINUE
            and not decision.applied
            and decision.revision == status.revision
        ):
            # A decision taken before a restart whose operation may not have been sent.
            self.actuator.finish(gate, status, decision, writer, resumed=True)
            return interval
        if observation.revision is None:
            if status.phase in (Phase.ANALYZING, Phase.INVALID, Phase.PENDING, Phase.ERROR):
                ended = status.phase is Phase.ANALYZING and status.revision
                status.phase = Phase.PENDING
                if ended:
                    # A canary that comes back later (a retry) gets a fresh analysis, not this one's clock.
                    status.started_at = None
                    status.message = f"canary {status.revision} ended without a decision: {observation.message}"
                elif not status.message.startswith(f"canary {status.revision} ended without a decision"):
                    status.message = observation.message
                writer.condition(status, "Analyzing", "False", "NoCanary", observation.message)
                if writer.write(status) and ended:
                    writer.event("Normal", "AnalysisEnded", status.message)
            else:
                writer.write(status)  # a decided gate still acknowledges spec edits (observedGeneration)
            return interval
        if observation.revision == status.revision and decision is not None and decision.action is not Action.CONTINUE:
            if status.phase is Phase.INVALID:  # fixed after a decision: show the decision again
                status.phase = phase_for(decision)
            writer.write(status)
            return interval
        if (
            decision is not None
            and decision.action is not Action.CONTINUE
            and observation.revision == status.stable_revision
            and observation.stable_revision == status.revision
        ):
            # Our own rollback in progress (the old template coming back): not a new canary.
            writer.write(status)
            return interval
        if observation.revision != status.revision or status.started_at is None:
            return self._start(gate, observation.revision, observation.stable_revision, target, status, writer)
        return self._look(gate, target, status, writer)

    def _start(
        self,
        gate: RobustnessGate,
        revision: str,
        stable: str | None,
        target: LiveTarget,
        status: RobustnessGateStatus,
        writer: StatusWriter,
    ) -> float:
        now = self.clock()
        fresh = RobustnessGateStatus(
            phase=Phase.ANALYZING,
            revision=revision,
            stable_revision=stable,
            started_at=iso(now),
            looks=0,
            conditions=status.conditions,
            message=f"analysing {target.observation.message}",
        )
        writer.condition(fresh, "Analyzing", "True", "Analyzing", f"analysing canary {revision}")
        writer.write(fresh)
        writer.event("Normal", "AnalysisStarted", f"analysing canary {revision} against stable {stable}")
        self.logger.info("gate %s: analysing canary %s against %s", writer.key, revision, stable)
        # Looks land on whole intervals after the (second-rounded) start time.
        return max(0.0, parse_iso(fresh.started_at or iso(now)) + gate.spec.analysis.interval_seconds - now) + (
            self.look_delay_seconds
        )

    def _look(
        self, gate: RobustnessGate, target: LiveTarget, status: RobustnessGateStatus, writer: StatusWriter
    ) -> float:
        spec = gate.spec
        interval = spec.analysis.interval_seconds
        start = parse_iso(status.started_at or iso(self.clock()))
        now = self.clock() - self.look_delay_seconds
        next_look = start + (math.floor((now - start) / interval + 1e-9) + 1) * interval
        delay = max(0.5, next_look - now)
        # Back from Invalid (a fixed spec) or another state: this revision is being analysed.
        status.phase = Phase.PAUSED if status.held_for_errors else Phase.ANALYZING
        writer.condition(status, "Analyzing", "True", "Analyzing", f"analysing canary {status.revision}")
        if now - start < interval:
            writer.write(status)
            return delay
        try:
            sides = target_sides(gate, target)
        except TemplateError as error:
            return self._invalid(writer, status, "InvalidSpec", f"{error.where}: {error.detail}")
        gate_key = GateKey(writer.namespace, writer.name, str((writer.body.get("metadata") or {}).get("uid")))
        try:
            # The gate's source lives across steps: its connection, and the looks it fetched already.
            # Judging's CPU time is the analysis's less the queries', which count to "prometheus".
            with (
                self.sources.lease(gate_key, spec.prometheus, self._credentials(gate), interval) as source,
                self.telemetry.step_part("judge"),
            ):
                # Looks already judged (Continue) are not judged again: the analysis goes on from the next one.
                report = replay(gate, sides, _TimedSource(source, self.telemetry), start, now, status.looks + 1)
        except MetricsError as error:
            if error.kind == REFUSED:
                # Data that cannot be right is the gate's problem, not Prometheus': no verdict, no action.
                return self._invalid(writer, status, "InvalidData", str(error))
            return self._metrics_down(gate, target, status, writer, error, now - start) or delay
        action = report.decision.action
        # A look that decides to pause keeps an onError pause in place: resuming first would let the canary
        # move on for a moment before the decision's pause lands.
        self.actuator.recover(gate, target, status, writer, keep_paused=pauses(action, gate))
        self._record(status, report)
        self.telemetry.score.labels(writer.namespace, writer.name).set(status.score or 0.0)
        self.telemetry.looks.labels(writer.namespace, writer.name).set(status.looks)
        writer.condition(status, "MetricsAvailable", "True", "QueriesAnswered", f"{report.looks} looks answered")
        if action is Action.CONTINUE:
            status.decision = DecisionStatus(
                action=action, reason=report.decision.reason, at=iso(self.clock()), revision=status.revision
            )
            status.message = report.decision.reason
            writer.write(status)
            return delay
        self.actuator.decide(gate, target, status, writer, action, report.decision.reason)
        return interval

    def _metrics_down(
        self,
        gate: RobustnessGate,
        target: LiveTarget,
        status: RobustnessGateStatus,
        writer: StatusWriter,
        error: MetricsError,
        elapsed: float,
    ) -> float | None:
        """Metric errors never promote. After errorLimit looks in a row onError applies; past maxDuration the
        analysis is inconclusive."""
        message = str(error)
        self.telemetry.prometheus_errors.labels(writer.namespace, writer.name, error.kind).inc()
        writer.condition(status, "MetricsAvailable", "False", "QueryFailed", message)
        first = status.consecutive_errors == 0 or not status.message.endswith(message)
        status.consecutive_errors += 1
        status.message = f"metrics unavailable for {status.consecutive_errors} look(s): {message}"
        limit = gate.spec.analysis.error_limit
        if elapsed >= gate.spec.analysis.max_duration_seconds:
            reason = f"maxDuration {gate.spec.analysis.max_duration} reached while metrics were unavailable: {message}"
            self.actuator.decide(gate, target, status, writer, Action.INCONCLUSIVE, reason, never_promote=True)
            return gate.spec.analysis.interval_seconds
        if status.consecutive_errors >= limit and not status.held_for_errors:
            reason = f"no metrics for {status.consecutive_errors} looks in a row (errorLimit {limit}): {message}"
            if gate.spec.on_error is OnError.ROLLBACK:
                self.actuator.decide(
                    gate, target, status, writer, Action.INCONCLUSIVE, reason, operation=Operation.ROLLBACK
                )
                return gate.spec.analysis.interval_seconds
            if gate.spec.on_error is OnError.PAUSE:
                self.actuator.hold(gate, target, status, writer, reason)
                return None
        if writer.write(status) and first:
            writer.event("Warning", "MetricsUnavailable", message)
        self.logger.warning("gate %s: %s", writer.key, message)
        return None

    def _record(self, status: RobustnessGateStatus, report: AnalysisReport) -> None:
        status.looks = report.looks
        status.last_look = iso(report.end)
        status.score = round(report.verdict.score, 2)
        status.verdict = report.verdict.verdict
        status.metrics = [result.to_status() for result in report.verdict.metrics]

    def _credentials(self, gate: RobustnessGate) -> Credentials:
        auth = gate.spec.prometheus.auth
        namespace = gate.metadata.namespace
        if auth is None:
            return Credentials()
        try:
            if auth.bearer_token_secret_ref is not None:
                ref = auth.bearer_token_secret_ref
                return Credentials(bearer_token=self.kube.secret_value(namespace, ref.name, ref.key))
            if auth.basic_auth_secret_ref is not None:
                basic = auth.basic_auth_secret_ref
                return Credentials(
                    username=self.kube.secret_value(namespace, basic.name, basic.username_key),
                    password=self.kube.secret_value(namespace, basic.name, basic.password_key),
                )
        except Exception as error:  # KubeError (names the Secret and key only) or a transport error
            raise MetricsError(f"spec.prometheus.auth: {error}", ErrorKind.AUTH) from None
        return Credentials()


class _TimedSource:
    """Counts the CPU time of a step's queries (and reading their answers) to the "prometheus" part."""

    def __init__(self, inner: MetricSource, telemetry: TelemetrySink) -> None:
        self.inner, self.telemetry = inner, telemetry

    def fetch(self, metric: MetricSpec, sides: Sides, window: Window) -> MetricData:
        with self.telemetry.step_part("prometheus"):
            return self.inner.fetch(metric, sides, window)

    def fetch_many(self, metrics: Sequence[MetricSpec], sides: Sides, window: Window) -> Fetched:
        with self.telemetry.step_part("prometheus"):
            return fetch_many(self.inner, metrics, sides, window)
