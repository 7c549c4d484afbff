"""Fixtures of the real-apiserver tier; ``cluster`` and ``kube_api`` come from tests/conftest.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_helpers import present
from kubernetes import client
from kubernetes.client.exceptions import ApiException

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "robustnessgates.robustness.dev.yaml"


@pytest.fixture
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace, usable once the controller-manager created its ``default`` ServiceAccount (until then the
    ServiceAccount admission plugin rejects pods); deleted afterwards without waiting."""
    core = client.CoreV1Api(kube_api)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 60
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                pytest.fail(f"no ServiceAccount {name}/default after 60 s: {exc.status} {exc.reason}", pytrace=False)
        time.sleep(0.1)
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="session")
def crd(kube_api: client.ApiClient) -> dict[str, Any]:
    extensions = client.ApiextensionsV1Api(kube_api)
    body: dict[str, Any] = yaml.safe_load(CRD_FILE.read_text())
    manifest: Any = body  # sent as is: the client types the body as a V1CustomResourceDefinition
    try:
        extensions.create_custom_resource_definition(manifest)
    except ApiException as error:
        if error.status != 409:
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stored = extensions.read_custom_resource_definition(body["metadata"]["name"])
        conditions = {c.type: c.status for c in present(stored.status).conditions or []}
        if conditions.get("Established") == "True":
            # The first requests after Established can still see "storage is (re)initializing".
            time.sleep(1)
            return body
        time.sleep(0.2)
    pytest.fail("the RobustnessGate CRD did not become Established in 30 s")
