"""The verdict document Argo Rollouts reads, the operator's metrics, JSON logs and the notification
payload: pure functions and loopback-only objects, no cluster."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from prometheus_client import generate_latest

from robustness_gate.logs import JsonFormatter
from robustness_gate.notify import Notice
from robustness_gate.server import verdict_document
from robustness_gate.telemetry import Telemetry


def gate(phase: str, revision: str = "abc", action: str | None = None, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"namespace": "ml", "name": "fraud"},
        "status": {"phase": phase, "revision": revision, "looks": 3, "message": f"{phase} because", **status},
    }
    if action:
        body["status"]["decision"] = {"action": action, "reason": "r", "operation": "None", "applied": True}
    return body


@pytest.mark.parametrize(
    ("phase", "action", "verdict"),
    [
        ("Promoted", "Promote", "pass"),
        ("Passed", "Promote", "pass"),
        ("RolledBack", "Rollback", "fail"),
        ("Failed", "Rollback", "fail"),
        ("Paused", "Rollback", "fail"),
        ("Paused", "Inconclusive", "inconclusive"),
        ("Inconclusive", "Inconclusive", "inconclusive"),
        ("Analyzing", None, "pending"),
        ("Pending", None, "pending"),
        ("Invalid", None, "invalid"),
    ],
)
def test_every_gate_state_maps_to_one_verdict(phase: str, action: str | None, verdict: str) -> None:
    document = verdict_document(gate(phase, action=action))
    assert document["verdict"] == verdict
    assert document["gate"] == "ml/fraud" and document["phase"] == phase and document["reason"] == f"{phase} because"
    json.dumps(document)  # always serialisable


def test_a_verdict_on_another_revision_is_pending() -> None:
    document = verdict_document(gate("RolledBack", revision="old", action="Rollback"), revision="new")
    assert document["verdict"] == "pending"
    assert "new" in document["reason"] and "old" in document["reason"]
    assert verdict_document(gate("RolledBack", revision="new", action="Rollback"), revision="new")["verdict"] == "fail"


def test_an_unreadable_status_is_pending_not_pass() -> None:
    body = {"metadata": {"namespace": "ml", "name": "fraud"}, "status": {"phase": "Exploded"}}
    assert verdict_document(body)["verdict"] == "pending"


def test_metrics_expose_decisions_scores_errors_and_phases() -> None:
    telemetry = Telemetry()
    telemetry.watch_phases(lambda: ["Analyzing", "Analyzing", "RolledBack"])
    telemetry.decisions.labels("ml", "fraud", "Rollback", "Rollback").inc()
    telemetry.score.labels("ml", "fraud").set(33.3)
    telemetry.looks.labels("ml", "fraud").set(4)
    telemetry.prometheus_errors.labels("ml", "fraud", "timeout").inc(2)
    telemetry.step_seconds.observe(0.2)
    text = generate_latest(telemetry.registry).decode()
    assert 'robustness_gate_gates{phase="Analyzing"} 2.0' in text
    assert 'robustness_gate_gates{phase="Promoted"} 0.0' in text
    assert (
        'robustness_gate_decisions_total{action="Rollback",gate="fraud",namespace="ml",operation="Rollback"} 1.0'
        in text
    )
    assert 'robustness_gate_prometheus_errors_total{gate="fraud",kind="timeout",namespace="ml"} 2.0' in text
    assert 'robustness_gate_score{gate="fraud",namespace="ml"} 33.3' in text
    assert "robustness_gate_analysis_step_seconds_count 1.0" in text
    assert "_created" not in text
    telemetry.forget("ml", "fraud")
    assert "robustness_gate_score{" not in generate_latest(telemetry.registry).decode()


def test_json_logs_are_one_object_per_line_with_extra_fields() -> None:
    record = logging.LogRecord(
        "robustness_gate.controller", logging.WARNING, "x.py", 1, "gate %s: %s", ("ml/f", "down"), None
    )
    record.gate = "ml/f"
    document = json.loads(JsonFormatter().format(record))
    assert document["level"] == "WARNING" and document["message"] == "gate ml/f: down" and document["gate"] == "ml/f"
    assert document["logger"] == "robustness_gate.controller" and document["time"].endswith("+00:00")


def test_the_notification_payload_is_slack_compatible_and_carries_no_url() -> None:
    notice = Notice("ml", "fraud", "abc", "Rollback", "Rollback", False, 33.3, "error rate 3x")
    payload = notice.payload()
    assert payload["text"] == "robustness-gate ml/fraud: canary abc Rollback (Rollback)"
    fields = {f["title"]: f["value"] for f in payload["attachments"][0]["fields"]}
    assert fields == {
        "gate": "ml/fraud",
        "revision": "abc",
        "decision": "Rollback → Rollback",
        "score": "33.3",
        "reason": "error rate 3x",
    }
    dry = Notice("ml", "fraud", "abc", "Promote", "Promote", True, 100, "ok").payload()
    assert "would Promote" in dry["text"]


def test_with_namespaces_the_verdict_api_never_reads_outside_them() -> None:
    from robustness_gate.server import watched_only

    reads: list[tuple[str, str]] = []

    def reader(namespace: str, name: str) -> dict[str, Any] | None:
        reads.append((namespace, name))
        return {"metadata": {"namespace": namespace, "name": name}}

    limited = watched_only(reader, ["team-a"])
    assert limited("team-a", "gate") is not None
    assert limited("team-b", "gate") is None  # unknown: 404, and not even read
    assert reads == [("team-a", "gate")]
    assert watched_only(reader, []) is reader  # watching every namespace: every gate may be asked for
