"""hack/fakeservice.py's pods: even traffic split, error bursts (random and forced) and counter resets."""

from __future__ import annotations

import itertools
import json
import threading

import numpy as np
import pytest
from hack import fakeservice
from hack.fakeservice import BurstClock, Variant, VariantSim, burst_windows
from prometheus_client import CollectorRegistry, generate_latest

TICK = fakeservice.TICK_SECONDS


def run(sim: VariantSim, seconds: float) -> None:
    for _ in range(round(seconds / TICK)):
        sim.step(TICK)


def counts(sim: VariantSim) -> list[tuple[int, int]]:
    """(requests, errors) of every pod."""
    return [(pod.requests, pod.errors) for pod in sim.pods]


def live(variant: Variant) -> VariantSim:
    return VariantSim(variant, fakeservice._rng(variant, fakeservice._LIVE_STREAM))


def exposition(*sims: VariantSim) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(fakeservice.FleetCollector(sims, "version", threading.Lock()))
    return generate_latest(registry).decode()


def test_a_forced_burst_raises_only_its_pods_error_rate_and_only_while_it_lasts() -> None:
    variant = Variant(
        app="m", version="v1", rps=6000, pods=3, error_rate=0.01, burst_error_rate=0.15,
        forced_bursts=((1, 20.0, 30.0),), seed=4,
    )  # fmt: skip
    sim = live(variant)
    run(sim, 20)
    before = counts(sim)
    run(sim, 30)
    during = counts(sim)
    run(sim, 20)
    after = counts(sim)

    def rate(start: list[tuple[int, int]], end: list[tuple[int, int]], pod: int) -> float:
        return (end[pod][1] - start[pod][1]) / (end[pod][0] - start[pod][0])

    assert before[1][1] / before[1][0] == pytest.approx(0.01, abs=0.002)
    assert rate(before, during, 1) == pytest.approx(0.15, abs=0.005)
    assert rate(during, after, 1) == pytest.approx(0.01, abs=0.002)
    for pod in (0, 2):
        assert rate([(0, 0)] * 3, after, pod) == pytest.approx(0.01, abs=0.002)
    # The traffic is split evenly: 2,000 requests/s per pod.
    for requests, _ in after:
        assert requests == pytest.approx(2000 * 70, rel=0.01)


def test_a_step_partly_inside_a_burst_gets_the_burst_rate_for_that_part() -> None:
    variant = Variant(app="m", version="v1", forced_bursts=((0, 20.0, 10.0), (0, 25.0, 10.0)))
    clock = BurstClock(variant, 0)
    assert clock.share(15.0, 25.0) == pytest.approx(0.5)
    assert clock.share(25.0, 40.0) == pytest.approx(10.0 / 15.0)  # the two overlapping bursts count once
    assert clock.share(40.0, 50.0) == 0.0
    assert burst_windows(variant, 0, 100.0) == [(20.0, 35.0)]


def test_random_bursts_last_between_min_and_max_and_start_about_once_per_burst_every() -> None:
    variant = Variant(app="m", version="v1", pods=2, burst_every=300.0, burst_min=30.0, burst_max=120.0, seed=9)
    horizon = 3_000_000.0
    windows = burst_windows(variant, 1, horizon)
    lengths = np.array([end - begin for begin, end in windows])
    gaps = np.array([b[0] - a[1] for a, b in itertools.pairwise(windows)])
    assert lengths.min() >= 30.0 and lengths.max() <= 120.0
    assert lengths.mean() == pytest.approx(75.0, rel=0.03)
    assert gaps.min() > 0 and gaps.mean() == pytest.approx(300.0, rel=0.03)
    assert len(windows) == pytest.approx(horizon / 375.0, rel=0.03)
    assert burst_windows(variant, 0, horizon) != windows, "every pod has its own schedule"


def test_the_simulation_follows_the_published_schedule_of_random_bursts() -> None:
    variant = Variant(app="m", version="v1", rps=3000, pods=1, burst_every=20.0, burst_min=5.0, burst_max=10.0, seed=2)
    begin, end = burst_windows(variant, 0, 200.0)[0]
    sim = live(variant)
    run(sim, round(begin) + 1)  # ticks are 0.1 s: round to whole seconds inside the window
    first = counts(sim)[0]
    run(sim, round(end) - round(begin) - 2)
    last = counts(sim)[0]
    assert (last[1] - first[1]) / (last[0] - first[0]) == pytest.approx(0.15, abs=0.01)


def test_draws_and_bursts_are_deterministic_for_a_seed() -> None:
    variant = Variant(app="m", version="v1", rps=500, pods=3, burst_every=10.0, burst_min=1.0, burst_max=3.0, seed=7)
    first, second, other = live(variant), live(variant), live(Variant(**{**variant.to_dict(), "seed": 8}))
    for sim in (first, second, other):
        run(sim, 30)
    assert counts(first) == counts(second)
    assert np.array_equal(first.latency_counts, second.latency_counts)
    assert counts(first) != counts(other)
    assert burst_windows(variant, 2, 100.0) == burst_windows(variant, 2, 100.0)
    assert burst_windows(variant, 2, 100.0) != burst_windows(variant, 2, 100.0, backfill=True)


def test_a_pod_reset_drops_its_counters_to_zero_and_they_count_on() -> None:
    variant = Variant(app="m", version="v1", rps=3000, pods=3, pod_resets=((2, 10.0),), seed=5)
    sim = live(variant)
    run(sim, 9.9)
    before = counts(sim)
    sim.step(TICK)  # [9.9, 10.0) ends at the reset: at 10 s the counters hold only this step's draws
    just_after = counts(sim)
    run(sim, 5)
    later = counts(sim)
    assert before[2][0] == pytest.approx(1000 * 9.9, rel=0.05)
    assert 0 < just_after[2][0] < 200, "the pod's counters restarted from 0"
    assert later[2][0] == pytest.approx(1000 * 5.1, rel=0.05)
    assert sim.pods[2].latency_counts.sum() == later[2][0] and sim.pods[2].observations == later[2][0]
    assert [pod.restarts for pod in sim.pods] == [0, 0, 1]
    for pod in (0, 1):
        assert later[pod][0] > just_after[pod][0] > before[pod][0]


def test_pods_are_series_with_a_pod_label_that_sum_to_the_version() -> None:
    with_pods = live(Variant(app="m", version="v2", rps=400, pods=2, seed=1))
    without = live(Variant(app="m", version="v1", rps=400, seed=3))
    run(with_pods, 2)
    run(without, 2)
    text = exposition(without, with_pods)
    assert text.count("# TYPE http_requests_total counter") == 1  # one family for all variants
    assert 'http_requests_total{app="m",code="200",version="v1"}' in text
    for pod in ("m-v2-0", "m-v2-1"):
        assert f'http_requests_total{{app="m",code="500",pod="{pod}",version="v2"}}' in text
        assert f'http_request_duration_seconds_bucket{{app="m",le="+Inf",pod="{pod}",version="v2"}}' in text
        assert f'model_feature_null_total{{app="m",feature="device_fingerprint",pod="{pod}",version="v2"}}' in text
    assert "pod=" not in "".join(line for line in text.splitlines() if 'version="v1"' in line)
    assert with_pods.requests == sum(pod.requests for pod in with_pods.pods)
    assert with_pods.latency_counts.sum() == with_pods.requests


def test_the_burst_fields_survive_json_and_bad_ones_are_refused() -> None:
    # Lists, as JSON gives them: the variant keeps them as tuples.
    bursts, resets = [[1, 5, 60]], [[0, 30]]
    variant = Variant(app="m", version="v1", pods=2, burst_every=60, forced_bursts=bursts, pod_resets=resets)  # type: ignore[arg-type]
    assert variant.forced_bursts == ((1, 5, 60),)
    assert fakeservice.load_variants(json.dumps([variant.to_dict()])) == [variant]
    for bad in (
        {"pods": 2, "forced_bursts": [(2, 0.0, 10.0)]},  # no pod 2
        {"forced_bursts": [(1, 0.0, 10.0)]},  # a variant without pods is pod 0 only
        {"forced_bursts": [(0, 0.0, 0.0)]},
        {"pod_resets": [(0, -1.0)]},
        {"burst_min": 60.0, "burst_max": 30.0},
        {"burst_error_rate": 1.5},
        {"pods": -1},
    ):
        with pytest.raises(ValueError, match="invalid"):
            Variant.from_mapping({"app": "m", "version": "v1", **bad})


def test_a_backfill_has_the_pods_bursts_and_resets() -> None:
    variant = Variant(
        app="m", version="v1", rps=200, pods=2, forced_bursts=((0, 600.0, 300.0),), pod_resets=((1, 1800.0),), seed=6
    )
    start = 1.7e9
    families, totals = fakeservice.backfill_families([variant], start=start, end=start + 3600, step=15)
    requests = {(s.labels["pod"], s.labels["code"]): dict(s.points) for s in families[0].series}
    assert set(requests) == {(pod, code) for pod in ("m-v1-0", "m-v1-1") for code in ("200", "500")}

    def errors_between(pod: str, t0: float, t1: float) -> float:
        bad, good = requests[(pod, "500")], requests[(pod, "200")]
        errors = bad[start + t1] - bad[start + t0]
        return errors / (errors + good[start + t1] - good[start + t0])

    assert errors_between("m-v1-0", 600, 900) == pytest.approx(0.15, abs=0.02)
    assert errors_between("m-v1-0", 0, 600) == pytest.approx(0.01, abs=0.005)
    reset = requests[("m-v1-1", "200")]
    assert reset[start + 1800] < reset[start + 1785], "the reset pod's counter dropped"
    final = sum(points[start + 3600] for points in requests.values())
    assert totals[("m", "v1")].requests == final
