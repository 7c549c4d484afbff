"""The targets' watch cache, and Kube reading through it with the API behind."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

from robustness_gate.kube import Kube
from robustness_gate.telemetry import Telemetry
from robustness_gate.watched import WatchedObjects

NS = "shop"


def deployment(name: str = "fraud", uid: str = "d1", revision: str = "2") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": uid,
            "annotations": {"deployment.kubernetes.io/revision": revision},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"selector": {"matchLabels": {"app": name}}},
    }


def replica_set(name: str, owner: str | None, revision: str, controller: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": NS,
        "annotations": {"deployment.kubernetes.io/revision": revision},
        "managedFields": [{"manager": "kube-controller-manager"}],
    }
    if owner is not None:
        meta["ownerReferences"] = [{"kind": "Deployment", "uid": owner, "controller": controller}]
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta}


def test_objects_are_kept_without_managed_fields_and_read_as_independent_copies() -> None:
    watched = WatchedObjects()
    watched.deployment_seen(deployment(), deleted=False)
    first = watched.deployment(NS, "fraud")
    assert first is not None and "managedFields" not in first["metadata"]
    assert first["metadata"]["uid"] == "d1"
    first["spec"]["selector"] = {}
    second = watched.deployment(NS, "fraud")
    assert second is not None and second["spec"]["selector"] == {"matchLabels": {"app": "fraud"}}
    assert watched.deployment(NS, "other") is None and watched.deployment("elsewhere", "fraud") is None


def test_replica_sets_are_found_by_their_controlling_owner_and_follow_updates_and_deletes() -> None:
    watched = WatchedObjects()
    watched.replica_set_seen(replica_set("fraud-a", "d1", "1"), deleted=False)
    watched.replica_set_seen(replica_set("fraud-b", "d1", "2"), deleted=False)
    watched.replica_set_seen(replica_set("other-a", "d2", "1"), deleted=False)
    watched.replica_set_seen(replica_set("adopted", "d1", "1", controller=False), deleted=False)
    watched.replica_set_seen(replica_set("orphan", None, "1"), deleted=False)
    assert [rs["metadata"]["name"] for rs in watched.replica_sets(NS, "d1")] == ["fraud-a", "fraud-b"]
    # Orphaned (owner removed), then deleted: it leaves the owner's list each time.
    watched.replica_set_seen(replica_set("fraud-a", None, "1"), deleted=False)
    assert [rs["metadata"]["name"] for rs in watched.replica_sets(NS, "d1")] == ["fraud-b"]
    watched.replica_set_seen(replica_set("fraud-b", "d1", "2"), deleted=True)
    assert watched.replica_sets(NS, "d1") == []
    assert watched.sizes() == (0, 4)
    watched.deployment_seen(deployment(), deleted=False)
    watched.deployment_seen(deployment(), deleted=True)
    assert watched.deployment(NS, "fraud") is None


class _Apps:
    """The AppsV1Api calls Kube makes, answering from dicts and counting."""

    def __init__(self, deployments: list[dict[str, Any]], replica_sets: list[dict[str, Any]]) -> None:
        self.deployments, self.sets = deployments, replica_sets
        self.calls: list[str] = []

    def read_namespaced_deployment(self, name: str, namespace: str, **_: Any) -> Any:
        self.calls.append(f"get {name}")
        [found] = [d for d in self.deployments if d["metadata"]["name"] == name]
        return _Response(found)

    def list_namespaced_replica_set(self, namespace: str, label_selector: str, **_: Any) -> Any:
        self.calls.append(f"list {label_selector}")
        return _Response({"items": self.sets})


class _Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body).encode()


def kube_with(watched: WatchedObjects, api_deployments: list[dict[str, Any]], api_sets: list[dict[str, Any]]) -> Kube:
    kube = Kube(client.ApiClient(client.Configuration()), Telemetry(), watched)
    kube.apps = _Apps(api_deployments, api_sets)  # type: ignore[assignment]
    return kube


def reads(kube: Kube, kind: str, result: str) -> float:
    assert isinstance(kube.telemetry, Telemetry)
    value = kube.telemetry.registry.get_sample_value(
        "robustness_gate_watched_reads_total", {"kind": kind, "result": result}
    )
    return value or 0.0


def test_kube_reads_targets_from_the_watch_and_goes_to_the_api_for_what_it_lacks() -> None:
    watched = WatchedObjects()
    watched.deployment_seen(deployment(revision="2"), deleted=False)
    watched.replica_set_seen(replica_set("fraud-a", "d1", "1"), deleted=False)
    watched.replica_set_seen(replica_set("fraud-b", "d1", "2"), deleted=False)
    api_sets = [replica_set("fraud-a", "d1", "1"), replica_set("fraud-b", "d1", "2"), replica_set("x", "d9", "1")]
    kube = kube_with(watched, [deployment(revision="2"), deployment("late", "d5")], api_sets)
    apps: _Apps = kube.apps  # type: ignore[assignment]

    found = kube.deployment(NS, "fraud")
    assert found is not None and [rs["metadata"]["name"] for rs in kube.replica_sets(found)] == ["fraud-a", "fraud-b"]
    assert apps.calls == []
    assert (reads(kube, "Deployment", "hit"), reads(kube, "ReplicaSet", "hit")) == (1, 1)

    late = kube.deployment(NS, "late")  # not delivered by the watch yet: read from the API
    assert late is not None and apps.calls == ["get late"] and reads(kube, "Deployment", "miss") == 1

    # The Deployment is at revision 3 but the watch has not brought its new ReplicaSet: list from the API.
    watched.deployment_seen(deployment(revision="3"), deleted=False)
    newer = kube.deployment(NS, "fraud")
    assert newer is not None
    assert [rs["metadata"]["name"] for rs in kube.replica_sets(newer)] == ["fraud-a", "fraud-b"]
    assert apps.calls[-1] == "list app=fraud" and reads(kube, "ReplicaSet", "miss") == 1


def test_uncached_reads_always_go_to_the_api() -> None:
    watched = WatchedObjects()
    watched.deployment_seen(deployment(), deleted=False)
    kube = kube_with(watched, [deployment()], [replica_set("fraud-b", "d1", "2")])
    live = kube.uncached()
    found = live.deployment(NS, "fraud")
    assert found is not None and live.replica_sets(found)[0]["metadata"]["name"] == "fraud-b"
    apps: _Apps = kube.apps  # type: ignore[assignment]
    assert apps.calls == ["get fraud", "list app=fraud"]
    assert kube.watched is watched  # the cached client is unchanged


@pytest.mark.parametrize("deleted", [False, True])
def test_a_gate_write_records_its_resource_version_only_when_it_succeeds(deleted: bool) -> None:
    kube = Kube(client.ApiClient(client.Configuration()), Telemetry())

    class _Custom:
        def patch_namespaced_custom_object_status(self, *args: Any, **kwargs: Any) -> Any:
            assert kwargs["_preload_content"] is False
            if deleted:
                raise client.ApiException(status=404, reason="Not Found")
            return _Response({"metadata": {"name": "g", "resourceVersion": "42"}})

    kube.custom = _Custom()  # type: ignore[assignment]
    kube._written[(NS, "g")] = "41"
    if deleted:
        with pytest.raises(Exception, match="HTTP 404"):
            kube.patch_gate_status(NS, "g", {"phase": "Analyzing"})
        assert kube.written_version(NS, "g") is None
    else:
        kube.patch_gate_status(NS, "g", {"phase": "Analyzing"})
        assert kube.written_version(NS, "g") == "42"
        kube.forget_written(NS, "g")
        assert kube.written_version(NS, "g") is None


def test_a_keyed_event_has_a_name_fixed_by_gate_and_key_and_is_posted_once() -> None:
    kube = Kube(client.ApiClient(client.Configuration()), Telemetry())
    created: list[dict[str, Any]] = []

    class _Core:
        def create_namespaced_event(self, namespace: str, body: dict[str, Any]) -> None:
            name = body["metadata"].get("name")
            if name is not None and any(e["metadata"].get("name") == name for e in created):
                raise client.ApiException(status=409, reason="AlreadyExists")
            created.append(body)

    kube.core = _Core()  # type: ignore[assignment]
    gate = {"metadata": {"name": "g", "namespace": NS, "uid": "u1"}}
    for _ in range(2):
        kube.event(gate, "Warning", "Rollback", "canary abc: harm shown", key="decision/abc/Rollback/t")
    kube.event(gate, "Normal", "AnalysisStarted", "analysing canary abc")
    kube.event(gate, "Normal", "AnalysisStarted", "analysing canary abc")
    assert len(created) == 3
    keyed = created[0]["metadata"]
    assert keyed["name"].startswith("g.") and len(keyed["name"]) == len("g.") + 16 and "generateName" not in keyed
    other = {"metadata": {"name": "g", "namespace": NS, "uid": "u2"}}  # a new gate of the same name
    kube.event(other, "Warning", "Rollback", "canary abc: harm shown", key="decision/abc/Rollback/t")
    assert len(created) == 4 and created[3]["metadata"]["name"] != keyed["name"]
    assert [e["metadata"].get("generateName") for e in created[1:3]] == ["g.", "g."]
