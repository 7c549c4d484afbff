"""Per-look counts from a real Prometheus are the counters' exact changes between looks.

Two hours of counters scraped every 15 s with jitter (two scrapes per 30 s look) are written with
promtool, so the true change between any two looks is known. The queries the operator sends must
reproduce it exactly; Prometheus' own `increase()` over the same windows drops the events between
two windows' samples and doubles the rest, which is why the operator does not use it as written.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hack.openmetrics import MetricFamily, Series, write_openmetrics_backfill
from hack.promlab import PrometheusServer

from robustness_gate.api import MetricSpec
from robustness_gate.metrics.prometheus import PrometheusSource
from robustness_gate.metrics.source import Window
from robustness_gate.metrics.templates import Sides
from robustness_gate.series import CountSeries

SCRAPE = 15.0
LOOK = 30.0
HOURS = 2
RATE = {"v1": 4.0, "v2": 1.0, "restarted": 2.0, "new": 2.0}  # requests per second
ERROR_SHARE = 0.05


def _counter(rng: np.random.Generator, times: np.ndarray, rate: float, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (all, errors) counts at each scrape time for Poisson traffic with binomial errors."""
    gaps = np.diff(times, prepend=times[0] - SCRAPE)
    requests = rng.poisson(rate * gaps)
    errors = rng.binomial(requests, share)
    return np.cumsum(requests).astype(float), np.cumsum(errors).astype(float)


def _value_at(times: np.ndarray, values: np.ndarray, at: float) -> float:
    """The counter as an instant query at `at` sees it: its last sample at or before `at`."""
    index = int(np.searchsorted(times, at, side="right")) - 1
    return float(values[index]) if index >= 0 else 0.0


@dataclass(frozen=True)
class History:
    start: float
    end: float
    path: Path
    # Per version: scrape times, counter values (requests, errors) and the events since the scrape before.
    truth: dict[str, tuple[np.ndarray, ...]]

    def true_counts(self, version: str, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Events per look: those first counted by a scrape in (look - step, look], resets or not."""
        times, _, _, new_requests, new_errors = self.truth[version]
        looks = [window.first + k * window.step for k in range(window.looks)]

        def changes(events: np.ndarray) -> np.ndarray:
            running = np.cumsum(events)
            return np.array([_value_at(times, running, t) - _value_at(times, running, t - window.step) for t in looks])

        return changes(new_errors), changes(new_requests)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    end = float(int(time.time()) // 3600 * 3600 - 3600)
    start = end - HOURS * 3600
    rng = np.random.default_rng(20261203)
    scrapes = int(HOURS * 3600 // SCRAPE)
    truth: dict[str, tuple[np.ndarray, ...]] = {}
    series: list[Series] = []
    for version, rate in RATE.items():
        # Scrapes every 15 s with up to 2 s of jitter, as real scrapes drift.
        times = start + np.arange(scrapes) * SCRAPE + rng.uniform(0.0, 2.0, scrapes)
        requests, errors = _counter(rng, times, rate, ERROR_SHARE)
        new_requests, new_errors = np.diff(requests, prepend=0.0), np.diff(errors, prepend=0.0)
        if version == "restarted":  # the process restarts half-way: its counters start again from 0
            half = scrapes // 2
            requests[half:] -= requests[half - 1]
            errors[half:] -= errors[half - 1]
        if version == "new":  # a pod that appears half-way, its counters starting from 0
            times, requests, errors = times[scrapes // 2 :], requests[scrapes // 2 :], errors[scrapes // 2 :]
            requests, errors = requests - requests[0], errors - errors[0]
            new_requests, new_errors = np.diff(requests, prepend=0.0), np.diff(errors, prepend=0.0)
        truth[version] = (times, requests, errors, new_requests, new_errors)
        for code, counts in (("200", requests - errors), ("500", errors)):
            points = [(float(t), float(c)) for t, c in zip(times, counts, strict=True)]
            series.append(Series("requests_total", {"version": version, "code": code}, points))
    path = write_openmetrics_backfill(
        tmp_path_factory.mktemp("exact") / "history.om", [MetricFamily("requests", "counter", "requests", series)]
    )
    return History(start=start, end=end, path=path, truth=truth)


ERROR_RATE = MetricSpec.model_validate(
    {
        "name": "errors",
        "errorRate": {
            "errors": 'sum by ({{by}}) (increase(requests_total{code="500",{{selector}}}[{{window}}]))',
            "total": "sum by ({{by}}) (increase(requests_total{ {{selector}} }[{{window}}]))",
        },
        "slo": {"max": 0.1},
    }
)
SIDES = Sides.by_label("version", "v2", "v1")


@pytest.fixture(scope="module")
def source(history: History, prometheus_bin: str) -> Iterator[PrometheusSource]:
    """A real Prometheus serving the backfilled history, and a source reading it."""
    with PrometheusServer(backfill=history.path) as prometheus:
        yield PrometheusSource(prometheus.url)


@pytest.fixture(scope="module")
def window(history: History) -> Window:
    """Looks from 10 minutes in (every counter has samples before the first look) to the end."""
    return Window.between(history.start + 600, history.end - 60, LOOK)


def _as_written(source: PrometheusSource, version: str, window: Window) -> np.ndarray:
    """Per-look `increase()` as Prometheus computes it, for one version's requests."""
    written = f'sum(increase(requests_total{{version="{version}"}}[30s]))'
    ((_, samples),) = source.range_query(written, window, "as written")
    values = np.full(window.looks, np.nan)
    for timestamp, value in samples:
        values[round((timestamp - window.first) / LOOK)] = value
    return values


def test_per_look_counts_are_the_exact_counter_changes(
    history: History, source: PrometheusSource, window: Window
) -> None:
    data = source.fetch(ERROR_RATE, SIDES, window)
    assert isinstance(data, CountSeries) and data.looks == window.looks > 200
    for version, events, total in (("v2", data.canary_events, data.canary_total),
                                   ("v1", data.baseline_events, data.baseline_total)):  # fmt: skip
        true_errors, true_requests = history.true_counts(version, window)
        np.testing.assert_array_equal(total, true_requests)
        np.testing.assert_array_equal(events, true_errors)
    # The looks partition the traffic: their sum is the counter's change over the whole window.
    times, requests, *_ = history.truth["v1"]
    assert data.baseline_total.sum() == _value_at(times, requests, window.last) - _value_at(
        times, requests, window.start
    )


def test_increase_as_written_is_over_dispersed_and_the_exact_counts_are_not(
    source: PrometheusSource, window: Window
) -> None:
    """Why the rewrite: Poisson counts have variance/mean 1; increase() over 2 scrapes gives about 2."""
    as_written = _as_written(source, "v1", window)
    exact = source.fetch(ERROR_RATE, SIDES, window)
    assert isinstance(exact, CountSeries)

    def dispersion(counts: np.ndarray) -> float:
        return float(counts.var(ddof=1) / counts.mean())

    # Both estimate the same rate (4 requests/s, 120 per look) ...
    assert as_written.mean() == pytest.approx(RATE["v1"] * LOOK, rel=0.1)
    assert exact.baseline_total.mean() == pytest.approx(RATE["v1"] * LOOK, rel=0.05)
    # ... but over ~230 looks the variance/mean of Poisson counts is 1 ± 0.1, and increase() doubles it.
    assert 0.7 < dispersion(exact.baseline_total) < 1.35
    assert dispersion(as_written) > 1.6
    print(f"variance/mean: exact {dispersion(exact.baseline_total):.2f}, increase() {dispersion(as_written):.2f}")


def test_a_restart_or_a_new_series_costs_one_approximate_look(
    history: History, source: PrometheusSource, window: Window
) -> None:
    """A counter that resets or starts within a look falls back to increase() for that look only."""
    data = source.fetch(ERROR_RATE, Sides.by_label("version", "restarted", "new"), window)
    assert isinstance(data, CountSeries)
    looks = window.first + np.arange(window.looks) * LOOK
    for version, total in (("restarted", data.canary_total), ("new", data.baseline_total)):
        times = history.truth[version][0]
        changed = times[len(times) // 2] if version == "restarted" else times[0]
        approximate = int(np.searchsorted(looks, changed))  # the look whose window holds the change
        _, true_requests = history.true_counts(version, window)
        exact = np.arange(window.looks) != approximate
        np.testing.assert_array_equal(total[exact], true_requests[exact])
        # That look is what increase() makes of it (handling the reset), never negative.
        extrapolated = _as_written(source, version, window)[approximate]
        assert total[approximate] == pytest.approx(extrapolated) and extrapolated > 0
