"""Fixtures of the real-apiserver tier; ``cluster`` and ``kube_api`` come from tests/conftest.py."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

HACK_DIR = Path(__file__).resolve().parents[2] / "hack"
if str(HACK_DIR) not in sys.path:
    sys.path.insert(0, str(HACK_DIR))



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
