"""The Helm chart, Dockerfile and kind config, checked without a cluster: `helm lint --strict` is clean, the
templates render for cluster-wide and namespaced installs, the values schema rejects bad values, the RBAC is
exactly the operator's API calls, and the pod runs locked down. Uses the helm binary of `make cluster-build`."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from robustness_gate import __version__

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "robustness-gate"
TESTBIN = Path(os.environ.get("TESTBIN") or Path.home() / ".cache" / "robustness-gate" / "testbin")
ROLLOUTS_CRDS = TESTBIN / "crds" / "argo-rollouts-v1.8.4"

Rule = tuple[str, str, str]  # (apiGroup, resource, verb)

# Every API call the operator makes, and nothing else (docs/helm.md explains each).
LEAST_PRIVILEGE: set[Rule] = {
    ("robustness.dev", "robustnessgates", "get"),
    ("robustness.dev", "robustnessgates", "list"),
    ("robustness.dev", "robustnessgates", "watch"),
    ("robustness.dev", "robustnessgates/status", "get"),
    ("robustness.dev", "robustnessgates/status", "patch"),
    ("", "events", "create"),
    ("", "events", "patch"),
    ("events.k8s.io", "events", "create"),
    ("argoproj.io", "rollouts", "get"),
    ("argoproj.io", "rollouts", "patch"),
    ("argoproj.io", "rollouts/status", "patch"),
    ("apps", "deployments", "get"),
    ("apps", "deployments", "list"),
    ("apps", "deployments", "watch"),
    ("apps", "deployments", "patch"),
    ("apps", "replicasets", "list"),
    ("apps", "replicasets", "watch"),
}
OPERATOR_METRICS = {
    "robustness_gate_gates",
    "robustness_gate_decisions_total",
    "robustness_gate_analysis_step_seconds",
    "robustness_gate_prometheus_errors_total",
    "robustness_gate_score",
    "robustness_gate_looks",
}


@pytest.fixture(scope="module")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    helm = TESTBIN / "bin" / "helm"
    if not os.access(helm, os.X_OK):
        pytest.fail(
            f"no helm binary at {helm}: run `make cluster-build` (it builds helm into the testbin)", pytrace=False
        )
    home = tmp_path_factory.mktemp("helm-home")
    yield {
        **os.environ,
        "HELM_BIN": str(helm),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def helm(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([env["HELM_BIN"], *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        pytest.fail(
            f"helm {shlex.join(args)} exited {result.returncode}:\n{result.stderr}{result.stdout}", pytrace=False
        )
    return result


def render(
    env: dict[str, str], *sets: str, release: str = "rg", namespace: str = "robustness-gate"
) -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for value in sets:
        args += ["--set-json", value]
    docs = [doc for doc in yaml.safe_load_all(helm(env, *args).stdout) if doc]
    return docs


def only(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = only(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def triples(rules: list[dict[str, Any]]) -> set[Rule]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    result: dict[str, Any] = pod["containers"][0]
    return result


# ---------------------------------------------------------------- lint and render


@pytest.mark.parametrize("values", [[], ['watchNamespaces=["team-a","team-b"]', 'rbac.secretNames=["prom-auth"]']])
def test_helm_lint_strict_is_clean(helm_env: dict[str, str], values: list[str]) -> None:
    args = ["lint", "--strict", str(CHART)]
    for value in values:
        args += ["--set-json", value]
    result = helm(helm_env, *args)
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_default_install_is_cluster_wide_with_only_the_operator_objects(helm_env: dict[str, str]) -> None:
    docs = render(helm_env)
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "Deployment", "Service", "ServiceAccount"]
    for doc in docs:
        assert doc["metadata"]["name"].startswith("rg-robustness-gate")
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == "robustness-gate", doc["metadata"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == "rg"
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": one(docs, "ClusterRole")["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": one(docs, "ServiceAccount")["metadata"]["name"],
            "namespace": "robustness-gate",
        }
    ]
    args = container(docs)["args"]
    assert args[0] == "run" and not any(a.startswith("--namespace") for a in args), args


def test_cluster_role_grants_exactly_the_operators_api_calls(helm_env: dict[str, str]) -> None:
    rules = one(render(helm_env), "ClusterRole")["rules"]
    assert triples(rules) == LEAST_PRIVILEGE
    for rule in rules:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
    assert len(rules) == len({(tuple(r["apiGroups"]), tuple(r["resources"])) for r in rules}), "duplicate rules"


def test_no_rule_grants_secrets_unless_secret_names_are_set(helm_env: dict[str, str]) -> None:
    for docs in (render(helm_env), render(helm_env, 'watchNamespaces=["team-a"]')):
        for role in only(docs, "ClusterRole") + only(docs, "Role"):
            assert not any("secrets" in rule["resources"] for rule in role["rules"]), role["rules"]


@pytest.mark.parametrize("namespaced", [False, True], ids=["cluster-wide", "namespaced"])
def test_secret_names_grant_get_on_those_names_only(helm_env: dict[str, str], namespaced: bool) -> None:
    sets = ['rbac.secretNames=["prom-auth","prom-basic"]']
    if namespaced:
        sets.append('watchNamespaces=["team-a","team-b"]')
    docs = render(helm_env, *sets)
    roles = only(docs, "Role") if namespaced else only(docs, "ClusterRole")
    assert len(roles) == (2 if namespaced else 1)
    for role in roles:
        secret_rules = [rule for rule in role["rules"] if "secrets" in rule["resources"]]
        assert secret_rules == [
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": ["prom-auth", "prom-basic"],
                "verbs": ["get"],
            }
        ]
        others = [rule for rule in role["rules"] if rule not in secret_rules]
        assert triples(others) == LEAST_PRIVILEGE


def test_namespaced_mode_grants_roles_in_the_watched_namespaces_only(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, 'watchNamespaces=["team-a","team-b"]')
    assert not only(docs, "ClusterRole") and not only(docs, "ClusterRoleBinding")
    roles, bindings = only(docs, "Role"), only(docs, "RoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    account = one(docs, "ServiceAccount")["metadata"]
    for role in roles:
        assert triples(role["rules"]) == LEAST_PRIVILEGE
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": roles[0]["metadata"]["name"],
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
        ]
    args = container(docs)["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]


def test_leader_election_adds_a_role_for_one_lease_and_allows_replicas(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, "leaderElection.enabled=true", "replicas=2")
    [role] = only(docs, "Role")
    assert role["metadata"]["namespace"] == "robustness-gate"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["rg-robustness-gate"],
            "verbs": ["get", "update"],
        },
    ]
    [binding] = only(docs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert triples(one(docs, "ClusterRole")["rules"]) == LEAST_PRIVILEGE
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    assert container(docs)["args"][-4:] == [
        "--leader-elect",
        "--lease-namespace=robustness-gate",
        "--lease-name=rg-robustness-gate",
        "--lease-duration=15",
    ]
    default = render(helm_env)
    assert not any("leases" in rule["resources"] for doc in default if "rules" in doc for rule in doc["rules"])
    assert not any(a.startswith("--lease") or a == "--leader-elect" for a in container(default)["args"])


def test_rbac_create_false_renders_no_rbac(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, "rbac.create=false", 'rbac.secretNames=["prom-auth"]', "leaderElection.enabled=true")
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"} & {doc["kind"] for doc in docs}


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ('replicas="two"', "/replicas': got string, want integer"),
        ("replicas=2", "/replicas': maximum: got 2, want 1"),  # only with leaderElection.enabled
        ('leaderElection={"enabled":true,"leaseDuration":1}', "/leaderElection/leaseDuration'"),
        ("replicaCount=1", "additional properties 'replicaCount' not allowed"),
        ('watchNamespaces="team-a"', "/watchNamespaces': got string, want array"),
        ('watchNamespaces=["Team_A"]', "/watchNamespaces/0'"),
        ('rbac.secretNames=["*"]', "/rbac/secretNames/0'"),
        ('rbac.secretName=["prom-auth"]', "additional properties 'secretName' not allowed"),
        ('operator.logFormat="xml"', "/operator/logFormat'"),
        ('ports.http="8080"', "/ports/http': got string, want integer"),
        ('serviceMonitor.enabled="yes"', "/serviceMonitor/enabled': got string, want boolean"),
        ('image.pullPolicy="Sometimes"', "/image/pullPolicy'"),
    ],
)
def test_values_schema_rejects_bad_values(helm_env: dict[str, str], value: str, complaint: str) -> None:
    result = helm(helm_env, "template", "rg", str(CHART), "--set-json", value, check=False)
    assert result.returncode != 0, f"{value} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert complaint in result.stderr, result.stderr


def test_schema_is_strict_at_the_top_level_and_covers_every_value() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False
    assert set(values) <= set(schema["properties"])

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and node.get("additionalProperties") is False:
            assert set(value) <= set(node["properties"]), path
            for key, child in value.items():
                walk(child, node["properties"][key], f"{path}.{key}")

    walk(values, schema, "values")


# ---------------------------------------------------------------- the pod


def test_pod_runs_locked_down(helm_env: dict[str, str]) -> None:
    docs = render(helm_env)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container(docs)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["privileged"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    assert not pod.get("hostNetwork") and not pod.get("hostPID")


def test_deployment_runs_one_operator_with_probes_ports_and_resources(helm_env: dict[str, str]) -> None:
    docs = render(helm_env)
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two operators during an upgrade
    main = container(docs)
    assert main["image"] == f"robustness-gate:{__version__}"
    assert main["args"] == [
        "run",
        "--http-address=0.0.0.0:8080",
        "--metrics-address=0.0.0.0:9090",
        "--log-format=json",
        "--log-level=INFO",
        "--concurrent-steps=16",
    ]
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {"http": 8080, "metrics": 9090}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert main["resources"]["requests"]["cpu"] and main["resources"]["limits"]["memory"]
    assert "RG_NOTIFY_WEBHOOK_URL" not in {e["name"] for e in main["env"]}
    service = one(docs, "Service")
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        "http": (8080, "http"),
        "metrics": (9090, "metrics"),
    }
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template_labels.items()


def test_webhook_url_comes_from_an_optional_secret(helm_env: dict[str, str]) -> None:
    docs = render(helm_env, 'notifications.webhookSecret={"name":"slack","key":"webhook"}')
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["RG_NOTIFY_WEBHOOK_URL"] == {
        "name": "RG_NOTIFY_WEBHOOK_URL",
        "valueFrom": {"secretKeyRef": {"name": "slack", "key": "webhook", "optional": True}},
    }


def test_service_monitor_is_off_by_default_and_scrapes_the_metrics_port(helm_env: dict[str, str]) -> None:
    assert not only(render(helm_env), "ServiceMonitor")
    docs = render(helm_env, "serviceMonitor.enabled=true", 'serviceMonitor.labels={"release":"kube-prometheus"}')
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= one(docs, "Service")["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["robustness-gate"]}
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "scheme": "http", "interval": "30s", "scrapeTimeout": "10s"}
    ]


def test_dashboard_uses_the_operator_metrics(helm_env: dict[str, str]) -> None:
    docs = render(helm_env)
    config_map = one(docs, "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["robustness-gate.json"])
    assert dashboard["uid"] == "robustness-gate" and dashboard["panels"]
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    used = set(re.findall(r"\brobustness_gate_[a-z_]+", " ".join(exprs)))
    histogram = "robustness_gate_analysis_step_seconds"
    normalized = {histogram if name.startswith(histogram + "_") else name for name in used}
    assert normalized == OPERATOR_METRICS
    assert not only(render(helm_env, "dashboard.enabled=false"), "ConfigMap")


# ---------------------------------------------------------------- files that must match others


def test_chart_crd_is_the_generated_crd() -> None:
    chart_crds = sorted(p.name for p in (CHART / "crds").iterdir())
    assert chart_crds == ["robustnessgates.robustness.dev.yaml"]
    assert (CHART / "crds" / chart_crds[0]).read_text() == (ROOT / "crds" / chart_crds[0]).read_text()


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "robustness-gate"
    assert chart["appVersion"] == __version__ == "0.1.0"


def _unknown_fields(value: Any, schema: dict[str, Any], path: str) -> list[str]:
    if isinstance(value, dict) and "properties" in schema:
        found = []
        for key, child in value.items():
            if key not in schema["properties"]:
                found.append(f"{path}.{key}")
            else:
                found += _unknown_fields(child, schema["properties"][key], f"{path}.{key}")
        return found
    if isinstance(value, list) and "items" in schema:
        return [f for i, item in enumerate(value) for f in _unknown_fields(item, schema["items"], f"{path}[{i}]")]
    return []


def test_example_analysis_template_fits_argo_rollouts_v1_8_4() -> None:
    example = CHART / "examples" / "analysis-template.yaml"
    assert example.read_text() == (ROOT / "docs" / "examples" / "analysis-template.yaml").read_text()
    crd_file = ROLLOUTS_CRDS / "analysis-template-crd.yaml"
    if not crd_file.exists():
        pytest.fail(f"no {crd_file}: run `make cluster-build`", pytrace=False)
    crd = yaml.safe_load(crd_file.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    templates = [doc for doc in yaml.safe_load_all(example.read_text()) if doc]
    assert len(templates) == 1
    template = templates[0]
    assert template["apiVersion"] == "argoproj.io/v1alpha1" and template["kind"] == "AnalysisTemplate"
    assert _unknown_fields(template["spec"], schema["properties"]["spec"], "spec") == []
    [metric] = template["spec"]["metrics"]
    assert metric["provider"]["web"]["url"].startswith(
        "http://robustness-gate.robustness-gate.svc:8080/api/v1/verdict/{{args.namespace}}/{{args.gate}}"
    )
    assert metric["provider"]["web"]["jsonPath"] == "{$}"
    assert metric["successCondition"] == 'result.verdict == "pass"'
    assert metric["failureCondition"] == 'result.verdict == "fail"'
    assert metric["interval"] == "30s" and metric["failureLimit"] == 0
    assert metric["inconclusiveLimit"] == metric["count"] == 60  # the gate's maxDuration 30m / 30s
    assert metric["consecutiveSuccessLimit"] == 1
    assert {arg["name"] for arg in template["spec"]["args"]} == {"namespace", "gate", "canary-hash"}


def test_kind_config_is_a_one_node_cluster() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert config["nodes"] == [{"role": "control-plane"}]


def test_dockerfile_runs_the_operator_as_the_charts_user() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    froms = [line.split()[1] for line in instructions if line.startswith("FROM ")]
    assert froms and all(image == "python:3.11-slim" for image in froms), froms
    assert any("pip install ." in line for line in instructions)
    [user] = [line for line in instructions if line.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert uid.isdigit() and int(uid) != 0 and int(uid) == values["podSecurityContext"]["runAsUser"]
    [entrypoint] = [line for line in instructions if line.startswith("ENTRYPOINT ")]
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["robustness-gate"]
    [cmd] = [line for line in instructions if line.startswith("CMD ")]
    assert json.loads(cmd.removeprefix("CMD "))[0] == "run"
    assert instructions.index(user) > max(i for i, line in enumerate(instructions) if line.startswith("RUN "))
