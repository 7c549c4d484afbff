"""The operator counts its Kubernetes API requests and Prometheus queries, and sends one query per metric
and look: fake API objects and a fake Prometheus client, no network."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from fakes import FakePrometheusClient, gate_document, prometheus_source
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_api_client.exceptions import PrometheusApiClientException

from robustness_gate.analysis import replay
from robustness_gate.api import MetricSpec, RobustnessGate, parse_gate
from robustness_gate.errors import KubeError
from robustness_gate.kube import CONNECTION_POOL_SIZE, Kube, api_client
from robustness_gate.metrics.assembly import assemble
from robustness_gate.metrics.prometheus import PrometheusSource
from robustness_gate.metrics.queries import PART_LABEL, Query, combine, metric_queries
from robustness_gate.metrics.source import MetricsError, RawSeries, Window, fetch_all, split_parts
from robustness_gate.metrics.templates import Sides
from robustness_gate.series import CountSeries, HistogramSeries, ValueSeries
from robustness_gate.targets.model import ObjectRef, Patch
from robustness_gate.telemetry import Telemetry
from robustness_gate.telemetry_sink import NULL_TELEMETRY, TelemetrySink

# ---------------------------------------------------------------- Kubernetes API requests


class _Response:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = json.dumps(data).encode()


class _Api:
    """Stands in for every generated API class: any method answers `answer`, or raises `error`."""

    def __init__(self, answer: dict[str, Any] | None = None, error: ApiException | None = None) -> None:
        self.answer = answer or {"metadata": {"name": "x"}, "items": []}
        self.error = error
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> _Response:
            self.calls.append(name)
            if self.error is not None:
                raise self.error
            return _Response(self.answer)

        return call


def _kube(telemetry: TelemetrySink, api: _Api) -> Kube:
    kube = Kube(client.ApiClient(), telemetry)
    kube.apps = kube.core = kube.custom = kube.coordination = api  # type: ignore[assignment]
    return kube


def _requests(telemetry: Telemetry, verb: str, kind: str) -> float:
    value = telemetry.registry.get_sample_value("robustness_gate_api_requests_total", {"verb": verb, "kind": kind})
    return value or 0.0


GATE = {"metadata": {"name": "g", "namespace": "ns", "uid": "u"}}
DEPLOYMENT = {"metadata": {"name": "d", "namespace": "ns", "uid": "u"}, "spec": {"selector": {"matchLabels": {}}}}


def test_every_kube_call_is_counted_by_verb_and_kind() -> None:
    telemetry = Telemetry()
    api = _Api({"metadata": {"name": "x"}, "items": [], "data": {"k": "dmFsdWU="}})
    kube = _kube(telemetry, api)
    kube.gate("ns", "g")
    kube.gate("ns", "g")
    kube.rollout("ns", "r")
    kube.deployment("ns", "d")
    kube.replica_sets(DEPLOYMENT)
    assert kube.secret_value("ns", "s", "k") == "value"
    kube.read_lease("ns", "l")
    kube.write_lease("ns", "l", {"metadata": {}})
    kube.write_lease("ns", "l", {"metadata": {"resourceVersion": "7"}})
    kube.apply("ns", Patch(ObjectRef("Deployment", "d"), {"spec": {"replicas": 0}}))
    kube.apply("ns", Patch(ObjectRef("Rollout", "r"), {"status": {"abort": True}}, subresource="status"))
    kube.patch_gate_status("ns", "g", {"phase": "Analyzing"})
    kube.event(GATE, "Normal", "Test", "message")
    expected = {
        ("get", "RobustnessGate"): 2,
        ("get", "Rollout"): 1,
        ("get", "Deployment"): 1,
        ("list", "ReplicaSet"): 1,
        ("get", "Secret"): 1,
        ("get", "Lease"): 1,
        ("create", "Lease"): 1,
        ("update", "Lease"): 1,
        ("patch", "Deployment"): 1,
        ("patch", "Rollout"): 1,
        ("patch", "RobustnessGate"): 1,
        ("create", "Event"): 1,
    }
    assert {key: _requests(telemetry, *key) for key in expected} == expected
    assert len(api.calls) == sum(expected.values())  # one counted request per API call, no more


@pytest.mark.parametrize("status", [404, 500])
def test_failed_requests_are_counted_too(status: int) -> None:
    telemetry = Telemetry()
    kube = _kube(telemetry, _Api(error=ApiException(status=status, reason="boom")))
    if status == 404:
        assert kube.deployment("ns", "d") is None
    else:
        with pytest.raises(KubeError):
            kube.deployment("ns", "d")
    with pytest.raises(KubeError):
        kube.patch_gate_status("ns", "g", {})
    assert _requests(telemetry, "get", "Deployment") == 1 and _requests(telemetry, "patch", "RobustnessGate") == 1


def test_the_api_client_keeps_enough_connections_for_many_gate_threads(tmp_path: Path) -> None:
    """Requests beyond the pool open a TLS connection each (and drop it): the pool is sized for many gates."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }))  # fmt: skip
    api = api_client(str(kubeconfig))
    assert api.configuration.host == "https://127.0.0.1:6443"
    assert api.configuration.connection_pool_maxsize == CONNECTION_POOL_SIZE >= 100
    assert api.rest_client.pool_manager.connection_pool_kw["maxsize"] == CONNECTION_POOL_SIZE


def test_kube_without_telemetry_counts_nothing_and_works() -> None:
    api = _Api()
    assert _kube(NULL_TELEMETRY, api).gate("ns", "g") == {"metadata": {"name": "x"}, "items": []}
    assert api.calls == ["get_namespaced_custom_object"]


# ---------------------------------------------------------------- Prometheus queries

SPLIT = Sides.by_label("version", "v2", "v1")
# No one label tells the sides apart in one query, and no series can match both (version differs).
PER_SIDE = Sides.parse('version="v2",track="canary"', 'version="v1"')
WINDOW = Window(start=1000.0, step=10.0, looks=3)


def _samples(*values: float) -> list[tuple[float, float]]:
    return [(WINDOW.first + i * WINDOW.step, v) for i, v in enumerate(values)]


def _queries_sent(telemetry: Telemetry) -> float:
    return telemetry.registry.get_sample_value("robustness_gate_prometheus_queries_total") or 0.0


def _counts_metric(kind: str, by: bool) -> MetricSpec:
    group = "sum by ({{by}})" if by else "sum"
    fields = ("errors", "total") if kind == "errorRate" else ("numerator", "denominator")
    return MetricSpec.model_validate(
        {
            "name": "m",
            "slo": {"max": 0.1},
            kind: {
                fields[0]: group + " (increase(e{ {{selector}} }[{{window}}]))",
                fields[1]: group + " (increase(t{ {{selector}} }[{{window}}]))",
            },
        }
    )


def _answers(queries: list[Query], sides: Sides) -> dict[Query, RawSeries]:
    """Different numbers for every part and side, so that a mix-up would show."""
    answers: dict[Query, RawSeries] = {}
    for index, query in enumerate(queries):
        base = 10.0 * (index + 1)
        if query.role == "buckets":
            per_side = [("v2", 1.0), ("v1", 3.0)] if query.side == "both" else [("", 1.0 + index)]
            answers[query] = [
                ({**({"version": value} if value else {}), "le": le}, _samples(scale * n, scale * n, scale * n))
                for value, scale in per_side
                for le, n in (("0.5", 1.0), ("1", 3.0), ("+Inf", 4.0))
            ]
        elif query.side == "both":
            answers[query] = [
                ({"version": "v2"}, _samples(base, base + 1, base + 2)),
                ({"version": "v1"}, _samples(base * 2, base * 2, base * 3)),
            ]
        else:
            answers[query] = [({}, _samples(base + 0.5, math.nan, base + 1))]
    return answers


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    return all(
        np.array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)), equal_nan=True)
        for name in a.__dataclass_fields__
    )


METRICS = {
    "errorRate by label": (_counts_metric("errorRate", True), SPLIT, 2, CountSeries),
    "errorRate per side": (_counts_metric("errorRate", False), PER_SIDE, 4, CountSeries),
    "ratio per side": (_counts_metric("ratio", False), PER_SIDE, 4, CountSeries),
    "latency by label": (
        MetricSpec.model_validate({"name": "m", "latency": {"histogram": "h"}, "slo": {"quantile": 0.9, "max": 1}}),
        SPLIT, 1, HistogramSeries,
    ),
    "drift per side": (
        MetricSpec.model_validate({"name": "m", "drift": {"histogram": "s"}}), PER_SIDE, 2, HistogramSeries,
    ),
    "custom per side": (
        MetricSpec.model_validate({"name": "m", "custom": {"query": "avg(x{ {{selector}} })"}, "slo": {"max": 1}}),
        PER_SIDE, 2, ValueSeries,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(METRICS))
def test_each_metric_kind_sends_one_query_per_look_with_the_same_result(case: str) -> None:
    metric, sides, parts, kind = METRICS[case]
    queries = metric_queries(metric, sides, WINDOW.step)
    assert len(queries) == parts
    answers = _answers(queries, sides)
    telemetry = Telemetry()
    fake = FakePrometheusClient(answers)
    data = prometheus_source(fake, telemetry).fetch(metric, sides, WINDOW)
    assert fake.sent == [combine(queries)] and _queries_sent(telemetry) == 1
    assert isinstance(data, kind)
    assert _same(data, assemble(metric, sides, WINDOW, answers))  # what the separate queries would give


def _three_metric_gate() -> RobustnessGate:
    metrics = [
        {"name": name, **METRICS[case][0].model_dump(by_alias=True, exclude_none=True, exclude={"name"})}
        for name, case in (("e", "errorRate by label"), ("l", "latency by label"), ("c", "custom per side"))
    ]
    return parse_gate(gate_document(metrics, namespace="ns", interval="10s"))


def test_one_step_of_a_three_metric_gate_sends_one_query_with_each_metrics_own_data() -> None:
    gate = _three_metric_gate()
    answers: dict[Query, RawSeries] = {}
    for metric in gate.spec.metrics:
        answers.update(_answers(metric_queries(metric, SPLIT, WINDOW.step), SPLIT))
    telemetry = Telemetry()
    fake = FakePrometheusClient(answers)
    source = prometheus_source(fake, telemetry)
    fetched = source.fetch_many(gate.spec.metrics, SPLIT, WINDOW)
    assert len(fake.sent) == 1 and _queries_sent(telemetry) == 1
    for metric in gate.spec.metrics:
        alone = assemble(metric, SPLIT, WINDOW, _answers(metric_queries(metric, SPLIT, WINDOW.step), SPLIT))
        assert _same(fetched[metric.name], alone), metric.name
    report = replay(gate, SPLIT, source, WINDOW.start, WINDOW.last)
    assert report.looks == 3 and len(fake.sent) == 2 and _queries_sent(telemetry) == 2


def test_metrics_that_cannot_be_combined_are_asked_one_by_one_and_not_combined_again() -> None:
    gate = _three_metric_gate()
    answers: dict[Query, RawSeries] = {}
    for metric in gate.spec.metrics:
        answers.update(_answers(metric_queries(metric, SPLIT, WINDOW.step), SPLIT))

    class _BadData:
        status_code = 400
        text = '{"status": "error", "errorType": "bad_data", "error": "cannot combine these"}'

        def json(self) -> Any:
            return json.loads(self.text)

    class _RefusesLongQueries(FakePrometheusClient):
        def custom_query_range(self, promql: str, **kwargs: Any) -> list[dict[str, Any]]:
            if promql.count(PART_LABEL) > 3:  # what a template Prometheus cannot tag would cause
                self.sent.append(promql)
                source._last_response = _BadData()  # type: ignore[assignment]
                raise PrometheusApiClientException("HTTP Status Code 400")
            return super().custom_query_range(promql, **kwargs)

    fake = _RefusesLongQueries(answers)
    source = prometheus_source(fake, Telemetry())
    first = source.fetch_many(gate.spec.metrics, SPLIT, WINDOW)
    assert len(fake.sent) == 1 + len(gate.spec.metrics)  # the combined one, then one per metric
    second = source.fetch_many(gate.spec.metrics, SPLIT, WINDOW)
    assert len(fake.sent) == 1 + 2 * len(gate.spec.metrics)
    for metric in gate.spec.metrics:
        alone = assemble(metric, SPLIT, WINDOW, _answers(metric_queries(metric, SPLIT, WINDOW.step), SPLIT))
        assert _same(first[metric.name], alone) and _same(second[metric.name], alone)


def test_a_metric_whose_answer_is_unreadable_does_not_lose_the_others() -> None:
    gate = _three_metric_gate()
    answers: dict[Query, RawSeries] = {}
    for metric in gate.spec.metrics:
        answers.update(_answers(metric_queries(metric, SPLIT, WINDOW.step), SPLIT))
    latency = gate.spec.metrics[1]
    for query in metric_queries(latency, SPLIT, WINDOW.step):  # no +Inf bucket: not a classic histogram
        answers[query] = [(labels, samples) for labels, samples in answers[query] if labels["le"] != "+Inf"]
    fetched = prometheus_source(FakePrometheusClient(answers), Telemetry()).fetch_many(gate.spec.metrics, SPLIT, WINDOW)
    error = fetched[latency.name]
    assert isinstance(error, MetricsError) and error.kind == "data" and "+Inf" in str(error)
    assert isinstance(fetched["e"], CountSeries) and isinstance(fetched["c"], ValueSeries)
    with pytest.raises(MetricsError, match=r"\+Inf"):
        fetch_all(prometheus_source(FakePrometheusClient(answers), Telemetry()), gate.spec.metrics, SPLIT, WINDOW)


def test_failed_queries_are_counted() -> None:
    telemetry = Telemetry()
    metric = _counts_metric("errorRate", True)
    fake = FakePrometheusClient(
        _answers(metric_queries(metric, SPLIT, WINDOW.step), SPLIT),
        error=requests.exceptions.ConnectionError("refused"),
    )
    with pytest.raises(MetricsError, match="cannot reach Prometheus"):
        prometheus_source(fake, telemetry).fetch(metric, SPLIT, WINDOW)
    assert _queries_sent(telemetry) == 1  # unreachable: no second try part by part


def test_a_store_that_drops_the_part_label_is_asked_part_by_part() -> None:
    metric = _counts_metric("errorRate", True)
    queries = metric_queries(metric, SPLIT, WINDOW.step)
    answers = _answers(queries, SPLIT)

    class _Untagged(FakePrometheusClient):
        def custom_query_range(self, promql: str, **kwargs: Any) -> list[dict[str, Any]]:
            result = super().custom_query_range(promql, **kwargs)
            return [
                {"metric": {k: v for k, v in r["metric"].items() if k != PART_LABEL}, "values": r["values"]}
                for r in result
            ]

    telemetry = Telemetry()
    fake = _Untagged(answers)
    data = prometheus_source(fake, telemetry).fetch(metric, SPLIT, WINDOW)
    assert fake.sent == [combine(queries), queries[0].promql, queries[1].promql] and _queries_sent(telemetry) == 3
    assert _same(data, assemble(metric, SPLIT, WINDOW, answers))


def test_combine_tags_each_part_and_split_parts_undoes_it() -> None:
    metric = _counts_metric("errorRate", False)
    queries = metric_queries(metric, PER_SIDE, 30)
    promql = combine(queries)
    # Three `or` join the four parts; each part's exact increments hold one more.
    assert promql.count(" or ") == 3 + 4 and promql.count(f'"{PART_LABEL}"') == 4
    for query in queries:
        assert f'label_replace({query.promql}, "{PART_LABEL}", "{query.part}", "", "")' in promql
    assert len({query.part for query in queries}) == 4
    single = metric_queries(MetricSpec.model_validate({"name": "m", "drift": {"histogram": "s"}}), SPLIT, 30)
    assert combine(single) == single[0].promql  # nothing to combine: sent as it is
    answer: RawSeries = [({PART_LABEL: q.part, "a": str(i)}, _samples(i)) for i, q in enumerate(queries)]
    split = split_parts(queries, answer)
    assert split == {q: [({"a": str(i)}, _samples(i))] for i, q in enumerate(queries)}
    assert split_parts(queries, [({"a": "1"}, _samples(1))]) is None
    assert split_parts(queries, [({PART_LABEL: "nonsense"}, _samples(1))]) is None


def test_range_query_window_is_unchanged() -> None:
    """The combined query covers the same looks as the separate ones did."""
    seen: dict[str, Any] = {}

    class _Spy(FakePrometheusClient):
        def custom_query_range(self, promql: str, **kwargs: Any) -> list[dict[str, Any]]:
            seen.update(kwargs)
            return super().custom_query_range(promql, **kwargs)

    metric = _counts_metric("errorRate", True)
    fake = _Spy(_answers(metric_queries(metric, SPLIT, WINDOW.step), SPLIT))
    prometheus_source(fake, Telemetry()).fetch(metric, SPLIT, WINDOW)
    assert seen["start_time"] == datetime.fromtimestamp(WINDOW.first, seen["start_time"].tzinfo)
    assert seen["end_time"] == datetime.fromtimestamp(WINDOW.last, seen["end_time"].tzinfo) and seen["step"] == "10s"


def _burn(seconds: float) -> None:
    import time

    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_step_cpu_is_counted_to_the_innermost_part() -> None:
    import time

    telemetry = Telemetry()
    wall = time.monotonic()
    with telemetry.step_part("other"):
        _burn(0.02)
        with telemetry.step_part("judge"):
            _burn(0.03)
            with telemetry.step_part("prometheus"):
                _burn(0.04)
        time.sleep(0.05)  # waiting is not CPU time

    def part(name: str) -> float:
        return telemetry.registry.get_sample_value("robustness_gate_step_cpu_seconds_total", {"part": name}) or 0.0

    assert 0.04 <= part("prometheus") < 0.06
    assert 0.03 <= part("judge") < 0.05
    assert 0.02 <= part("other") < 0.04
    assert part("other") + part("judge") + part("prometheus") < time.monotonic() - wall - 0.04


def test_the_process_as_a_whole_is_measured_too() -> None:
    registry = Telemetry().registry
    assert (registry.get_sample_value("process_cpu_seconds_total") or 0.0) > 0.0
    assert (registry.get_sample_value("process_resident_memory_bytes") or 0.0) > 10 * 2**20


def test_parts_given_no_telemetry_record_to_one_that_keeps_nothing() -> None:
    assert Kube(client.ApiClient()).telemetry is NULL_TELEMETRY
    assert PrometheusSource("http://127.0.0.1:9").telemetry is NULL_TELEMETRY
    sink: TelemetrySink = NULL_TELEMETRY
    sink.score.labels("ns", "g").set(1.0)
    sink.decisions.labels("ns", "g", "Promote", "Promote").inc()
    sink.step_lateness.observe(0.1)
    sink.api_request("get", "Deployment")
    sink.prometheus_query()
    sink.watch_phases(lambda: ["Analyzing"])
    with sink.step_part("other"), sink.step_part("judge"):
        pass
    sink.forget("ns", "g")
    assert vars(NULL_TELEMETRY) == {}
