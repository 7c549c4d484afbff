"""The per-gate look cache gives exactly what an uncached fetch of every look gives, asks only for the
looks it has not seen (plus the last two again), and the per-gate sources live as long as their gate.

The fake store answers every query with random samples per series and timestamp, through the same
`metric_queries` and `assemble` as the Prometheus source, so a narrower window sees the same samples
a wider one does, as a range query does.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from fakes import FakePrometheusClient, WorkerKube, prometheus_source
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from robustness_gate.api import MetricSpec, PrometheusSpec
from robustness_gate.metrics.assembly import assemble
from robustness_gate.metrics.cache import REFETCH_LOOKS, CachedSource, splice
from robustness_gate.metrics.gate_sources import MIN_IDLE_SECONDS, SWEEP_SECONDS, GateKey, GateSources, fingerprint
from robustness_gate.metrics.prometheus import Credentials
from robustness_gate.metrics.queries import BOTH, OVERLAP, Query, metric_queries
from robustness_gate.metrics.source import MetricsError, RawSeries, Window
from robustness_gate.metrics.templates import Sides
from robustness_gate.series import CountSeries, HistogramSeries, MetricData, ValueSeries
from robustness_gate.telemetry import Telemetry
from robustness_gate.workers import GateWorkers

START = 1_700_000_000.0
SPLIT = Sides.by_label("version", "v2", "v1")
PER_SIDE = Sides.parse('version="v2"', 'track="stable"')
OTHER_SPLIT = Sides.by_label("version", "v3", "v1")
SIDES = [SPLIT, PER_SIDE, OTHER_SPLIT]
BOUNDS = ("0.1", "0.5", "1", "+Inf")


def _metric(kind: str, variant: int = 0) -> MetricSpec:
    """Metric specs of every kind; `variant` changes the PromQL (another label filter)."""
    label = f'job="j{variant}"'
    if kind == "errorRate":
        return MetricSpec.model_validate({"name": "m", "slo": {"max": 0.1}, "errorRate": {
            "errors": f"sum by ({{{{by}}}}) (increase(e{{ {label}, {{{{selector}}}} }}[{{{{window}}}}]))",
            "total": f"sum by ({{{{by}}}}) (increase(t{{ {label}, {{{{selector}}}} }}[{{{{window}}}}]))"}})  # fmt: skip
    if kind == "ratio":
        return MetricSpec.model_validate({"name": "m", "slo": {"max": 0.1}, "ratio": {
            "numerator": f"sum(increase(n{{ {label}, {{{{selector}}}} }}[{{{{window}}}}]))",
            "denominator": f"sum(increase(d{{ {label}, {{{{selector}}}} }}[{{{{window}}}}]))"}})  # fmt: skip
    if kind == "latency":
        return MetricSpec.model_validate(
            {"name": "m", "latency": {"histogram": "h", "labels": label}, "slo": {"quantile": 0.9, "max": 1}}
        )
    if kind == "drift":
        return MetricSpec.model_validate({"name": "m", "drift": {"histogram": "s", "labels": label}})
    assert kind == "custom"
    return MetricSpec.model_validate(
        {"name": "m", "custom": {"query": f"avg(x{{ {label}, {{{{selector}}}} }})"}, "slo": {"max": 1}}
    )


KINDS = ["errorRate", "ratio", "latency", "drift", "custom"]


@dataclass
class RawStore:
    """A metric store with random samples per (PromQL, series, timestamp), each present with `presence`.

    `revise` draws new samples at some timestamps: samples Prometheus ingested late.
    """

    seed: int = 0
    presence: float = 0.9
    samples: dict[tuple[str, tuple[tuple[str, str], ...], float], float | None] = field(default_factory=dict)
    requested: list[Window] = field(default_factory=list)
    scrapes: dict[tuple[tuple[tuple[str, str], ...], float], bool] = field(default_factory=dict)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def _series(self, query: Query, sides: Sides, histogram: bool) -> list[dict[str, str]]:
        if query.side == OVERLAP:
            return []  # the sides' series are distinct: nothing matches both selectors
        if query.side == BOTH:
            split = sides.split()
            assert split is not None and query.split_label is not None
            # A third value of the split label is neither side's: assemble skips it.
            sets = [{query.split_label: value} for value in (split.canary, split.baseline, "other")]
        elif histogram or query.role == "value":
            sets = [{}]
        else:
            sets = [{"code": "500"}, {"code": "503"}]  # summed per side
        if histogram:
            return [{**labels, "le": le} for labels in sets for le in BOUNDS]
        return sets

    def _sample(self, promql: str, labels: dict[str, str], timestamp: float, role: str = "") -> float | None:
        key = (promql, tuple(sorted(labels.items())), timestamp)
        if key not in self.samples:
            # A missing scrape misses every series of it (all buckets, both counters) at once.
            scrape = (tuple(sorted((k, v) for k, v in labels.items() if k not in ("le", "code"))), timestamp)
            if scrape not in self.scrapes:
                self.scrapes[scrape] = self.rng.random() < self.presence
            present = self.scrapes[scrape]
            # Data that can be right: buckets cumulative, bad events fewer than all events (assemble refuses
            # the rest); a missing sample still can make a look refused, on every path alike.
            offset = 100.0 * BOUNDS.index(labels["le"]) if "le" in labels else 200.0 * (role == "total")
            self.samples[key] = round(offset + self.rng.uniform(0, 50), 3) if present else None
        return self.samples[key]

    def fetch(self, metric: MetricSpec, sides: Sides, window: Window) -> MetricData:
        self.requested.append(window)
        histogram = metric.kind in ("latency", "drift")
        stamps = [window.first + i * window.step for i in range(window.looks)]
        raw: dict[Query, RawSeries] = {}
        for query in metric_queries(metric, sides, window.step):
            raw[query] = []
            for labels in self._series(query, sides, histogram):
                found = [(t, v) for t in stamps if (v := self._sample(query.promql, labels, t, query.role)) is not None]
                if found:  # a range query leaves out series without a sample in the range
                    raw[query].append((labels, found))
        return assemble(metric, sides, window, raw)

    def revise(self, timestamps: set[float]) -> None:
        for key in [key for key in self.samples if key[2] in timestamps]:
            del self.samples[key]


def _same(a: MetricData, b: MetricData) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, HistogramSeries) and isinstance(b, HistogramSeries) and a.bounds != b.bounds:
        return False
    if isinstance(a, HistogramSeries) and isinstance(b, HistogramSeries):
        # which bucket series each side returned at each look: joined rows must carry what one answer would
        if (a.seen is None) != (b.seen is None):
            return False
        if (
            a.seen is not None
            and b.seen is not None
            and not all(np.array_equal(x, y) and x.dtype == np.bool_ for x, y in zip(a.seen, b.seen, strict=True))
        ):
            return False
    fields = [name for name in a.__dataclass_fields__ if name not in ("bounds", "seen")]
    return all(
        np.asarray(getattr(a, name)).dtype == np.float64
        and np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True)
        for name in fields
    )


def _outcome(fetch: Any) -> MetricData | str:
    try:
        data: MetricData = fetch()
        return data
    except MetricsError as error:
        return f"{error.kind}: {error}"


def _assert_same_outcome(cached: MetricData | str, full: MetricData | str) -> None:
    if isinstance(cached, str) or isinstance(full, str):
        assert cached == full
    else:
        assert _same(cached, full)


# ---------------------------------------------------------------- exactness

STEP_ACTIONS = st.one_of(
    st.tuples(st.just("advance"), st.integers(0, 4)),
    st.tuples(st.just("revise"), st.integers(1, 2)),  # late samples in the two newest looks
    st.tuples(st.just("spec"), st.integers(0, 2)),
    st.tuples(st.just("sides"), st.integers(0, 2)),
    st.tuples(st.just("start"), st.integers(1, 3)),
    st.tuples(st.just("interval"), st.sampled_from([5.0, 10.0, 30.0])),
)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("presence", [0.95, 0.5])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), actions=st.lists(STEP_ACTIONS, min_size=1, max_size=25))
def test_cached_steps_give_the_arrays_of_an_uncached_fetch_of_every_look(
    kind: str, presence: float, seed: int, actions: list[tuple[str, Any]]
) -> None:
    store = RawStore(seed, presence)
    cached_source = CachedSource(store)
    start, step, looks, variant, sides = START, 10.0, 1, 0, SPLIT
    for action, value in [("advance", 0), *actions]:
        if action == "advance":
            looks += value
        elif action == "revise":
            store.revise({start + (looks - i) * step for i in range(value)})
        elif action == "spec":
            variant = value
        elif action == "sides":
            sides = SIDES[value]
        elif action == "start":  # a new canary revision: another analysis
            start, looks = start + 1000.0 * value, 1
        else:
            step = value
        metric, window = _metric(kind, variant), Window(start, step, looks)
        cached = _outcome(lambda m=metric, w=window, s=sides: cached_source.fetch(m, s, w))
        full = _outcome(lambda m=metric, w=window, s=sides: store.fetch(m, s, w))
        _assert_same_outcome(cached, full)


def test_each_step_asks_only_for_the_new_looks_and_the_last_two_cached() -> None:
    store = RawStore(seed=7, presence=1.0)
    source = CachedSource(store)
    metric = _metric("latency")
    looks = 0
    rng = random.Random(3)
    for _ in range(40):
        new = rng.randint(1, 3)
        looks += new
        before = len(store.requested)
        data = source.fetch(metric, SPLIT, Window(START, 10.0, looks))
        asked = store.requested[before:]
        assert len(asked) == 1  # one fetch, so one query, per metric and step
        assert asked[0].last == START + looks * 10.0
        assert asked[0].looks <= new + REFETCH_LOOKS
        assert data.looks == looks
    assert sum(window.looks for window in store.requested) < 40 * (3 + REFETCH_LOOKS)


def test_any_change_of_what_the_data_depend_on_fetches_every_look_again() -> None:
    store = RawStore(seed=1)
    source = CachedSource(store)
    window = Window(START, 10.0, 6)
    base = _metric("errorRate")
    source.fetch(base, SPLIT, window)
    changes = [
        (base, SPLIT, Window(START, 10.0, 7)),  # control: only the new look and the last two again
        (_metric("errorRate", 1), SPLIT, Window(START, 10.0, 8)),  # another PromQL
        (base.model_copy(update={"critical": True}), SPLIT, Window(START, 10.0, 9)),  # another spec
        (base, OTHER_SPLIT, Window(START, 10.0, 10)),  # other sides
        (base, OTHER_SPLIT, Window(START + 1, 10.0, 10)),  # another start
        (base, OTHER_SPLIT, Window(START + 1, 5.0, 20)),  # another interval
    ]
    asked = []
    for metric, sides, changed in changes:
        before = len(store.requested)
        _assert_same_outcome(source.fetch(metric, sides, changed), store.fetch(metric, sides, changed))
        asked.append(store.requested[before].looks)
    assert asked == [1 + REFETCH_LOOKS, 8, 9, 10, 10, 20]


def test_a_histogram_whose_buckets_appear_later_is_fetched_whole_once() -> None:
    class Late(RawStore):
        """No canary buckets before look 5: the first answers have no histogram at all."""

        def fetch(self, metric: MetricSpec, sides: Sides, window: Window) -> MetricData:
            if window.first + 4 * window.step > START + 40.0:
                return super().fetch(metric, sides, window)
            self.requested.append(window)
            zeros = np.zeros((window.looks, 2))
            return HistogramSeries(bounds=(1.0,), canary=zeros, baseline=zeros.copy())

    store = Late(seed=2, presence=1.0)
    source = CachedSource(store)
    metric = _metric("drift")
    for looks in range(1, 12):
        window = Window(START, 10.0, looks)
        data = source.fetch(metric, SPLIT, window)
        assert _same(data, store.fetch(metric, SPLIT, window))


def test_cached_rows_cannot_be_changed_by_the_judge() -> None:
    source = CachedSource(RawStore(seed=4))
    data = source.fetch(_metric("custom"), SPLIT, Window(START, 10.0, 5))
    assert isinstance(data, ValueSeries)
    with pytest.raises(ValueError, match="read-only"):
        data.canary[0] = 1.0


def test_splice_keeps_the_head_and_appends_the_tail() -> None:
    head = CountSeries(*(np.arange(4.0) + k for k in range(4)))
    tail = CountSeries(*(np.full(3, 9.0 + k) for k in range(4)))
    joined = splice(head, 2, tail)
    assert isinstance(joined, CountSeries)
    assert joined.canary_events.tolist() == [0.0, 1.0, 9.0, 9.0, 9.0]
    other = HistogramSeries((1.0,), np.zeros((3, 2)), np.zeros((3, 2)))
    assert splice(HistogramSeries((0.5,), np.zeros((4, 2)), np.zeros((4, 2))), 2, other) is None
    assert splice(head, 2, other) is None


# ---------------------------------------------------------------- queries counted per step


def test_one_query_per_metric_and_step_is_counted_and_only_new_looks_are_asked() -> None:
    telemetry = Telemetry()
    client = FakePrometheusClient()
    prometheus = prometheus_source(client, telemetry)
    source = CachedSource(prometheus)
    metrics = [_metric(kind).model_copy(update={"name": kind}) for kind in KINDS]
    for looks in range(1, 21):
        for metric in metrics:
            source.fetch(metric, SPLIT, Window(START, 10.0, looks))
    assert telemetry.registry.get_sample_value("robustness_gate_prometheus_queries_total") == 20 * len(metrics)
    first, last = client.ranges[-1]
    assert last == START + 200.0 and (last - first) / 10.0 + 1 == 1 + REFETCH_LOOKS


# ---------------------------------------------------------------- one source per gate


@dataclass
class _Closable:
    spec: PrometheusSpec
    credentials: Credentials
    closed: bool = False

    def fetch(self, metric: MetricSpec, sides: Sides, window: Window) -> MetricData:
        return ValueSeries(np.zeros(window.looks), np.zeros(window.looks))

    def close(self) -> None:
        self.closed = True


@dataclass
class _Factory:
    made: list[_Closable] = field(default_factory=list)

    def __call__(self, spec: PrometheusSpec, credentials: Credentials) -> _Closable:
        self.made.append(_Closable(spec, credentials))
        return self.made[-1]


GATE = GateKey("ns", "g", "uid-1")
SPEC = PrometheusSpec(address="http://prometheus:9090")


def _use(
    sources: GateSources,
    gate: GateKey = GATE,
    spec: PrometheusSpec = SPEC,
    credentials: Credentials | None = None,
    interval: float = 10.0,
) -> CachedSource:
    with sources.lease(gate, spec, credentials or Credentials(), interval) as source:
        return source


def test_a_gate_keeps_its_source_until_its_prometheus_or_credentials_change() -> None:
    factory, now = _Factory(), [0.0]
    sources = GateSources(factory, lambda: now[0])
    first = _use(sources)
    assert _use(sources) is first and len(factory.made) == 1
    moved = _use(sources, spec=PrometheusSpec(address="http://other:9090"))
    assert moved is not first and factory.made[0].closed and not factory.made[1].closed
    rotated = _use(sources, spec=PrometheusSpec(address="http://other:9090"), credentials=Credentials("token-2"))
    assert rotated is not moved and factory.made[1].closed
    assert factory.made[2].credentials.bearer_token == "token-2"
    assert _use(sources, GateKey("ns", "g", "uid-2")) is not rotated  # the same name, created again
    assert sources.count() == 2


def test_deleted_idle_and_stopped_gates_lose_their_sources() -> None:
    factory, now = _Factory(), [0.0]
    sources = GateSources(factory, lambda: now[0])
    _use(sources, GateKey("ns", "a", "1"))
    _use(sources, GateKey("ns", "b", "2"))
    sources.forget(GateKey("ns", "a", "1"))
    assert factory.made[0].closed and sources.count() == 1
    sources.forget(GateKey("ns", "a", "1"))  # twice is harmless
    now[0] = MIN_IDLE_SECONDS + SWEEP_SECONDS + 1  # b not stepped for longer than a few intervals
    _use(sources, GateKey("ns", "c", "3"))
    assert factory.made[1].closed and sources.count() == 1
    sources.close()
    assert factory.made[2].closed and sources.count() == 0


def test_a_source_in_use_is_not_taken_for_idle() -> None:
    factory, now = _Factory(), [0.0]
    sources = GateSources(factory, lambda: now[0])
    with sources.lease(GATE, SPEC, Credentials(), 10.0):
        now[0] = 10 * MIN_IDLE_SECONDS
        _use(sources, GateKey("ns", "other", "9"))
        assert not factory.made[0].closed
    assert sources.count() == 2


def test_secrets_are_only_inside_the_source() -> None:
    secret = "s3cr3t-token"
    credentials = Credentials(bearer_token=secret, username="u", password="pw-" + secret)
    digest = fingerprint(SPEC, credentials)
    assert secret not in digest and digest != fingerprint(SPEC, Credentials(bearer_token="other"))
    sources = GateSources(_Factory(), time.time)
    _use(sources, credentials=credentials)
    assert secret not in repr(sources) and secret not in repr(credentials)


# ---------------------------------------------------------------- the controller and its workers


def test_the_controller_keeps_one_source_per_gate_and_asks_only_for_new_looks() -> None:
    from fakes import HEALTHY, T0, harness, make_gate, make_rollout

    analysis = {"interval": "10s", "minDuration": "2m", "maxDuration": "5m"}  # no decision in these steps
    h = harness(make_gate(analysis=analysis), make_rollout(), **HEALTHY)
    made: list[Any] = []

    def factory(spec: Any, credentials: Any) -> Any:
        made.append(spec)
        return h.source

    h.controller = type(h.controller)(h.kube, source_factory=factory, clock=h.clock)
    h.step()
    for _ in range(5):
        h.next()
    assert len(made) == 1
    windows = [window for _, _, window in h.source.fetched]
    assert [w.looks for w in windows] == [1, 2, 3, 3, 3]  # looks 1; 1-2; 1-3; 2-4; 3-5
    assert windows[-1].start == T0 + 2 * 10.0
    h.controller = type(h.controller)(h.kube, source_factory=factory, clock=h.clock)  # a restart
    h.next()
    assert h.source.fetched[-1][2].start == T0 and h.source.fetched[-1][2].looks == 6


class _Controller:
    def __init__(self) -> None:
        self.forgotten: list[tuple[str, str, str]] = []
        self.closed = threading.Event()
        self.stepped = threading.Event()

    def step(self, body: dict[str, Any]) -> float:
        self.stepped.set()
        return 3600.0

    def forget(self, namespace: str, name: str, uid: str) -> None:
        self.forgotten.append((namespace, name, uid))

    def close(self) -> None:
        self.closed.set()


def test_a_deleted_gate_closes_its_source_and_a_stopped_operator_closes_all() -> None:
    controller = _Controller()
    workers = GateWorkers(WorkerKube(), controller)  # type: ignore[arg-type]
    body = {"metadata": {"namespace": "ns", "name": "g", "uid": "u1", "generation": 1}}
    workers.seen(body, deleted=False)
    assert controller.stepped.wait(10)
    workers.seen(body, deleted=True)
    deadline = time.monotonic() + 10
    while not controller.forgotten and time.monotonic() < deadline:
        time.sleep(0.01)
    assert controller.forgotten == [("ns", "g", "u1")]
    workers.stop_all()
    assert controller.closed.is_set()


def test_memory_is_the_arrays_of_the_looks() -> None:
    source = CachedSource(RawStore(seed=5))
    source.fetch(_metric("latency"), SPLIT, Window(START, 10.0, 100))
    source.fetch(_metric("errorRate").model_copy(update={"name": "e"}), SPLIT, Window(START, 10.0, 100))
    # 2 sides × 4 buckets × 100 looks, and 4 count arrays × 100 looks, of 8 bytes; which buckets each side
    # returned at each look, 1 byte each
    assert source.nbytes == 8 * (2 * len(BOUNDS) * 100 + 4 * 100) + 2 * len(BOUNDS) * 100


def test_queries_are_rendered_once_per_metric_object_sides_and_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from robustness_gate.metrics import queries as queries_module

    rendered: list[str] = []
    real = queries_module.metric_queries

    def counting(metric: MetricSpec, sides: Sides, step: float, where: str = "") -> list[Query]:
        rendered.append(metric.name)
        return real(metric, sides, step, where)

    monkeypatch.setattr(queries_module, "metric_queries", counting)
    memo = queries_module.QueryMemo()
    metric = _metric("errorRate")
    first = memo.queries(metric, SPLIT, 10.0)
    assert first == real(metric, SPLIT, 10.0)
    assert memo.queries(metric, Sides.by_label("version", "v2", "v1"), 10.0) is first  # equal sides
    assert memo.spec_json(metric, SPLIT, 10.0) == metric.model_dump_json() and len(rendered) == 1
    assert memo.queries(metric, OTHER_SPLIT, 10.0) == real(metric, OTHER_SPLIT, 10.0)  # other sides
    assert memo.queries(metric, OTHER_SPLIT, 30.0) == real(metric, OTHER_SPLIT, 30.0)  # another step
    edited = _metric("errorRate", variant=1)  # an edited spec is a new object under the same name
    assert memo.queries(edited, OTHER_SPLIT, 30.0) == real(edited, OTHER_SPLIT, 30.0)
    assert memo.spec_json(edited, OTHER_SPLIT, 30.0) == edited.model_dump_json()
    assert len(rendered) == 4


class BatchStore(RawStore):
    """RawStore answering several metrics per request, as PrometheusSource.fetch_many does."""

    def __init__(self, seed: int, presence: float) -> None:
        super().__init__(seed, presence)
        self.batches: list[tuple[tuple[str, ...], Window]] = []

    def fetch_many(self, metrics: list[MetricSpec], sides: Sides, window: Window) -> dict[str, Any]:
        self.batches.append((tuple(metric.name for metric in metrics), window))
        fetched: dict[str, Any] = {}
        for metric in metrics:
            try:
                fetched[metric.name] = RawStore.fetch(self, metric, sides, window)
            except MetricsError as error:
                assert error.kind == "data"
                fetched[metric.name] = error
        return fetched


def _named(kind: str, variant: int) -> MetricSpec:
    return _metric(kind, variant).model_copy(update={"name": kind})


@pytest.mark.parametrize("presence", [0.95, 0.5])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    actions=st.lists(
        st.one_of(STEP_ACTIONS, st.tuples(st.just("one spec"), st.integers(0, len(KINDS) - 1))), min_size=1, max_size=20
    ),
)
# Found by this test: the baseline's only le="1" sample, in the newest look, is ingested anew without it; the
# look kept from before had the baseline without that bucket, the refetched looks no baseline bucket at all.
@example(
    seed=17458,
    actions=[("spec", 1), ("one spec", 0), ("advance", 1), ("one spec", 4), ("spec", 0), ("advance", 1), ("revise", 1)],
)
def test_all_metrics_of_a_gate_cached_together_give_what_each_gives_uncached(
    presence: float, seed: int, actions: list[tuple[str, Any]]
) -> None:
    store = BatchStore(seed, presence)
    cached_source = CachedSource(store)
    start, step, looks, sides = START, 10.0, 1, SPLIT
    variants = dict.fromkeys(KINDS, 0)
    for action, value in [("advance", 0), *actions]:
        if action == "advance":
            looks += value
        elif action == "revise":
            store.revise({start + (looks - i) * step for i in range(value)})
        elif action == "spec":
            variants = dict.fromkeys(KINDS, value)
        elif action == "one spec":  # one metric edited: its looks are fetched anew, the others' kept
            variants[KINDS[value]] += 1
        elif action == "sides":
            sides = SIDES[value]
        elif action == "start":
            start, looks = start + 1000.0 * value, 1
        else:
            step = value
        metrics, window = [_named(kind, variants[kind]) for kind in KINDS], Window(start, step, looks)
        fetched = cached_source.fetch_many(metrics, sides, window)
        for metric in metrics:
            result = fetched[metric.name]
            cached = f"{result.kind}: {result}" if isinstance(result, MetricsError) else result
            _assert_same_outcome(cached, _outcome(lambda m=metric, w=window, s=sides: RawStore.fetch(store, m, s, w)))


def test_a_steady_gate_asks_for_the_new_looks_of_all_its_metrics_in_one_request() -> None:
    store = BatchStore(seed=5, presence=1.0)
    source = CachedSource(store)
    metrics = [_named(kind, 0) for kind in KINDS]
    source.fetch_many(metrics, SPLIT, Window(START, 10.0, 3))
    assert store.batches == [(tuple(KINDS), Window(START, 10.0, 3))]
    for looks in range(4, 12):
        store.batches.clear()
        source.fetch_many(metrics, SPLIT, Window(START, 10.0, looks))
        keep = looks - 1 - REFETCH_LOOKS
        assert store.batches == [(tuple(KINDS), Window(START + keep * 10.0, 10.0, looks - keep))]
    store.batches.clear()
    edited = [*metrics[:2], _named(KINDS[2], 1), *metrics[3:]]
    source.fetch_many(edited, SPLIT, Window(START, 10.0, 12))
    kept = tuple(kind for kind in KINDS if kind != KINDS[2])
    assert store.batches == [(kept, Window(START + 9 * 10.0, 10.0, 3)), ((KINDS[2],), Window(START, 10.0, 12))]
