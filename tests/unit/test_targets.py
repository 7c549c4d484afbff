"""Targets: what the canary is right now, and the exact patches that promote or roll it back.

Argo Rollout patches are checked against `kubectl argo rollouts` v1.8.4
(pkg/kubectl-argo-rollouts/cmd/{promote,abort,pause}); the promote vectors are the cases of
promote_test.go and the branches of getPatches. The single-Deployment undo is checked against
`kubectl rollout undo` (k8s.io/kubectl v0.33 pkg/polymorphichelpers/rollback.go).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from fakes import CANARY, NAMESPACE, STABLE, FakeKube, make_rollout

from robustness_gate.api import Operation, RobustnessGateSpec
from robustness_gate.targets import argo_rollout, deployment
from robustness_gate.targets.deployment import Workload
from robustness_gate.targets.live import read_target
from robustness_gate.targets.model import JSON_PATCH, MERGE_PATCH, ObjectRef, Observation, Patch, TargetError

# ---------------------------------------------------------------- builders


def assert_canary(obs: Observation, canary: tuple[str, str], stable: tuple[str, str]) -> None:
    """The observation analyses the canary (pod hash, name) against the stable (pod hash, name), and its
    template variables say so."""
    assert (obs.revision, obs.stable_revision) == (canary[0], stable[0])
    assert obs.variables == {
        "canaryHash": canary[0],
        "stableHash": stable[0],
        "canaryName": canary[1],
        "stableName": stable[1],
        "namespace": NAMESPACE,
    }


def patch_view(patches: list[Patch]) -> list[tuple[Any, str, str | None]]:
    """Body, content type and subresource of each patch, in the order they are sent."""
    return [(patch.body, patch.content_type, patch.subresource) for patch in patches]


def pod_template(labels: dict[str, str], image: str) -> dict[str, Any]:
    """Pods of `image` with these labels and its tag as label `version`."""
    container = {"name": "web", "image": image, "ports": [{"containerPort": 8080, "protocol": "TCP"}]}
    return {
        "metadata": {"labels": {**labels, "version": image.rsplit(":", 1)[-1]}},
        "spec": {"containers": [container]},
    }


def make_deployment(
    name: str,
    *,
    revision: int,
    labels: dict[str, str],
    image: str,
    replicas: int = 3,
    paused: bool = False,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": dict(labels)},
        "template": pod_template(labels, image),
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
        "minReadySeconds": 30,
    }
    if paused:
        spec["paused"] = True
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "generation": revision,
            "annotations": {"deployment.kubernetes.io/revision": str(revision), **(annotations or {})},
        },
        "spec": spec,
        "status": {"observedGeneration": revision, "replicas": replicas},
    }


def make_replica_set(
    owner: dict[str, Any],
    *,
    revision: int,
    pod_hash: str,
    image: str,
    replicas: int,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ReplicaSet the Deployment controller made for one revision (template carries the hash label)."""
    labels = {**owner["spec"]["selector"]["matchLabels"], "pod-template-hash": pod_hash}
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{owner['metadata']['name']}-{pod_hash}",
            "namespace": NAMESPACE,
            "labels": labels,
            "annotations": {
                "deployment.kubernetes.io/desired-replicas": "3",
                "deployment.kubernetes.io/max-replicas": "4",
                "deployment.kubernetes.io/revision": str(revision),
                **(annotations or {}),
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": pod_template(labels, image)},
        "status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas},
    }


def pair(
    *,
    canary_replicas: int = 1,
    canary_hash: str | None = "6b7d9f8c4",
    stable_hash: str | None = "58c4d7b9f",
) -> tuple[Workload, Workload]:
    """A Flagger-like pair: web-canary (v2) next to web (v1)."""
    canary = make_deployment(
        "web-canary", revision=2, labels={"app": "web", "track": "canary"}, image="web:v2", replicas=canary_replicas
    )
    stable = make_deployment("web", revision=5, labels={"app": "web", "track": "stable"}, image="web:v1")
    canary_sets = (
        [make_replica_set(canary, revision=2, pod_hash=canary_hash, image="web:v2", replicas=canary_replicas)]
        if canary_hash
        else []
    )
    stable_sets = (
        [make_replica_set(stable, revision=5, pod_hash=stable_hash, image="web:v1", replicas=3)] if stable_hash else []
    )
    return Workload(canary, canary_sets), Workload(stable, stable_sets)


def single(*, old_replicas: int = 2, paused: bool = False) -> Workload:
    """Deployment `api` at revision 3 mid-update: revisions 1 and 2 are older, 2 still has pods."""
    dep = make_deployment(
        "api",
        revision=3,
        labels={"app": "api"},
        image="api:v3",
        paused=paused,
        annotations={
            "kubectl.kubernetes.io/last-applied-configuration": '{"kind":"Deployment","metadata":{"name":"api"}}',
            "kubernetes.io/change-cause": "release v3",
            "team": "payments",
        },
    )
    history: list[tuple[int, str, int, dict[str, str]]] = [  # revision, pod hash, replicas, annotations
        (3, "c3c3c3c3", 2, {"team": "payments"}),
        (
            2,
            "b2b2b2b2",
            old_replicas,
            {"kubernetes.io/change-cause": "release v2", "team": "payments-old", "owner": "alice"},
        ),
        (1, "a1a1a1a1", 0, {"kubernetes.io/change-cause": "release v1"}),
    ]
    rs3, rs2, rs1 = (
        make_replica_set(
            dep, revision=revision, pod_hash=pod_hash, image=f"api:v{revision}", replicas=n, annotations=notes
        )
        for revision, pod_hash, n, notes in history
    )
    # Listed in no particular order, as the API may return them.
    return Workload(dep, [rs1, rs3, rs2])


# ---------------------------------------------------------------- Argo Rollout: promote (kubectl argo rollouts promote)

TWO_STEPS: dict[str, Any] = {"canary": {"steps": [{"setWeight": 1}, {"setWeight": 2}]}}
BLUE_GREEN: dict[str, Any] = {"blueGreen": {"activeService": "guestbook-active"}}


def guestbook(
    status: dict[str, Any] | None = None, *, strategy: dict[str, Any] | None = None, paused: bool = False
) -> dict[str, Any]:
    """The Rollout of the plugin's promote tests: in namespace default, a canary of TWO_STEPS unless
    `strategy` says otherwise, `spec.paused` when `paused`; without `status`, one with none at all."""
    spec: dict[str, Any] = {"strategy": copy.deepcopy(TWO_STEPS if strategy is None else strategy)}
    if paused:
        spec["paused"] = True
    rollout: dict[str, Any] = {"metadata": {"name": "guestbook", "namespace": "default"}, "spec": spec}
    if status is not None:
        rollout["status"] = status
    return rollout


@pytest.mark.parametrize(
    ("rollout", "expected"),
    [
        pytest.param(
            # TestPromoteCmdSuccesFirstStep: canary with two steps, nothing in status.
            guestbook({}),
            [({"status": {"pauseConditions": None, "currentStepIndex": 1}}, MERGE_PATCH, "status")],
            id="first-step",
        ),
        pytest.param(
            # TestPromoteCmdSuccessDoNotGoPastLastStep: currentStepIndex already == len(steps).
            guestbook({"currentStepIndex": 2}),
            [({"status": {"pauseConditions": None, "currentStepIndex": 2}}, MERGE_PATCH, "status")],
            id="do-not-go-past-last-step",
        ),
        pytest.param(
            # TestPromoteCmdSuccessUnpause: status patch first, then the spec patch.
            guestbook(
                {"pauseConditions": [{"reason": "CanaryPauseStep"}], "controllerPause": True}, strategy={}, paused=True
            ),
            [
                ({"status": {"pauseConditions": None}}, MERGE_PATCH, "status"),
                ({"spec": {"paused": False}}, MERGE_PATCH, None),
            ],
            id="unpause",
        ),
        pytest.param(
            # TestPromoteNoStepCanary: a canary without steps has no step to move: nothing is sent.
            guestbook(strategy={"canary": {}}),
            [],
            id="no-step-canary",
        ),
        pytest.param(
            # TestPromoteInconclusiveStep: the controller's pause is lifted too and the step advances.
            guestbook(
                {
                    "pauseConditions": [{"reason": "CanaryPauseStep"}],
                    "controllerPause": True,
                    "canary": {"currentStepAnalysisRunStatus": {"status": "Inconclusive"}},
                },
                paused=True,
            ),
            [
                (
                    {"status": {"pauseConditions": None, "controllerPause": False, "currentStepIndex": 1}},
                    MERGE_PATCH,
                    "status",
                ),
                ({"spec": {"paused": False}}, MERGE_PATCH, None),
            ],
            id="inconclusive-step",
        ),
        pytest.param(
            # getPatches: Inconclusive but not paused by the controller -> only the pause conditions go.
            guestbook(
                {
                    "currentStepIndex": 1,
                    "pauseConditions": [{"reason": "InconclusiveAnalysisRun"}],
                    "canary": {"currentStepAnalysisRunStatus": {"status": "Inconclusive"}},
                }
            ),
            [({"status": {"pauseConditions": None}}, MERGE_PATCH, "status")],
            id="inconclusive-without-controller-pause",
        ),
        pytest.param(
            # getPatches: a step analysis that is merely Running takes the ordinary pause branch.
            guestbook(
                {
                    "currentStepIndex": 0,
                    "pauseConditions": [{"reason": "CanaryPauseStep"}],
                    "controllerPause": True,
                    "canary": {"currentStepAnalysisRunStatus": {"status": "Running"}},
                }
            ),
            [({"status": {"pauseConditions": None}}, MERGE_PATCH, "status")],
            id="running-analysis-paused",
        ),
        pytest.param(
            # getPatches: spec.paused alone on a canary mid-steps: skip the step, then unpause.
            guestbook({"currentStepIndex": 0}, paused=True),
            [
                ({"status": {"pauseConditions": None, "currentStepIndex": 1}}, MERGE_PATCH, "status"),
                ({"spec": {"paused": False}}, MERGE_PATCH, None),
            ],
            id="spec-paused-mid-steps",
        ),
        pytest.param(
            # getPatches: blue-green without pause conditions: neither canary branch applies.
            guestbook({"currentPodHash": "def456", "stableRS": "abc123"}, strategy=BLUE_GREEN),
            [],
            id="bluegreen-not-paused",
        ),
        pytest.param(
            guestbook(
                {"pauseConditions": [{"reason": "BlueGreenPause"}], "controllerPause": True}, strategy=BLUE_GREEN
            ),
            [({"status": {"pauseConditions": None}}, MERGE_PATCH, "status")],
            id="bluegreen-paused",
        ),
    ],
)
def test_promote_matches_kubectl_argo_rollouts(rollout: dict[str, Any], expected: list[Any]) -> None:
    before = copy.deepcopy(rollout)
    patches = argo_rollout.promote(rollout)
    assert patch_view(patches) == expected
    assert all(patch.target == ObjectRef("Rollout", "guestbook") for patch in patches)
    assert rollout == before  # pure: the object read is not modified


def test_promote_realistic_rollout_paused_at_a_pause_step() -> None:
    ro = make_rollout(step_index=1, pause_reasons=("CanaryPauseStep",))
    assert patch_view(argo_rollout.promote(ro)) == [({"status": {"pauseConditions": None}}, MERGE_PATCH, "status")]


@pytest.mark.parametrize(("index", "expected"), [(None, 1), (0, 1), (2, 3), (3, 4), (4, 4)])
def test_promote_mid_canary_moves_to_the_next_step_capped_at_the_step_count(index: int | None, expected: int) -> None:
    ro = make_rollout(step_index=index, pause_reasons=())
    assert patch_view(argo_rollout.promote(ro)) == [
        ({"status": {"pauseConditions": None, "currentStepIndex": expected}}, MERGE_PATCH, "status")
    ]


def test_promote_inconclusive_step_at_the_last_step_does_not_go_past_it() -> None:
    ro = make_rollout(step_index=4, pause_reasons=("InconclusiveAnalysisRun",), step_analysis="Inconclusive")
    assert patch_view(argo_rollout.promote(ro)) == [
        ({"status": {"pauseConditions": None, "controllerPause": False, "currentStepIndex": 4}}, MERGE_PATCH, "status")
    ]


def test_promote_full_only_while_the_canary_differs_from_stable() -> None:
    # TestPromoteCmdFull
    ro = {"metadata": {"name": "guestbook"}, "spec": {}, "status": {"stableRS": "abc123", "currentPodHash": "def456"}}
    assert patch_view(argo_rollout.promote(ro, full=True)) == [
        ({"status": {"promoteFull": True}}, MERGE_PATCH, "status")
    ]
    # TestPromoteCmdAlreadyFullyPromoted: nothing may be patched.
    done = {"metadata": {"name": "guestbook"}, "spec": {}, "status": {"stableRS": "abc123", "currentPodHash": "abc123"}}
    assert argo_rollout.promote(done, full=True) == []
    # --full ignores pause conditions and spec.paused: only promoteFull is sent.
    paused = make_rollout(spec_paused=True, pause_reasons=("CanaryPauseStep",))
    assert patch_view(argo_rollout.promote(paused, full=True)) == [
        ({"status": {"promoteFull": True}}, MERGE_PATCH, "status")
    ]


def test_abort_is_a_status_merge_patch() -> None:
    patches = argo_rollout.abort(make_rollout())
    assert patches == [Patch(ObjectRef("Rollout", "checkout"), {"status": {"abort": True}}, MERGE_PATCH, "status")]
    assert patches[0].describe() == "merge patch on Rollout/checkout (status)"


def test_pause_is_a_spec_merge_patch() -> None:
    patches = argo_rollout.pause(make_rollout())
    assert patches == [Patch(ObjectRef("Rollout", "checkout"), {"spec": {"paused": True}}, MERGE_PATCH, None)]
    assert patches[0].describe() == "merge patch on Rollout/checkout"


# ---------------------------------------------------------------- Argo Rollout: observation


def test_rollout_with_a_canary_in_progress() -> None:
    obs = argo_rollout.observe(make_rollout())
    assert obs.in_progress
    assert_canary(obs, (CANARY, "checkout"), (STABLE, "checkout"))
    assert "step 1/4" in obs.message and "CanaryPauseStep" in obs.message


def test_rollout_that_is_stable_has_no_canary() -> None:
    obs = argo_rollout.observe(make_rollout(current=STABLE, step_index=4, pause_reasons=()))
    assert not obs.in_progress
    assert (obs.revision, obs.stable_revision) == (None, STABLE)
    assert obs.variables == {}
    assert "stable" in obs.message


def test_aborted_rollout_has_no_canary() -> None:
    obs = argo_rollout.observe(make_rollout(abort=True, pause_reasons=()))
    assert (obs.revision, obs.stable_revision) == (None, STABLE)
    assert "aborted" in obs.message


@pytest.mark.parametrize(("current", "stable"), [(CANARY, None), (None, None), ("", "")])
def test_rollout_without_a_stable_revision_has_no_canary(current: str | None, stable: str | None) -> None:
    obs = argo_rollout.observe(make_rollout(current=current, stable=stable, pause_reasons=()))
    assert obs.revision is None
    assert "no stable revision" in obs.message


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"current": "8a8a8a8a8"}, id="new-pod-hash"),
        pytest.param({"stable": "1b1b1b1b1"}, id="new-stable"),
        pytest.param({"step_index": 2}, id="step-moved"),
        pytest.param({"pause_reasons": ()}, id="pause-cleared"),
        pytest.param({"pause_reasons": ("CanaryPauseStep", "InconclusiveAnalysisRun")}, id="pause-added"),
        pytest.param({"spec_paused": True}, id="spec-paused"),
        pytest.param({"abort": True}, id="aborted"),
        pytest.param({"promote_full": True}, id="promote-full"),
    ],
)
def test_rollout_state_changes_with_every_field_promote_and_abort_read(changed: dict[str, Any]) -> None:
    assert argo_rollout.observe(make_rollout(**changed)).state != argo_rollout.observe(make_rollout()).state


def test_rollout_state_ignores_fields_promote_and_abort_do_not_read() -> None:
    base = make_rollout()
    other = copy.deepcopy(base)
    other["metadata"]["resourceVersion"] = "98765"
    other["status"]["readyReplicas"] = 4
    other["status"]["pauseConditions"][0]["startTime"] = "2023-11-14T22:16:00Z"
    other["spec"]["template"]["metadata"]["annotations"] = {"restartedAt": "now"}
    assert argo_rollout.observe(other).state == argo_rollout.observe(base).state


# ---------------------------------------------------------------- Deployment pair


def test_pair_with_a_canary_in_progress() -> None:
    canary, stable = pair()
    obs = deployment.observe_pair(canary, stable)
    assert_canary(obs, ("6b7d9f8c4", "web-canary"), ("58c4d7b9f", "web"))


@pytest.mark.parametrize(
    ("kwargs", "stable_revision", "words"),
    [
        pytest.param({"canary_replicas": 0}, "58c4d7b9f", "scaled to 0", id="canary-scaled-to-0"),
        pytest.param({"canary_hash": "58c4d7b9f"}, "58c4d7b9f", "same pod template", id="same-hash"),
        pytest.param({"canary_hash": None}, "58c4d7b9f", "web-canary has no ReplicaSet", id="canary-no-rs"),
        pytest.param({"stable_hash": None}, None, "web has no ReplicaSet", id="stable-no-rs"),
    ],
)
def test_pair_without_a_canary(kwargs: dict[str, Any], stable_revision: str | None, words: str) -> None:
    obs = deployment.observe_pair(*pair(**kwargs))
    assert obs.revision is None
    assert obs.stable_revision == stable_revision
    assert words in obs.message


def test_pair_state_changes_when_the_canary_is_scaled_or_either_side_changes() -> None:
    base = deployment.observe_pair(*pair()).state
    assert deployment.observe_pair(*pair(canary_replicas=0)).state != base
    assert deployment.observe_pair(*pair(canary_hash="99999999")).state != base
    assert deployment.observe_pair(*pair(stable_hash="88888888")).state != base
    assert deployment.observe_pair(*pair()).state == base


def test_pair_promote_copies_the_canary_template_onto_stable_then_scales_the_canary_to_zero() -> None:
    canary, stable = pair()
    canary_before = copy.deepcopy(canary.deployment)
    patches = deployment.promote_pair(canary, stable)
    template = copy.deepcopy(canary_before["spec"]["template"])
    # The stable's selector labels win; the rest (version: v2) comes from the canary.
    template["metadata"]["labels"] = {"app": "web", "track": "stable", "version": "v2"}
    assert patches == [
        Patch(
            ObjectRef("Deployment", "web"),
            [{"op": "replace", "path": "/spec/template", "value": template}],
            JSON_PATCH,
        ),
        Patch(ObjectRef("Deployment", "web-canary"), {"spec": {"replicas": 0}}, MERGE_PATCH),
    ]
    assert canary.deployment == canary_before


def test_pair_promote_never_copies_a_pod_template_hash_label() -> None:
    canary, stable = pair()
    canary.deployment["spec"]["template"]["metadata"]["labels"]["pod-template-hash"] = "6b7d9f8c4"
    body = deployment.promote_pair(canary, stable)[0].body
    assert isinstance(body, list)
    assert "pod-template-hash" not in body[0]["value"]["metadata"]["labels"]


def test_pair_rollback_only_scales_the_canary_to_zero() -> None:
    canary, _ = pair()
    assert deployment.rollback_pair(canary) == [
        Patch(ObjectRef("Deployment", "web-canary"), {"spec": {"replicas": 0}}, MERGE_PATCH)
    ]


# ---------------------------------------------------------------- single Deployment


def test_single_with_old_pods_left_is_in_progress_against_the_previous_revision() -> None:
    obs = deployment.observe_single(single(old_replicas=2))
    assert_canary(obs, ("c3c3c3c3", "api"), ("b2b2b2b2", "api"))
    assert "2 new (c3c3c3c3)" in obs.message and "2 old (b2b2b2b2)" in obs.message


def test_single_fully_rolled_out_has_no_canary() -> None:
    obs = deployment.observe_single(single(old_replicas=0))
    assert (obs.revision, obs.stable_revision) == (None, "c3c3c3c3")
    assert "fully rolled out" in obs.message


def test_single_with_one_revision_or_none_has_no_canary() -> None:
    workload = single()
    only = Workload(
        workload.deployment, [rs for rs in workload.replica_sets if rs["metadata"]["name"] == "api-c3c3c3c3"]
    )
    assert deployment.observe_single(only).revision is None
    assert "one revision" in deployment.observe_single(only).message
    empty = deployment.observe_single(Workload(workload.deployment, []))
    assert (empty.revision, empty.stable_revision) == (None, None)


def test_single_state_changes_with_revision_and_pause() -> None:
    base = deployment.observe_single(single()).state
    assert deployment.observe_single(single(paused=True)).state != base
    bumped = single()
    bumped.deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "4"
    bumped.replica_sets[1]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "4"
    assert deployment.observe_single(bumped).state != base
    scaled = single()
    scaled.replica_sets[2]["status"]["replicas"] = 1  # old pods going away does not change the state
    assert deployment.observe_single(scaled).state == base


def test_single_undo_matches_kubectl_rollout_undo() -> None:
    workload = single()
    rs2 = next(rs for rs in workload.replica_sets if rs["metadata"]["name"] == "api-b2b2b2b2")
    rs2_before = copy.deepcopy(rs2)
    template = copy.deepcopy(rs2["spec"]["template"])
    del template["metadata"]["labels"]["pod-template-hash"]
    annotations = {
        # Kept from the Deployment (annotationsToSkip) ...
        "deployment.kubernetes.io/revision": "3",
        "kubectl.kubernetes.io/last-applied-configuration": '{"kind":"Deployment","metadata":{"name":"api"}}',
        # ... the rest from the ReplicaSet of the previous revision (2, not 1).
        "kubernetes.io/change-cause": "release v2",
        "team": "payments-old",
        "owner": "alice",
    }
    assert deployment.undo_single(workload) == [
        Patch(
            ObjectRef("Deployment", "api"),
            [
                {"op": "replace", "path": "/spec/template", "value": template},
                {"op": "replace", "path": "/metadata/annotations", "value": annotations},
            ],
            JSON_PATCH,
        )
    ]
    assert rs2 == rs2_before  # the ReplicaSet read is not modified


def test_single_undo_keeps_only_the_deployments_own_bookkeeping_annotations() -> None:
    workload = single()
    workload.deployment["metadata"]["annotations"].update(
        {
            "deployment.kubernetes.io/revision-history": "1",
            "deployment.kubernetes.io/desired-replicas": "9",
        }
    )
    rs2 = next(rs for rs in workload.replica_sets if rs["metadata"]["name"] == "api-b2b2b2b2")
    rs2["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] = "7"
    body = deployment.undo_single(workload)[0].body
    assert isinstance(body, list)
    annotations = body[1]["value"]
    assert annotations["deployment.kubernetes.io/revision-history"] == "1"
    assert annotations["deployment.kubernetes.io/desired-replicas"] == "9"
    assert "deployment.kubernetes.io/max-replicas" not in annotations  # the Deployment has none
    assert annotations["deployment.kubernetes.io/revision"] == "3"


def test_single_undo_of_a_paused_deployment_also_resumes_it() -> None:
    body = deployment.undo_single(single(paused=True))[0].body
    assert isinstance(body, list)
    assert [op["path"] for op in body] == ["/spec/template", "/metadata/annotations", "/spec/paused"]
    assert body[2] == {"op": "replace", "path": "/spec/paused", "value": False}


def test_single_undo_without_a_previous_revision_sends_nothing() -> None:
    workload = single()
    only = Workload(
        workload.deployment, [rs for rs in workload.replica_sets if rs["metadata"]["name"] == "api-c3c3c3c3"]
    )
    assert deployment.undo_single(only) == []


def test_single_promote_resumes_a_paused_deployment_and_otherwise_sends_nothing() -> None:
    assert deployment.promote_single(single(paused=True)) == [
        Patch(ObjectRef("Deployment", "api"), {"spec": {"paused": False}}, MERGE_PATCH)
    ]
    assert deployment.promote_single(single()) == []
    assert deployment.pause(single()) == [Patch(ObjectRef("Deployment", "api"), {"spec": {"paused": True}})]


# ---------------------------------------------------------------- live targets


def gate_spec(kind: str = "Rollout", name: str = "checkout", stable: str | None = None) -> RobustnessGateSpec:
    spec: dict[str, Any] = {
        "targetRef": {
            "apiVersion": "argoproj.io/v1alpha1" if kind == "Rollout" else "apps/v1",
            "kind": kind,
            "name": name,
        },
        "prometheus": {"address": "http://prometheus.monitoring:9090"},
        "metrics": [
            {
                "name": "errors",
                "errorRate": {"errors": "sum(e{ {{selector}} })", "total": "sum(t{ {{selector}} })"},
                "compare": {"direction": "Increase"},
            }
        ],
    }
    if stable is not None:
        spec["stableRef"] = {"name": stable}
    return RobustnessGateSpec.model_validate(spec)


PAIR_SPEC = gate_spec("Deployment", "web-canary", "web")


def test_live_rollout_target() -> None:
    ro = make_rollout()
    target = read_target(FakeKube(rollouts={"checkout": ro}), NAMESPACE, gate_spec())
    assert target.description == "Rollout/checkout"
    assert target.observation == argo_rollout.observe(ro)
    assert target.default_selectors == (
        'rollouts_pod_template_hash="{{canaryHash}}"',
        'rollouts_pod_template_hash="{{stableHash}}"',
    )
    assert target.patches(Operation.PROMOTE) == argo_rollout.promote(ro)
    assert target.patches(Operation.PROMOTE_FULL) == argo_rollout.promote(ro, full=True)
    assert target.patches(Operation.ROLLBACK) == argo_rollout.abort(ro)
    assert target.patches(Operation.PAUSE) == argo_rollout.pause(ro)
    assert target.patches(Operation.NONE) == []
    assert target.patches(Operation.PROMOTE) != target.patches(Operation.PROMOTE_FULL)


def test_live_deployment_pair_target() -> None:
    canary, stable = pair()
    target = read_target(FakeKube(workloads=[canary, stable]), NAMESPACE, PAIR_SPEC)
    assert target.description == "Deployment/web-canary (stable Deployment/web)"
    assert target.observation.revision == "6b7d9f8c4"
    assert target.default_selectors == ('pod_template_hash="{{canaryHash}}"', 'pod_template_hash="{{stableHash}}"')
    assert target.patches(Operation.PROMOTE) == deployment.promote_pair(canary, stable)
    assert target.patches(Operation.PROMOTE_FULL) == deployment.promote_pair(canary, stable)
    assert target.patches(Operation.ROLLBACK) == deployment.rollback_pair(canary)
    assert target.patches(Operation.PAUSE) == deployment.pause(canary)
    assert target.patches(Operation.NONE) == []


def test_live_single_deployment_target() -> None:
    workload = single(paused=True)
    target = read_target(FakeKube(workloads=[workload]), NAMESPACE, gate_spec("Deployment", "api"))
    assert target.description == "Deployment/api"
    assert target.observation == deployment.observe_single(workload)
    assert target.patches(Operation.ROLLBACK) == deployment.undo_single(workload)
    assert target.patches(Operation.PROMOTE) == deployment.promote_single(workload)
    assert target.patches(Operation.PROMOTE_FULL) == deployment.promote_single(workload)
    assert target.patches(Operation.PAUSE) == deployment.pause(workload)
    assert target.patches(Operation.NONE) == []


@pytest.mark.parametrize(
    ("reader", "spec", "field", "what"),
    [
        pytest.param(FakeKube(), gate_spec(), "spec.targetRef", "Rollout 'checkout'", id="rollout"),
        pytest.param(
            FakeKube(workloads=[pair()[1]]),
            PAIR_SPEC,
            "spec.targetRef",
            "Deployment 'web-canary'",
            id="canary-deployment",
        ),
        pytest.param(
            FakeKube(workloads=[pair()[0]]), PAIR_SPEC, "spec.stableRef", "Deployment 'web'", id="stable-deployment"
        ),
        pytest.param(FakeKube(), gate_spec("Deployment", "api"), "spec.targetRef", "Deployment 'api'", id="single"),
    ],
)
def test_a_missing_target_names_the_field_and_the_fix(
    reader: FakeKube, spec: RobustnessGateSpec, field: str, what: str
) -> None:
    with pytest.raises(TargetError) as caught:
        read_target(reader, NAMESPACE, spec)
    message = str(caught.value)
    assert message.startswith(f"{field}: {what} not found in namespace '{NAMESPACE}'")
    assert message.endswith(f"create it or fix {field}.name")


def test_a_target_in_another_namespace_is_not_found() -> None:
    reader = FakeKube(rollouts={"checkout": make_rollout()})
    with pytest.raises(TargetError, match="namespace 'other'"):
        read_target(reader, "other", gate_spec())
    assert reader.reads == [("Rollout", "other", "checkout")]


def test_observation_in_progress_follows_revision() -> None:
    assert Observation("abc", "def").in_progress
    assert not Observation(None, "def").in_progress


# ---------------------------------------------------------------- edge cases of getPatches


def test_promote_inconclusive_controller_pause_without_steps_sends_no_status_patch() -> None:
    # Go: the inconclusive branch is taken; GetCurrentCanaryStep returns nil index -> statusPatch nil.
    ro = {
        "metadata": {"name": "guestbook"},
        "spec": {"strategy": {"canary": {}}},
        "status": {
            "pauseConditions": [{"reason": "InconclusiveAnalysisRun"}],
            "controllerPause": True,
            "canary": {"currentStepAnalysisRunStatus": {"status": "Inconclusive"}},
        },
    }
    assert argo_rollout.promote(ro) == []


def test_promote_with_step_index_beyond_the_steps_keeps_the_index() -> None:
    # Go: `if *index < len(steps) { *index++ }` -> an index of 3 with 2 steps stays 3.
    ro = {
        "metadata": {"name": "guestbook"},
        "spec": {"strategy": {"canary": {"steps": [{"setWeight": 1}, {"setWeight": 2}]}}},
        "status": {"currentStepIndex": 3},
    }
    assert [p.body for p in argo_rollout.promote(ro)] == [{"status": {"pauseConditions": None, "currentStepIndex": 3}}]
