"""One gate's control loop, driven step by step with a fake API, a fake metric store and a hand-moved clock.

Each step is given the gate as stored (with the status the previous steps wrote), as the operator's
worker does. The fake API applies status patches with JSON merge-patch semantics and applies target
merge patches to the Rollout, so later steps see what the API server would return.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fakes import (
    BAD,
    CANARY,
    HEALTHY,
    NAMESPACE,
    NEW_CANARY,
    PROMETHEUS_DOWN,
    STABLE,
    T0,
    FakeKube,
    Harness,
    OperatorCrashError,
    bad_looks,
    before_the_rollback,
    decided,
    harness,
    json_merge,
    make_gate,
    make_rollout,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from robustness_gate import controller as controller_module
from robustness_gate.api import Action, Operation, parse_gate
from robustness_gate.errors import KubeError
from robustness_gate.metrics.source import MetricsError
from robustness_gate.metrics.templates import Matcher
from robustness_gate.outcomes import operation_for
from robustness_gate.status_writer import iso, merge_patch
from robustness_gate.targets import argo_rollout
from robustness_gate.targets.model import JSON_PATCH, MERGE_PATCH, ObjectRef, Patch

# ---------------------------------------------------------------- helpers


def assert_quiet(h: Harness, looks: int) -> None:
    """`looks` more looks send, write and post nothing."""
    calls = len(h.kube.calls)
    h.advance(looks)
    assert h.kube.calls[calls:] == []


def lagging_watch_cache() -> Harness:
    """A BAD canary whose watch cache keeps the Rollout as it is now: what changes later, only the API shows."""
    h = harness(rollout=make_rollout(), **BAD)
    h.kube.watched_rollouts = {"checkout": make_rollout()}
    return h


def leave_the_pause_step(h: Harness) -> None:
    """The Rollout moves on to step 2, out of its pause (by a promote, or by hand)."""
    rollout = h.kube.rollouts["checkout"]
    rollout["status"]["currentStepIndex"] = 2
    del rollout["status"]["pauseConditions"]
    rollout["status"]["controllerPause"] = False


def aborted_after_a_look() -> Harness:
    """A healthy canary, one look in, aborted by someone else; the step after the abort has seen it."""
    h = harness(rollout=make_rollout(), **HEALTHY)
    h.step()
    h.next()
    h.kube.rollouts["checkout"]["status"]["abort"] = True
    h.next()
    return h


def edit_the_analysis(h: Harness, **analysis: str) -> None:
    """A user edits spec.analysis: the gate's next generation."""
    h.kube.gate["metadata"]["generation"] += 1
    h.kube.gate["spec"]["analysis"].update(analysis)


def edited_one_look_in(rates: dict[str, Any], **analysis: str) -> Harness:
    """A gate of generation 3, one look in; then spec.analysis is edited (generation 4) and one more look taken."""
    h = harness(make_gate(generation=3), make_rollout(), **rates)
    h.step()
    h.next()
    edit_the_analysis(h, **analysis)
    h.next()
    return h


# ---------------------------------------------------------------- starting an analysis


def test_a_new_canary_revision_starts_an_analysis_without_touching_the_target() -> None:
    h = harness(rollout=make_rollout())
    delay = h.step()
    status = h.kube.status
    assert status["phase"] == "Analyzing"
    assert (status["revision"], status["stableRevision"]) == (CANARY, STABLE)
    assert status["startedAt"] == iso(T0) == "2023-11-14T22:13:20Z"
    assert status["looks"] == 0 and "decision" not in status
    assert h.kube.condition("Valid")["status"] == "True"
    assert (h.kube.condition("Analyzing")["status"], h.kube.condition("Analyzing")["reason"]) == ("True", "Analyzing")
    events = h.kube.events()
    assert len(events) == 1 and events[0][:2] == ("Normal", "AnalysisStarted")
    assert CANARY in events[0][2] and STABLE in events[0][2]
    assert h.kube.applied() == []
    assert h.source.fetched == []
    assert delay == 11.0  # the first look: one interval after the start, plus the scrape delay


def test_no_look_is_taken_before_a_whole_interval_has_passed() -> None:
    h = harness(rollout=make_rollout())
    h.step()
    calls = len(h.kube.calls)
    h.clock.advance(5)
    assert h.step() == pytest.approx(6.0)
    assert len(h.kube.calls) == calls and h.source.fetched == []


def test_without_a_stable_revision_nothing_is_analysed() -> None:
    h = harness(rollout=make_rollout(stable=None, pause_reasons=()))
    assert h.step() == 10.0
    assert h.kube.status["phase"] == "Pending"
    assert "no stable revision" in h.kube.status["message"]
    assert "revision" not in h.kube.status
    assert h.kube.events() == [] and h.kube.applied() == []


# ---------------------------------------------------------------- rollback


def test_a_bad_canary_is_rolled_back_after_its_decision_is_recorded() -> None:
    rollout = make_rollout()
    h = before_the_rollback(harness(rollout=rollout, **BAD))
    state_at_decision = argo_rollout.observe(rollout).state
    earlier = dict(h.kube.status.get("decision") or {})  # status writes are merge patches onto this
    before = len(h.kube.calls)
    h.next()  # the deciding look: 10% against 1% errors on 2000 requests a side

    kinds = [kind for kind, _ in h.kube.calls[before:]]
    assert kinds == ["status", "apply", "event", "status"]
    recorded = {**earlier, **h.kube.calls[before][1]["decision"]}
    assert recorded["action"] == "Rollback" and recorded["operation"] == "Rollback"
    assert recorded["applied"] is False and recorded["dryRun"] is False
    assert recorded["revision"] == CANARY and recorded["targetState"] == state_at_decision
    assert h.kube.calls[before + 1][1] == Patch(
        ObjectRef("Rollout", "checkout"), {"status": {"abort": True}}, MERGE_PATCH, "status"
    )
    assert h.kube.calls[before + 3][1]["decision"] == {"applied": True}

    status = h.kube.status
    assert status["phase"] == "RolledBack"
    assert status["verdict"] == "Fail" and status["looks"] == bad_looks()
    assert status["metrics"][0]["name"] == "errors" and status["metrics"][0]["verdict"] == "Fail"
    assert decided(h)["applied"] is True
    assert (h.kube.condition("Analyzing")["status"], h.kube.condition("Analyzing")["reason"]) == ("False", "Decided")
    warnings = [event for event in h.kube.events() if event[0] == "Warning"]
    assert len(warnings) == 1 and warnings[0][1] == "Rollback" and CANARY in warnings[0][2]

    (metric, sides, window), *_ = h.source.fetched
    assert metric == "errors"
    assert sides.canary == (Matcher("rollouts_pod_template_hash", "=", CANARY),)
    assert sides.baseline == (Matcher("rollouts_pod_template_hash", "=", STABLE),)
    assert (window.start, window.step, window.looks) == (T0, 10.0, 1)


def test_the_operation_is_computed_from_the_target_as_the_api_has_it_not_the_watch_cache() -> None:
    h = before_the_rollback(lagging_watch_cache())
    # The API's Rollout moved to its next step; the lagging cache still shows the old one.
    h.kube.rollouts["checkout"] = make_rollout(step_index=2)
    h.next()
    assert h.kube.uncached_reads == 1
    applied = [call for kind, call in h.kube.calls if kind == "apply"]
    assert applied == [Patch(ObjectRef("Rollout", "checkout"), {"status": {"abort": True}}, MERGE_PATCH, "status")]
    assert decided(h)["applied"] is True and h.kube.status["phase"] == "RolledBack"


def test_a_canary_replaced_between_the_look_and_the_operation_is_not_acted_on() -> None:
    h = before_the_rollback(lagging_watch_cache())
    h.kube.rollouts["checkout"] = make_rollout(current="7f7f7f7f7f")  # a newer canary the cache has not seen yet
    h.next()
    assert [kind for kind, _ in h.kube.calls if kind == "apply"] == []
    decision = decided(h)
    assert decision["revision"] == CANARY and decision["applied"] is True
    assert (
        "the canary changed to 7f7f7f7f7f" in h.kube.status["message"]
        and "Rollback was not sent" in (h.kube.status["message"])
    )
    # Once the cache catches up, the new canary gets an analysis of its own.
    h.kube.watched_rollouts = None
    h.next()
    assert h.kube.status["revision"] == "7f7f7f7f7f" and h.kube.status["phase"] == "Analyzing"


def test_a_revision_gets_at_most_one_operation() -> None:
    h = before_the_rollback()
    h.next()
    assert len(h.kube.applied()) == 1
    assert h.kube.rollouts["checkout"]["status"]["abort"] is True  # the fake API applied the abort
    calls = len(h.kube.calls)
    h.advance(40)
    # `kubectl argo rollouts retry`: the same revision runs again; it was judged already.
    del h.kube.rollouts["checkout"]["status"]["abort"]
    h.advance(5)
    assert h.kube.calls[calls:] == []
    assert h.kube.status["phase"] == "RolledBack"


def test_a_new_revision_after_a_decision_starts_a_new_analysis() -> None:
    h = before_the_rollback()
    h.next()
    assert h.kube.status["phase"] == "RolledBack"
    # A fixed template: Argo starts a new canary and clears the abort.
    h.kube.rollouts["checkout"] = make_rollout(current=NEW_CANARY, step_index=0, pause_reasons=())
    h.source.canary_rate = 0.01
    h.clock.advance(60)
    before = len(h.kube.calls)
    h.step()
    status = h.kube.status
    assert status["phase"] == "Analyzing"
    assert (status["revision"], status["stableRevision"]) == (NEW_CANARY, STABLE)
    assert status["startedAt"] == iso(h.clock.now)
    assert status["looks"] == 0
    for stale in ("decision", "verdict", "score", "lastLook"):
        assert stale not in status
    assert status["metrics"] == []
    assert h.kube.calls[before][1]["decision"] is None  # removed from the stored status
    assert [event[1] for event in h.kube.events()].count("AnalysisStarted") == 2
    assert h.kube.condition("Analyzing")["status"] == "True"
    assert len(h.kube.applied()) == 1


# ---------------------------------------------------------------- promotion


@pytest.mark.parametrize(
    ("on_pass", "expected", "phase"),
    [
        (
            "Promote",
            [Patch(ObjectRef("Rollout", "checkout"), {"status": {"pauseConditions": None}}, MERGE_PATCH, "status")],
            "Promoted",
        ),
        (
            "PromoteFull",
            [Patch(ObjectRef("Rollout", "checkout"), {"status": {"promoteFull": True}}, MERGE_PATCH, "status")],
            "Promoted",
        ),
        ("None", [], "Passed"),
    ],
)
def test_a_healthy_canary_is_promoted_only_after_min_duration(on_pass: str, expected: list[Patch], phase: str) -> None:
    h = harness(make_gate(onPass=on_pass), make_rollout(), **HEALTHY)
    h.step()
    for look in (1, 2):  # 10s and 20s of a 30s minDuration: passing, but too early
        h.next()
        assert h.kube.status["phase"] == "Analyzing"
        assert decided(h)["action"] == "Continue"
        assert "minDuration 30s" in h.kube.status["message"]
        assert h.kube.status["looks"] == look
    assert h.kube.applied() == []
    h.next()
    assert h.clock.now == T0 + 31
    assert h.kube.applied() == expected
    status = h.kube.status
    assert status["phase"] == phase
    assert status["verdict"] == "Pass" and status["score"] == 100 and status["looks"] == 3
    assert decided(h)["action"] == "Promote" and decided(h)["applied"] is True
    assert decided(h)["operation"] == {"Promote": "Promote", "PromoteFull": "PromoteFull", "None": "None"}[on_pass]
    last = h.kube.events()[-1]
    assert last[:2] == ("Normal", "Promote")
    assert not any(event[0] == "Warning" for event in h.kube.events())
    assert_quiet(h, 10)


# ---------------------------------------------------------------- dry run


@pytest.mark.parametrize(
    ("rates", "phase", "action", "event"),
    [
        (BAD, "Failed", "Rollback", ("Warning", "DryRunRollback")),
        (HEALTHY, "Passed", "Promote", ("Normal", "DryRunPromote")),
    ],
)
def test_dry_run_records_the_decision_and_sends_nothing(
    rates: dict[str, Any], phase: str, action: str, event: tuple[str, str]
) -> None:
    h = harness(make_gate(dryRun=True), make_rollout(), **rates)
    h.step()
    h.advance(12)
    assert h.kube.applied() == []
    assert h.kube.status["phase"] == phase
    decision = decided(h)
    assert decision["action"] == action and decision["dryRun"] is True and decision["applied"] is True
    assert "dryRun" in h.kube.status["message"]
    assert [e[:2] for e in h.kube.events()] == [("Normal", "AnalysisStarted"), event]


# ---------------------------------------------------------------- restarts


def test_a_restart_between_decision_and_patch_sends_the_operation_exactly_once() -> None:
    h = before_the_rollback()
    h.kube.crash_on_apply = True
    with pytest.raises(OperatorCrashError):
        h.next()
    assert decided(h)["action"] == "Rollback" and decided(h)["applied"] is False
    assert h.kube.applied() == []

    h.restart()
    h.clock.advance(30)  # the worker's crash back-off
    h.step()
    assert h.kube.applied() == [
        Patch(ObjectRef("Rollout", "checkout"), {"status": {"abort": True}}, MERGE_PATCH, "status")
    ]
    assert decided(h)["applied"] is True
    assert h.kube.status["phase"] == "RolledBack"
    h.advance(10)
    assert len(h.kube.applied()) == 1


@pytest.mark.parametrize("verdict", ["Rollback", "Promote"])
@pytest.mark.parametrize("status", [409, 500, 503, 0])
def test_api_failures_on_target_and_status_patches_are_retried_and_act_once(verdict: str, status: int) -> None:
    """409 conflicts, 5xx and an unreachable apiserver on the decision's status write and on the target
    patch: the step fails (the worker backs off and retries), and the revision still gets one action."""
    h = harness(rollout=make_rollout(), **(BAD if verdict == "Rollback" else HEALTHY))
    h.step()
    h.kube.status_failures = [status, status]
    h.kube.apply_failures = [status, status]
    failures = 0
    for _ in range(60):
        try:
            h.next()
        except KubeError as error:
            assert error.status == status
            failures += 1
            h.clock.advance(2)  # the worker's first back-off
            h.delays.append(0)
        if decided(h).get("applied"):
            break
    assert failures == 4
    assert decided(h)["action"] == verdict and decided(h)["applied"] is True
    h.advance(10)
    assert len(h.kube.applied()) == 1
    assert [e[1] for e in h.kube.events()].count(verdict) == 1


def test_an_abort_pending_at_a_restart_is_sent_again_even_if_the_target_changed() -> None:
    h = before_the_rollback()
    h.kube.crash_on_apply = True
    with pytest.raises(OperatorCrashError):
        h.next()
    leave_the_pause_step(h)  # by hand, meanwhile: abort is idempotent, so it is still sent, once
    h.restart()
    h.clock.advance(30)
    h.step()
    assert [p.body for p in h.kube.applied()] == [{"status": {"abort": True}}]
    assert decided(h)["applied"] is True and h.kube.status["phase"] == "RolledBack"
    h.advance(10)
    assert len(h.kube.applied()) == 1


def test_a_promote_pending_at_a_restart_is_not_sent_twice_once_the_target_moved() -> None:
    h = harness(rollout=make_rollout(), **HEALTHY)
    h.step()
    h.kube.crash_on_apply = True
    with pytest.raises(OperatorCrashError):
        h.advance(20)
    assert decided(h)["action"] == "Promote" and decided(h)["applied"] is False
    leave_the_pause_step(h)  # the promote went out just before the crash
    h.restart()
    h.clock.advance(10)
    h.step()
    assert h.kube.applied() == []  # a second promote would skip a step
    assert decided(h)["applied"] is True and h.kube.status["phase"] == "Promoted"
    assert "was not sent again" in h.kube.status["message"]


# ---------------------------------------------------------------- invalid gates


def assert_no_hot_loop(h: Harness, recheck: float) -> None:
    calls = len(h.kube.calls)
    for _ in range(5):
        h.clock.advance(recheck)
        assert h.step() == recheck
    assert h.kube.calls[calls:] == []


@pytest.mark.parametrize(
    ("gate", "rollout", "reason", "fragments"),
    [
        pytest.param(
            make_gate(
                metrics=[
                    {
                        "name": "errors",
                        "errorRate": {"errors": "sum(x{ {{nope}} })", "total": "sum(y{ {{selector}} })"},
                        "compare": {"direction": "Increase"},
                    }
                ]
            ),
            make_rollout(),
            "InvalidSpec",
            ("spec.metrics[0].errorRate.errors", "unknown template variable {{nope}}"),
            id="unknown-template-variable",
        ),
        pytest.param(
            make_gate(analysis={"interval": "10 seconds"}),
            make_rollout(),
            "InvalidSpec",
            ("spec.analysis.interval", "not a duration"),
            id="schema",
        ),
        pytest.param(
            make_gate(selectors={"canary": 'rollouts_pod_template_hash="{{canaryHash}}"', "baseline": "{{stable}}"}),
            make_rollout(),
            "InvalidSpec",
            ("spec.selectors.baseline", "{{stable}}"),
            id="selector-variable",
        ),
        pytest.param(
            make_gate(),
            None,
            "TargetNotFound",
            ("spec.targetRef", "Rollout 'checkout' not found", "fix spec.targetRef.name"),
            id="missing-rollout",
        ),
    ],
)
def test_an_invalid_gate_says_which_field_once_and_does_not_loop(
    gate: dict[str, Any], rollout: dict[str, Any] | None, reason: str, fragments: tuple[str, ...]
) -> None:
    h = harness(copy.deepcopy(gate), copy.deepcopy(rollout) if rollout else None, **BAD)
    assert h.step() == h.controller.invalid_recheck_seconds == 30.0
    status = h.kube.status
    assert status["phase"] == "Invalid"
    for fragment in fragments:
        assert fragment in status["message"]
    valid = h.kube.condition("Valid")
    assert (valid["status"], valid["reason"]) == ("False", reason)
    assert h.kube.condition("Analyzing")["status"] == "False"
    assert h.kube.events() == [("Warning", reason, status["message"])]
    assert h.kube.applied() == [] and h.source.fetched == []
    assert_no_hot_loop(h, 30.0)


def test_a_spec_is_validated_once_until_it_changes_and_an_edit_is_seen_at_the_next_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parsed: list[str] = []
    real_parse = controller_module.parse_gate  # type: ignore[attr-defined]

    def counting_parse(document: Any) -> Any:
        parsed.append(document["spec"]["analysis"].get("minDuration", ""))
        return real_parse(document)

    monkeypatch.setattr(controller_module, "parse_gate", counting_parse)
    h = harness(make_gate(), make_rollout(), **HEALTHY)
    for _ in range(4):
        h.step()
        h.clock.advance(10)
    assert len(parsed) == 1  # the same spec, stepped four times
    h.kube.gate["spec"]["analysis"]["minDuration"] = "not-a-duration"
    h.step()
    assert h.kube.status["phase"] == "Invalid" and "spec.analysis.minDuration" in h.kube.status["message"]
    h.step()
    assert len(parsed) == 2  # the bad spec is remembered too
    h.kube.gate["spec"]["analysis"]["minDuration"] = "3m"
    h.step()
    assert h.kube.status["phase"] == "Analyzing" and len(parsed) == 3
    h.controller.forget(NAMESPACE, "checkout-gate", str(h.kube.gate["metadata"]["uid"]))
    h.step()
    assert len(parsed) == 4  # a forgotten gate is parsed again


def test_a_gate_whose_target_appears_later_starts_analysing() -> None:
    h = harness(rollout=None)
    h.step()
    assert h.kube.status["phase"] == "Invalid"
    h.kube.rollouts["checkout"] = make_rollout()
    h.clock.advance(30)
    h.step()
    assert h.kube.status["phase"] == "Analyzing" and h.kube.status["revision"] == CANARY
    assert (h.kube.condition("Valid")["status"], h.kube.condition("Valid")["reason"]) == ("True", "Valid")


# ---------------------------------------------------------------- metrics unavailable


def test_metric_errors_never_promote_and_mark_metrics_unavailable() -> None:
    h = harness(make_gate(onError="None"), make_rollout(), **HEALTHY)
    h.source.error = PROMETHEUS_DOWN
    h.step()
    h.next()
    status = h.kube.status
    assert status["phase"] == "Analyzing"
    assert status["message"] == f"metrics unavailable for 1 look(s): {PROMETHEUS_DOWN}"
    assert status["consecutiveErrors"] == 1
    available = h.kube.condition("MetricsAvailable")
    assert (available["status"], available["reason"]) == ("False", "QueryFailed")
    assert str(PROMETHEUS_DOWN) in available["message"]
    assert h.kube.events()[-1] == ("Warning", "MetricsUnavailable", str(PROMETHEUS_DOWN))
    while h.clock.now + h.delays[-1] < T0 + 300:  # past minDuration, short of maxDuration
        h.next()
    assert h.kube.applied() == []
    assert h.kube.status["phase"] == "Analyzing" and "decision" not in h.kube.status
    assert [event[1] for event in h.kube.events()].count("MetricsUnavailable") == 1
    assert len(h.source.fetched) > 20


def test_refused_data_makes_the_gate_invalid_and_never_touches_the_target() -> None:
    # Refused from the first look on, through maxDuration and onError Rollback: no decision, no patch.
    h = harness(make_gate(onError="Rollback"), make_rollout(), **BAD)
    refusal = "metric errors: the canary counted 900 errors but only 20 total at look 1; check the queries"
    h.source.error = MetricsError(refusal, "refused", T0 + 30)
    h.step()
    while h.clock.now + h.delays[-1] < T0 + 3600:
        h.next()
    status = h.kube.status
    assert status["phase"] == "Invalid" and status["message"] == refusal and "decision" not in status
    valid = h.kube.condition("Valid")
    assert (valid["status"], valid["reason"], valid["message"]) == ("False", "InvalidData", refusal)
    assert h.kube.applied() == []
    assert [event[1] for event in h.kube.events()].count("InvalidData") == 1
    h.source.error = None  # the queries fixed: the analysis goes on and decides on the data
    while h.clock.now + h.delays[-1] < T0 + 3600 + 600 and h.kube.status["phase"] in ("Invalid", "Analyzing"):
        h.next()
    assert h.kube.status["phase"] != "Invalid" and h.kube.status["decision"]["action"] == "Rollback"


def test_a_passing_canary_is_not_promoted_while_metrics_are_down_and_is_once_they_return() -> None:
    h = harness(rollout=make_rollout(), **HEALTHY)
    h.step()
    h.next()
    h.next()
    assert h.kube.condition("MetricsAvailable")["status"] == "True"
    h.source.error = PROMETHEUS_DOWN
    h.advance(3)  # minDuration is reached while Prometheus is down
    assert h.kube.applied() == []
    assert h.kube.condition("MetricsAvailable")["status"] == "False"
    assert h.kube.status["phase"] == "Analyzing"
    h.source.error = None
    h.next()
    assert h.kube.status["phase"] == "Promoted" and len(h.kube.applied()) == 1
    available = h.kube.condition("MetricsAvailable")
    assert (available["status"], available["reason"]) == ("True", "QueriesAnswered")


@pytest.mark.parametrize(
    ("on_inconclusive", "expected", "phase"),
    [
        (None, [Patch(ObjectRef("Rollout", "checkout"), {"spec": {"paused": True}}, MERGE_PATCH, None)], "Paused"),
        (
            "Rollback",
            [Patch(ObjectRef("Rollout", "checkout"), {"status": {"abort": True}}, MERGE_PATCH, "status")],
            "RolledBack",
        ),
        ("Pause", [Patch(ObjectRef("Rollout", "checkout"), {"spec": {"paused": True}}, MERGE_PATCH, None)], "Paused"),
        ("None", [], "Inconclusive"),
    ],
)
def test_metrics_down_until_max_duration_is_inconclusive(
    on_inconclusive: str | None, expected: list[Patch], phase: str
) -> None:
    # onError: None, so that only maxDuration acts (onError has its own tests below).
    chosen = {} if on_inconclusive is None else {"onInconclusive": on_inconclusive}
    h = harness(make_gate(onError="None", **chosen), make_rollout(), **HEALTHY)  # type: ignore[arg-type]
    h.source.error = PROMETHEUS_DOWN
    h.step()
    while "decision" not in h.kube.status:
        h.next()
        assert h.clock.now <= T0 + 301
    assert h.clock.now == T0 + 301  # 300s of looks (the clock minus the 1s scrape delay) is maxDuration
    decision = decided(h)
    assert decision["action"] == "Inconclusive" and decision["applied"] is True
    assert decision["operation"] == (on_inconclusive or "Pause")
    assert "maxDuration 5m" in decision["reason"] and str(PROMETHEUS_DOWN) in decision["reason"]
    assert h.kube.applied() == expected
    assert h.kube.status["phase"] == phase
    assert h.kube.events()[-1][:2] == ("Warning", "Inconclusive")
    assert_quiet(h, 5)


# ---------------------------------------------------------------- canaries that end on their own


def test_a_canary_aborted_by_someone_else_ends_the_analysis_without_a_decision() -> None:
    h = aborted_after_a_look()
    status = h.kube.status
    assert status["phase"] == "Pending"
    assert f"canary {CANARY} ended without a decision" in status["message"]
    assert h.kube.events()[-1][:2] == ("Normal", "AnalysisEnded")
    assert h.kube.condition("Analyzing")["reason"] == "NoCanary"
    assert h.kube.applied() == []
    h.next()  # the message becomes the Rollout's own (see the report); then the status settles
    assert_quiet(h, 5)
    assert h.kube.status["phase"] == "Pending"
    assert [event[1] for event in h.kube.events()].count("AnalysisEnded") == 1


# ---------------------------------------------------------------- a single Deployment


def api_deployment(revision: int, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "api",
            "namespace": NAMESPACE,
            "uid": "api-uid",
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
        },
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "api"}},
            "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "api", "image": image}]},
            },
        },
        "status": {"replicas": 5},
    }


def api_replica_set(revision: int, pod_hash: str, image: str, replicas: int) -> dict[str, Any]:
    labels = {"app": "api", "pod-template-hash": pod_hash}
    return {
        "metadata": {
            "name": f"api-{pod_hash}",
            "namespace": NAMESPACE,
            "labels": labels,
            "annotations": {"deployment.kubernetes.io/revision": str(revision)},
            "ownerReferences": [{"kind": "Deployment", "name": "api", "uid": "api-uid", "controller": True}],
        },
        "spec": {
            "replicas": replicas,
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "api", "image": image}]}},
        },
        "status": {"replicas": replicas},
    }


def test_a_bad_single_deployment_update_is_undone_and_the_undo_is_not_a_new_canary() -> None:
    h = before_the_rollback(harness(kube=single_kube(make_gate()), **BAD))
    kube, source = h.kube, h.source
    assert h.kube.status["revision"] == "bbbb2222" and h.kube.status["stableRevision"] == "aaaa1111"
    h.next()
    template = {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "api", "image": "api:v1"}]}}
    assert h.kube.applied() == [
        Patch(
            ObjectRef("Deployment", "api"),
            [
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "replace", "path": "/metadata/annotations", "value": {"deployment.kubernetes.io/revision": "2"}},
            ],
            JSON_PATCH,
        )
    ]
    assert h.kube.status["phase"] == "RolledBack"
    assert source.fetched[0][1].canary == (Matcher("pod_template_hash", "=", "bbbb2222"),)
    # The undo under way: the v1 ReplicaSet becomes revision 3 while the v2 pods still run.
    kube.deployments["api"] = api_deployment(3, "api:v1")
    kube.sets["api"] = [api_replica_set(3, "aaaa1111", "api:v1", 3), api_replica_set(2, "bbbb2222", "api:v2", 1)]
    calls = len(kube.calls)
    h.advance(5)
    kube.sets["api"][1] = api_replica_set(2, "bbbb2222", "api:v2", 0)
    h.advance(5)
    assert kube.calls[calls:] == []
    assert h.kube.status["phase"] == "RolledBack" and h.kube.status["revision"] == "bbbb2222"


# ---------------------------------------------------------------- maxDuration with too little traffic

# 6 canary requests a look: 180 in the 5m analysis, short of minTraffic's 200; the baseline has plenty.
LOW_TRAFFIC: dict[str, Any] = {"canary_rate": 0.01, "baseline_rate": 0.01, "per_look": 6.0, "baseline_per_look": 60.0}
TOO_LITTLE = (
    "not enough traffic to decide by maxDuration 5m: canary served 180 of the 200 requests minTraffic asks for (errors)"
)
PAUSE_ROLLOUT = Patch(ObjectRef("Rollout", "checkout"), {"spec": {"paused": True}}, MERGE_PATCH, None)
ABORT_ROLLOUT = Patch(ObjectRef("Rollout", "checkout"), {"status": {"abort": True}}, MERGE_PATCH, "status")


def low_traffic_gate(**spec: Any) -> dict[str, Any]:
    analysis = {
        "interval": "10s",
        "minDuration": "30s",
        "maxDuration": "5m",
        "minTraffic": {"canary": 200, "baseline": 200},
    }
    return make_gate(analysis=analysis, **spec)


def run_to_the_decision(h: Harness) -> None:
    """Step until a decision other than Continue; before it, nothing may be sent to the target."""
    h.step()
    while decided(h).get("action") in (None, "Continue"):
        assert h.kube.applied() == [] and h.clock.now <= T0 + 301
        h.next()
    assert h.clock.now == T0 + 301  # the look that reaches maxDuration, not one before


@pytest.mark.parametrize(
    ("spec", "operation", "expected", "phase", "note"),
    [
        ({}, "Pause", [PAUSE_ROLLOUT], "Paused", "Pause: merge patch on Rollout/checkout"),
        ({"onInconclusive": "Pause"}, "Pause", [PAUSE_ROLLOUT], "Paused", "Pause: merge patch on Rollout/checkout"),
        (
            {"onInconclusive": "Rollback"},
            "Rollback",
            [ABORT_ROLLOUT],
            "RolledBack",
            "Rollback: merge patch on Rollout/checkout (status)",
        ),
        ({"onInconclusive": "None"}, "None", [], "Inconclusive", "no operation configured for this outcome"),
    ],
    ids=["default", "pause", "rollback", "none"],
)
def test_too_little_traffic_by_max_duration_pauses_by_default_and_says_why(
    spec: dict[str, Any], operation: str, expected: list[Patch], phase: str, note: str
) -> None:
    h = harness(low_traffic_gate(**spec), make_rollout(), **LOW_TRAFFIC)
    run_to_the_decision(h)
    decision = decided(h)
    assert (decision["action"], decision["operation"], decision["applied"]) == ("Inconclusive", operation, True)
    assert decision["reason"] == TOO_LITTLE
    assert h.kube.applied() == expected
    status = h.kube.status
    assert status["phase"] == phase and status["verdict"] == "NoData" and status["looks"] == 30
    assert status["message"] == f"{TOO_LITTLE} ({note})"
    assert h.kube.events()[-1] == ("Warning", "Inconclusive", f"canary {CANARY}: {TOO_LITTLE} ({note})")
    assert [e[1] for e in h.kube.events()] == ["AnalysisStarted", "Inconclusive"]
    rollout = h.kube.rollouts["checkout"]["status"]
    assert rollout["currentStepIndex"] == 1 and rollout["stableRS"] == STABLE  # never promoted
    assert_quiet(h, 30)  # decided: nothing more is sent, written or posted


def test_a_canary_paused_at_max_duration_is_held_neither_promoted_nor_rolled_back() -> None:
    h = harness(low_traffic_gate(), make_rollout(), **LOW_TRAFFIC)
    run_to_the_decision(h)
    rollout = h.kube.rollouts["checkout"]
    assert rollout["spec"]["paused"] is True
    assert "abort" not in rollout["status"] and "promoteFull" not in rollout["status"]
    # Argo's own pause step is left as it was: a person promotes or aborts.
    assert rollout["status"]["pauseConditions"] == [{"reason": "CanaryPauseStep", "startTime": "2023-11-14T22:13:00Z"}]
    # Traffic picks up after the decision: the decided revision is not judged again.
    h.source.per_look = 6000.0
    h.advance(30)
    assert h.kube.applied() == [PAUSE_ROLLOUT]
    assert h.kube.status["phase"] == "Paused" and decided(h)["reason"] == TOO_LITTLE


def pair_kube(gate: dict[str, Any]) -> FakeKube:
    """A stable Deployment `api` and a canary Deployment `api-canary` running another template."""
    gate["spec"]["targetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api-canary"}
    gate["spec"]["stableRef"] = {"name": "api"}
    kube = FakeKube(gate)
    canary = api_deployment(1, "api:v2")
    canary["metadata"].update(name="api-canary", uid="api-canary-uid")
    kube.deployments = {"api": api_deployment(1, "api:v1"), "api-canary": canary}
    kube.sets = {
        "api": [api_replica_set(1, "aaaa1111", "api:v1", 4)],
        "api-canary": [api_replica_set(1, "cccc3333", "api:v2", 1)],
    }
    return kube


def single_kube(gate: dict[str, Any]) -> FakeKube:
    """One Deployment `api` mid-update: 2 new pods next to 3 old ones."""
    gate["spec"]["targetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"}
    kube = FakeKube(gate)
    kube.deployments["api"] = api_deployment(2, "api:v2")
    kube.sets["api"] = [api_replica_set(1, "aaaa1111", "api:v1", 3), api_replica_set(2, "bbbb2222", "api:v2", 2)]
    return kube


@pytest.mark.parametrize(
    ("make_kube", "canary", "revision"),
    [(pair_kube, "api-canary", "cccc3333"), (single_kube, "api", "bbbb2222")],
    ids=["deployment-pair", "single-deployment"],
)
def test_deployments_are_paused_at_max_duration_without_traffic_not_scaled_down_or_undone(
    make_kube: Any, canary: str, revision: str
) -> None:
    h = harness(kube=make_kube(low_traffic_gate()), **LOW_TRAFFIC)
    kube = h.kube
    before = copy.deepcopy(kube.deployments)
    run_to_the_decision(h)
    assert kube.applied() == [Patch(ObjectRef("Deployment", canary), {"spec": {"paused": True}}, MERGE_PATCH, None)]
    status = kube.status
    assert (status["phase"], status["revision"]) == ("Paused", revision)
    assert decided(h)["operation"] == "Pause" and decided(h)["reason"] == TOO_LITTLE
    assert kube.events()[-1][:2] == ("Warning", "Inconclusive") and TOO_LITTLE in kube.events()[-1][2]
    # Only `paused` changed: the canary keeps its replicas and template, the stable Deployment is untouched.
    after = copy.deepcopy(kube.deployments)
    assert after[canary]["spec"].pop("paused") is True
    assert after == before
    assert_quiet(h, 30)


@pytest.mark.parametrize("killed", ["before-the-patch", "before-the-applied-status"])
def test_an_operator_killed_while_pausing_at_max_duration_resumes_and_pauses_once(killed: str) -> None:
    h = harness(low_traffic_gate(), make_rollout(), **LOW_TRAFFIC)
    if killed == "before-the-patch":
        h.kube.crash_on_apply = True
    else:
        h.kube.crash_on_applied_status = True  # after the pause and its Event, before the status saying so
    with pytest.raises(OperatorCrashError):
        run_to_the_decision(h)
    recorded = decided(h)
    assert (recorded["action"], recorded["operation"], recorded["applied"]) == ("Inconclusive", "Pause", False)
    assert recorded["reason"] == TOO_LITTLE
    h.restart()
    h.clock.advance(30)
    h.step()  # the new operator finishes the recorded decision from status
    h.advance(10)
    assert decided(h)["applied"] is True and h.kube.status["phase"] == "Paused"
    # A pause sent again changes nothing; nothing else is ever sent.
    assert h.kube.applied() == [PAUSE_ROLLOUT] * (1 if killed == "before-the-patch" else 2)
    assert "abort" not in h.kube.rollouts["checkout"]["status"]
    assert [e[1] for e in h.kube.events()].count("Inconclusive") == 1


def test_metrics_back_at_the_max_duration_look_keep_the_canary_paused_for_the_decision() -> None:
    h = harness(low_traffic_gate(), make_rollout(), **LOW_TRAFFIC)  # onError: Pause by default
    h.source.error = PROMETHEUS_DOWN
    h.step()
    while h.clock.now + h.delays[-1] < T0 + 301:
        h.next()
    assert h.kube.status["heldForErrors"] is True and h.kube.applied() == [PAUSE_ROLLOUT]
    h.source.error = None
    h.next()
    assert h.clock.now == T0 + 301
    # No resume between the onError pause and the decision's: the canary never moves on.
    assert h.kube.applied() == [PAUSE_ROLLOUT, PAUSE_ROLLOUT]
    assert decided(h)["reason"] == TOO_LITTLE and h.kube.status["phase"] == "Paused"
    recovered = [e for e in h.kube.events() if e[1] == "MetricsRecovered"]
    assert len(recovered) == 1 and "stays paused" in recovered[0][2]


# ---------------------------------------------------------------- generations


def test_conditions_carry_the_generation_they_were_written_for() -> None:
    h = harness(make_gate(generation=3), make_rollout(), **HEALTHY)
    h.step()
    h.next()
    status = h.kube.status
    assert status["observedGeneration"] == 3
    assert {c["type"] for c in status["conditions"]} == {"Valid", "Analyzing", "MetricsAvailable"}
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])
    # The spec is edited mid-analysis (a longer minDuration): the next write is for generation 4.
    edit_the_analysis(h, minDuration="1m")
    h.next()
    status = h.kube.status
    assert status["observedGeneration"] == 4
    # Every condition this look set again; Analyzing is not set by a look.
    rewritten = {c["type"]: c["observedGeneration"] for c in status["conditions"] if c["type"] != "Analyzing"}
    assert rewritten == {"Valid": 4, "MetricsAvailable": 4}


def test_an_unchanged_condition_keeps_its_transition_time() -> None:
    h = harness(rollout=make_rollout(), **HEALTHY)
    h.step()
    h.next()
    first = h.kube.condition("MetricsAvailable")["lastTransitionTime"]
    h.next()
    assert h.kube.condition("MetricsAvailable")["lastTransitionTime"] == first
    assert h.kube.condition("MetricsAvailable")["message"] == "2 looks answered"
    h.source.error = PROMETHEUS_DOWN
    h.next()
    assert h.kube.condition("MetricsAvailable")["lastTransitionTime"] == iso(h.clock.now)


# ---------------------------------------------------------------- merge_patch and operation_for


def test_merge_patch_nulls_removed_keys() -> None:
    assert merge_patch({"a": 1, "b": 2}, {"a": 1}) == {"b": None}


def test_merge_patch_recurses_into_dicts_and_replaces_everything_else() -> None:
    old = {"decision": {"action": "Rollback", "applied": False, "at": "t1"}, "metrics": [1, 2], "phase": "Analyzing"}
    new = {"decision": {"action": "Rollback", "applied": True}, "metrics": [1], "phase": "RolledBack", "score": 0.0}
    assert merge_patch(old, new) == {
        "decision": {"applied": True, "at": None},
        "metrics": [1],
        "phase": "RolledBack",
        "score": 0.0,
    }


def test_merge_patch_of_equal_documents_is_empty() -> None:
    document = {"phase": "Analyzing", "decision": {"action": "Continue"}, "conditions": [{"type": "Valid"}]}
    assert merge_patch(document, copy.deepcopy(document)) == {}
    assert merge_patch({"a": {"b": 1}}, {"a": {"b": 1}}) == {}


def test_merge_patch_between_a_dict_and_a_scalar() -> None:
    assert merge_patch({"a": {"b": 1}}, {"a": 5}) == {"a": 5}
    assert merge_patch({"a": 5}, {"a": {"b": 1}}) == {"a": {"b": 1}}
    assert merge_patch({"a": {"b": 1}}, {"a": {}}) == {"a": {"b": None}}


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3) | st.lists(st.integers(), max_size=2),
    lambda children: st.dictionaries(st.sampled_from("abcd"), children, max_size=4),
    max_leaves=12,
)
_STATUS = st.dictionaries(st.sampled_from("abcde"), _JSON, max_size=5)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    return value


@settings(max_examples=300, deadline=None)
@given(_STATUS, _STATUS)
def test_applying_merge_patch_to_old_gives_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    old, new = _without_nulls(old), _without_nulls(new)  # stored JSON never holds nulls
    assert json_merge(old, merge_patch(old, new)) == new


@pytest.mark.parametrize(
    ("spec", "action", "operation"),
    [
        ({}, Action.PROMOTE, Operation.PROMOTE),
        ({"onPass": "PromoteFull"}, Action.PROMOTE, Operation.PROMOTE_FULL),
        ({"onPass": "None"}, Action.PROMOTE, Operation.NONE),
        ({}, Action.ROLLBACK, Operation.ROLLBACK),
        ({"onFail": "Pause"}, Action.ROLLBACK, Operation.PAUSE),
        ({"onFail": "None"}, Action.ROLLBACK, Operation.NONE),
        ({}, Action.INCONCLUSIVE, Operation.PAUSE),
        ({"onInconclusive": "Rollback"}, Action.INCONCLUSIVE, Operation.ROLLBACK),
        ({"onInconclusive": "Promote"}, Action.INCONCLUSIVE, Operation.PROMOTE),
        ({"onInconclusive": "Pause"}, Action.INCONCLUSIVE, Operation.PAUSE),
        ({"onInconclusive": "None"}, Action.INCONCLUSIVE, Operation.NONE),
        ({"onPass": "PromoteFull", "onFail": "Pause"}, Action.CONTINUE, Operation.NONE),
    ],
)
def test_operation_for(spec: dict[str, Any], action: Action, operation: Operation) -> None:
    assert operation_for(action, parse_gate(make_gate(**spec))) is operation


def test_iso_is_utc_to_the_second() -> None:
    assert iso(T0 + 0.9) == "2023-11-14T22:13:20Z"


# ---------------------------------------------------------------- regressions


def test_fixing_an_invalid_spec_mid_analysis_shows_analyzing_again() -> None:
    h = harness(rollout=make_rollout(), **HEALTHY)
    h.step()
    h.next()
    good = copy.deepcopy(h.kube.gate["spec"]["metrics"])
    h.kube.gate["spec"]["metrics"][0]["errorRate"]["errors"] = "sum(x{ {{nope}} })"
    h.kube.gate["metadata"]["generation"] = 2
    h.clock.advance(5)
    h.step()
    assert h.kube.status["phase"] == "Invalid"
    h.kube.gate["spec"]["metrics"] = good
    h.kube.gate["metadata"]["generation"] = 3
    h.clock.advance(10)
    h.step()
    assert decided(h)["action"] == "Continue"
    assert h.kube.status["phase"] == "Analyzing"


def test_a_canary_that_comes_back_shortly_is_shown_analyzing() -> None:
    h = aborted_after_a_look()
    del h.kube.rollouts["checkout"]["status"]["abort"]
    h.clock.advance(1)
    h.step()
    assert h.kube.status["phase"] == "Analyzing"


def test_a_canary_that_comes_back_after_ending_is_analysed_as_analyzing_from_a_new_start() -> None:
    h = aborted_after_a_look()
    assert h.kube.status["phase"] == "Pending"
    h.clock.advance(600)  # aborted for 10 minutes (longer than maxDuration)
    del h.kube.rollouts["checkout"]["status"]["abort"]  # kubectl argo rollouts retry
    h.step()
    assert h.kube.status["phase"] == "Analyzing"
    assert h.kube.status["startedAt"] != iso(T0)


def test_analyzing_condition_is_restamped_with_the_new_generation() -> None:
    h = edited_one_look_in(HEALTHY, minDuration="1m")
    assert h.kube.condition("Analyzing")["observedGeneration"] == 4


def test_a_spec_edit_after_a_decision_is_observed() -> None:
    h = edited_one_look_in(BAD, maxDuration="10m")
    assert h.kube.status["observedGeneration"] == 4


def test_rollout_selectors_on_names_are_reported_invalid_and_never_act() -> None:
    gate = make_gate(selectors={"canary": 'app="{{canaryName}}"', "baseline": 'app="{{stableName}}"'})
    h = harness(gate, make_rollout(), **HEALTHY)
    h.step()
    h.advance(31)
    assert h.kube.status["phase"] == "Invalid"
    assert h.kube.status["message"].startswith("spec.selectors:") and "same series" in h.kube.status["message"]
    assert h.kube.applied() == []


def test_on_inconclusive_promote_never_promotes_when_metrics_never_answered() -> None:
    h = harness(make_gate(onInconclusive="Promote", onError="None"), make_rollout(), **HEALTHY)
    h.source.error = PROMETHEUS_DOWN
    h.step()
    h.advance(31)
    assert h.kube.applied() == []
    assert h.kube.status["phase"] == "Inconclusive" and "not promoted without metrics" in h.kube.status["message"]


def test_on_error_pause_holds_the_canary_after_error_limit_and_resumes_when_metrics_return() -> None:
    h = harness(rollout=make_rollout(), **HEALTHY)  # onError defaults to Pause, errorLimit to 5
    h.step()
    h.source.error = PROMETHEUS_DOWN
    h.advance(4)
    assert h.kube.applied() == [] and h.kube.status["consecutiveErrors"] == 4
    h.next()
    assert [p.body for p in h.kube.applied()] == [{"spec": {"paused": True}}]
    assert h.kube.status["phase"] == "Paused" and h.kube.status["heldForErrors"] is True
    assert "errorLimit 5" in h.kube.status["message"]
    h.advance(3)  # still blind: nothing more is sent
    assert len(h.kube.applied()) == 1
    h.source.error = None
    h.next()  # past minDuration by now: the same look that sees metrics again may promote
    bodies = [p.body for p in h.kube.applied()]
    assert bodies[1] == {"spec": {"paused": False}}  # our own pause is undone first
    assert h.kube.status["consecutiveErrors"] == 0
    assert "heldForErrors" not in h.kube.status or h.kube.status["heldForErrors"] is False
    assert [e[1] for e in h.kube.events()].count("MetricsRecovered") == 1
    while h.kube.status["phase"] == "Analyzing":
        h.next()
    assert h.kube.status["phase"] == "Promoted"
    assert {"status": {"pauseConditions": None}} in [p.body for p in h.kube.applied()]


def test_on_error_rollback_rolls_back_after_error_limit_and_never_promotes() -> None:
    h = harness(
        make_gate(
            onError="Rollback",
            analysis={
                "interval": "10s",
                "minDuration": "30s",
                "maxDuration": "5m",
                "errorLimit": 3,
                "minTraffic": {"canary": 10, "baseline": 10},
            },
        ),
        make_rollout(),
        **HEALTHY,
    )
    h.step()
    h.source.error = PROMETHEUS_DOWN
    h.advance(3)
    assert [p.body for p in h.kube.applied()] == [{"status": {"abort": True}}]
    decision = h.kube.status["decision"]
    assert decision["action"] == "Inconclusive" and decision["operation"] == "Rollback"
    assert "3 looks in a row" in decision["reason"] and h.kube.status["phase"] == "RolledBack"


def test_an_operator_killed_between_the_decision_event_and_its_status_posts_the_event_once() -> None:
    h = before_the_rollback()
    h.kube.crash_on_applied_status = True  # after the Event, before the status marking the decision applied
    with pytest.raises(OperatorCrashError):
        h.next()
    assert [e[1] for e in h.kube.events()].count("Rollback") == 1 and decided(h)["applied"] is False
    h.restart()
    h.step()  # the new operator finishes the pending decision
    h.advance(3)
    assert decided(h)["applied"] is True and h.kube.status["phase"] == "RolledBack"
    assert [e[1] for e in h.kube.events()].count("Rollback") == 1  # the same Event, not a second one
