"""Prometheus credentials never leak: gates read them from Secrets, send them to a Prometheus that requires them,
and no status, Event, log line (text and JSON, at DEBUG), verdict answer, operator metric or decision notice
carries them, whether Prometheus accepted them or refused them.

A loopback reverse proxy in front of the real Prometheus requires an `Authorization` header (a bearer token or
basic auth) and answers 401 without the right one; it records what it was sent, so that the search for the
values is known to be looking for something that really went over the wire.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import LABEL, decided, namespace_for, stable_is, status_of
from hack.promproxy import Answer, PrometheusProxy, Request
from hack.scenario import (
    HEALTHY,
    Kubectl,
    OwnOperators,
    Traffic,
    gate_manifest,
    rollout_ref,
    start_rollout_canaries,
    wait_for,
)

USER = "gate-reader"
# Distinctive values: a hit anywhere can only be a leak.
TOKEN = f"tok{secrets.token_hex(16)}"
PASSWORD = f"pw{secrets.token_hex(16)}"
WRONG_TOKEN = f"badtok{secrets.token_hex(16)}"
WRONG_PASSWORD = f"badpw{secrets.token_hex(16)}"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def needles() -> dict[str, str]:
    """Every form in which a credential could show up: raw, base64 (as in a Secret) and as the header value."""
    found: dict[str, str] = {}
    for label, value in (
        ("token", TOKEN),
        ("password", PASSWORD),
        ("wrong token", WRONG_TOKEN),
        ("wrong password", WRONG_PASSWORD),
    ):
        found[label] = value
        found[f"{label} (base64)"] = base64.b64encode(value.encode()).decode()
    found["basic header"] = basic(USER, PASSWORD).split()[1]
    found["wrong basic header"] = basic(USER, WRONG_PASSWORD).split()[1]
    return found


class AuthProxy(PrometheusProxy):
    """Lets through only requests with an accepted Authorization header and answers the rest 401, as an
    authenticating gateway in front of Prometheus does."""

    def __init__(self, upstream: str, accepted: set[str]) -> None:
        self.accepted = accepted
        self.seen: Counter[str] = Counter()  # Authorization header values (or "<none>") as received
        self.refused = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        super().__init__(upstream)

    def answer(self, request: Request) -> Answer | None:
        authorization = request.headers.get("Authorization")
        with self._lock:
            self.seen[authorization or "<none>"] += 1
            if authorization in self.accepted:
                self.forwarded += 1
                return None
            self.refused += 1
        return Answer(
            401, b'{"status":"error","error":"unauthorized"}', headers={"WWW-Authenticate": 'Basic realm="prometheus"'}
        )


def secret(kube: Kubectl, namespace: str, name: str, data: dict[str, str]) -> None:
    body: Any = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }
    kube.core.create_namespaced_secret(namespace, body)


def auth_gate(namespace: str, name: str, rollout: str, proxy: AuthProxy, auth: dict[str, Any]) -> dict[str, Any]:
    target = rollout_ref(rollout)
    # A gate whose credentials are refused must stay refused while the test looks (no maxDuration end).
    max_duration = "10m" if name in BAD else "90s"
    gate = gate_manifest(namespace, name, target, proxy.url, app="fraud", min_duration="20s", max_duration=max_duration)
    gate["spec"]["prometheus"]["auth"] = auth
    return gate


def raw_get(url: str) -> str:
    assert url.startswith("http://127.0.0.1:"), url
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except urllib.error.HTTPError as error:
        return f"{error.code} {error.read().decode()}"


GOOD = {"good-token": "fraud", "good-basic": "ledger"}
BAD = {"wrong-token": "other", "wrong-basic": "other"}


def test_credentials_are_used_but_never_shown(
    kube: Kubectl, own_operators: OwnOperators, inbox: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    namespace = kube.namespace(namespace_for(request.node.name))
    hashes = start_rollout_canaries(kube, namespace, ("fraud", "ledger", "other"))
    traffic = Traffic(tmp_path / "traffic", "fraud", LABEL, rate=60.0).start()
    proxy = AuthProxy(traffic.url, {f"Bearer {TOKEN}", basic(USER, PASSWORD)})
    try:
        traffic.serve({h: HEALTHY for rollout in ("fraud", "ledger") for h in hashes[rollout]})
        secret(kube, namespace, "prom-token", {"token": TOKEN})
        secret(kube, namespace, "prom-basic", {"username": USER, "password": PASSWORD})
        secret(kube, namespace, "prom-token-old", {"token": WRONG_TOKEN})
        secret(kube, namespace, "prom-basic-old", {"username": USER, "password": WRONG_PASSWORD})
        gates = {
            "good-token": {"bearerTokenSecretRef": {"name": "prom-token", "key": "token"}},
            "good-basic": {"basicAuthSecretRef": {"name": "prom-basic"}},
            "wrong-token": {"bearerTokenSecretRef": {"name": "prom-token-old", "key": "token"}},
            "wrong-basic": {"basicAuthSecretRef": {"name": "prom-basic-old"}},
        }
        text = own_operators.start(tmp_path / "text", [namespace], ["--log-level", "DEBUG"], "text")
        for name, auth in gates.items():
            kube.create_gate(auth_gate(namespace, name, (GOOD | BAD)[name], proxy, auth))

        # The right credentials: the analysis runs to a decision, applied to the Rollout.
        for name in GOOD:
            wait_gate(kube, namespace, name, "decided", partial(decided, kube, namespace, name), 240)
        # The wrong ones: refused on every look; after errorLimit looks the canary is held.
        for name in BAD:
            wait_gate(
                kube, namespace, name, "held after errorLimit refusals", partial(held, kube, namespace, name), 120
            )

        # The same gates under a JSON-logging operator, at DEBUG too, for a few more looks.
        text.stop()
        errors_before = {name: status_of(kube, namespace, name).get("consecutiveErrors", 0) for name in BAD}
        structured = own_operators.start(
            tmp_path / "json", [namespace], ["--log-format", "json", "--log-level", "DEBUG"], "json"
        )
        for name in BAD:
            wait_gate(
                kube,
                namespace,
                name,
                "refused again under the JSON-logging operator",
                partial(refused_since, kube, namespace, name, errors_before[name] + 3),
                60,
            )

        # The outcome: the right credentials decided, the wrong ones are reported as refused credentials.
        for name, rollout in GOOD.items():
            status = status_of(kube, namespace, name)
            assert status["phase"] == "Promoted" and status["decision"]["applied"], status
            assert status["revision"] == hashes[rollout][1]
            wait_for(
                f"Rollout {rollout} promoted to its canary",
                partial(stable_is, kube, namespace, rollout, hashes[rollout][1]),
                90,
            )
        for name in BAD:
            status = status_of(kube, namespace, name)
            assert status["phase"] == "Paused" and not (status.get("decision") or {}).get("applied"), status
            assert "HTTP 401" in status["message"] and "check the credentials" in status["message"], status
            available = {c["type"]: c for c in status["conditions"]}["MetricsAvailable"]
            assert available["status"] == "False" and "HTTP 401" in available["message"], available
        other = kube.rollout(namespace, "other")
        assert other["status"]["stableRS"] == hashes["other"][0] and not other["status"].get("abort")

        # Positive control: every credential, right or wrong, really went to the proxy.
        assert proxy.seen[f"Bearer {TOKEN}"] > 0 and proxy.seen[basic(USER, PASSWORD)] > 0, proxy.seen
        assert proxy.seen[f"Bearer {WRONG_TOKEN}"] > 0 and proxy.seen[basic(USER, WRONG_PASSWORD)] > 0, proxy.seen
        # Every look of the right-credential gates asked Prometheus at least once (all metrics in one query);
        # every look of the wrong-credential ones was refused.
        looks = sum(int(status_of(kube, namespace, name)["looks"]) for name in GOOD)
        refused_looks = sum(int(status_of(kube, namespace, name)["consecutiveErrors"]) for name in BAD)
        assert proxy.seen["<none>"] == 0 and looks > 0 and refused_looks > 0
        assert proxy.forwarded >= looks and proxy.refused >= refused_looks, (proxy.forwarded, looks, proxy.refused)
        assert set(proxy.seen) == {
            f"Bearer {TOKEN}",
            basic(USER, PASSWORD),
            f"Bearer {WRONG_TOKEN}",
            basic(USER, WRONG_PASSWORD),
        }

        # Where the values must not be.
        places: dict[str, str] = {}
        for name in gates:
            places[f"gate {name} (whole object)"] = json.dumps(kube.gate(namespace, name))
            places[f"verdict of {name}"] = raw_get(f"{structured.http_url}/api/v1/verdict/{namespace}/{name}")
        for rollout in ("fraud", "ledger", "other"):
            places[f"Rollout {rollout}"] = json.dumps(kube.rollout(namespace, rollout))
        events: Any = kube.core.list_namespaced_event(namespace, _preload_content=False)
        places["Events"] = events.data.decode()
        places["text log"] = text.logs()
        places["JSON log"] = structured.logs()
        places["metrics"] = raw_get(structured.metrics_url)
        places["decision notices"] = json.dumps(inbox.bodies)
        leaks = [
            (needle, place)
            for needle, value in needles().items()
            for place, content in places.items()
            if value in content
        ]
        assert not leaks, f"credentials found: {leaks}"

        # The searched places are the real ones, with the gates' stories in them.
        event_items = json.loads(places["Events"])["items"]
        warnings = [e for e in event_items if e["involvedObject"]["name"] in BAD and e["type"] == "Warning"]
        assert any("HTTP 401" in e["message"] for e in warnings), [e["message"] for e in warnings]
        assert {e["reason"] for e in event_items if e["involvedObject"]["name"] in GOOD} >= {"Promote"}
        for name in BAD:
            assert f"{namespace}/{name}" in places["text log"] and "HTTP 401" in places["text log"]
        json_lines = [json.loads(line) for line in places["JSON log"].splitlines() if line.startswith("{")]
        assert any(
            f"{namespace}/wrong-token" in line["message"] and "HTTP 401" in line["message"] for line in json_lines
        ), places["JSON log"][-3000:]
        assert any(line["level"] == "DEBUG" for line in json_lines)
        for name in GOOD:
            assert json.loads(places[f"verdict of {name}"])["verdict"] == "pass"
        for name in BAD:
            verdict = json.loads(places[f"verdict of {name}"])
            assert verdict["verdict"] == "inconclusive" and "HTTP 401" in verdict["reason"], verdict
        assert "robustness_gate_prometheus_errors_total{" in places["metrics"]
        assert any(f"{namespace}/good-token" in t for t in inbox.texts())
    finally:
        proxy.stop()
        traffic.stop()


def wait_gate(kube: Kubectl, namespace: str, name: str, what: str, probe: Callable[[], bool], timeout: float) -> None:
    """wait_for, failing with the gate's status (its message says why it is not there yet)."""
    try:
        wait_for(f"{namespace}/{name} {what}", probe, timeout)
    except TimeoutError as error:
        pytest.fail(f"{error}; status: {json.dumps(status_of(kube, namespace, name))[:3000]}", pytrace=False)


def held(kube: Kubectl, namespace: str, name: str) -> bool:
    return bool(status_of(kube, namespace, name).get("heldForErrors"))


def refused_since(kube: Kubectl, namespace: str, name: str, errors: int) -> bool:
    return int(status_of(kube, namespace, name).get("consecutiveErrors", 0)) >= errors
