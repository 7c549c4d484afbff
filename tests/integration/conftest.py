"""Fixtures that run a real Prometheus scraping a simulated service fleet, all on 127.0.0.1.

``lab`` (session scope) is one FakeService serving ``LAB_VARIANTS`` plus one Prometheus scraping it
every second.  Tests that need their own servers use the ``start_prometheus`` / ``start_fake_service``
factories, which stop everything they started at the end of the test.  A missing Prometheus binary
fails the run: these tests are never skipped.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hack import promlab
from hack.fakeservice import FakeService, Variant
from hack.promlab import PrometheusServer

LAB_JOB = "fakeservice"
LAB_SCRAPE_INTERVAL_SECONDS = 1.0
# Upper bound on how long the lab's service process lives; the fixture stops it earlier.
LAB_SERVICE_DURATION = float(os.environ.get("PROMLAB_SERVICE_DURATION", "1800"))

# Two apps, each with a baseline ("stable") and a canary.  "checkout" has a clearly worse canary
# (errors, latency, score shift, nulls); "search" has a canary identical to its baseline.
LAB_VARIANTS: tuple[Variant, ...] = (
    Variant(app="checkout", version="stable", rps=500, error_rate=0.01, latency_median=0.05,
            latency_sigma=0.5, score_mu=0.0, score_sigma=1.0, null_rate=0.01, seed=101),
    Variant(app="checkout", version="canary", rps=500, error_rate=0.05, latency_median=0.08,
            latency_sigma=0.5, score_mu=0.5, score_sigma=1.0, null_rate=0.05, seed=102),
    Variant(app="search", version="stable", rps=200, error_rate=0.02, latency_median=0.02,
            latency_sigma=0.4, score_mu=-0.5, score_sigma=0.8, null_rate=0.0, seed=201),
    Variant(app="search", version="canary", rps=200, error_rate=0.02, latency_median=0.02,
            latency_sigma=0.4, score_mu=-0.5, score_sigma=0.8, null_rate=0.0, seed=202),
    # One regression each, for the analyze scenarios: errors x3, latency x2, prediction drift.
    Variant(app="errors", version="stable", rps=200, error_rate=0.01, latency_median=0.03, seed=301),
    Variant(app="errors", version="canary", rps=200, error_rate=0.03, latency_median=0.03, seed=302),
    Variant(app="latency", version="stable", rps=200, error_rate=0.01, latency_median=0.03, seed=401),
    Variant(app="latency", version="canary", rps=200, error_rate=0.01, latency_median=0.06, seed=402),
    Variant(app="drift", version="stable", rps=200, error_rate=0.01, latency_median=0.03, score_mu=0.0,
            seed=501),
    Variant(app="drift", version="canary", rps=200, error_rate=0.01, latency_median=0.03, score_mu=0.6,
            seed=502),
    Variant(app="healthy", version="stable", rps=200, error_rate=0.01, latency_median=0.03, seed=601),
    Variant(app="healthy", version="canary", rps=200, error_rate=0.01, latency_median=0.03, seed=602),
    # A canary that receives no traffic at all.
    Variant(app="idle", version="stable", rps=200, error_rate=0.01, latency_median=0.03, seed=701),
    Variant(app="idle", version="canary", rps=0, error_rate=0.01, latency_median=0.03, seed=702),
)  # fmt: skip


@dataclass(frozen=True)
class Lab:
    """The running session lab: a Prometheus scraping one fake service."""

    prometheus: PrometheusServer
    service: FakeService
    variants: tuple[Variant, ...]
    job: str = LAB_JOB
    scrape_interval: float = LAB_SCRAPE_INTERVAL_SECONDS

    @property
    def url(self) -> str:
        """Base URL of the Prometheus HTTP API."""
        return self.prometheus.url

    def variant(self, app: str, version: str) -> Variant:
        for v in self.variants:
            if (v.app, v.version) == (app, version):
                return v
        raise KeyError((app, version))

    def wait_for_history(self, seconds: float, timeout: float | None = None) -> None:
        """Block until Prometheus holds at least ``seconds`` of scrapes of the service."""
        needed = math.ceil(seconds / self.scrape_interval) + 1
        self.prometheus.wait_for_samples(
            f'min(count_over_time(up{{job="{self.job}"}}[1h]))',
            needed,
            timeout=timeout if timeout is not None else seconds + 30.0,
        )


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """Path of the Prometheus binary; fails the test run (never skips) if it is not installed."""
    try:
        promlab.resolve_promtool_bin()
        return promlab.resolve_prometheus_bin()
    except RuntimeError as err:
        pytest.fail(f"integration tests need a real Prometheus: {err}", pytrace=False)


@pytest.fixture(scope="session")
def lab_variants() -> tuple[Variant, ...]:
    return LAB_VARIANTS


@pytest.fixture(scope="session")
def lab(prometheus_bin: str) -> Iterator[Lab]:
    with (
        FakeService(LAB_VARIANTS, duration=LAB_SERVICE_DURATION) as service,
        PrometheusServer(
            [service.target],
            scrape_interval=LAB_SCRAPE_INTERVAL_SECONDS,
            job_name=LAB_JOB,
            max_lifetime=LAB_SERVICE_DURATION,
        ) as prom,
    ):
        # Every (app, version, code) series has been scraped at least once.
        prom.wait_for_samples(f'count(http_requests_total{{job="{LAB_JOB}"}})', 2 * len(LAB_VARIANTS), timeout=30)
        yield Lab(prometheus=prom, service=service, variants=LAB_VARIANTS)


@pytest.fixture
def start_prometheus(prometheus_bin: str) -> Iterator[Callable[..., PrometheusServer]]:
    """Factory: ``start_prometheus(targets, **kwargs)`` returns a started PrometheusServer."""
    started: list[PrometheusServer] = []

    def start(targets: Sequence[str] = (), **kwargs: Any) -> PrometheusServer:
        server = PrometheusServer(targets, **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def start_fake_service() -> Iterator[Callable[..., FakeService]]:
    """Factory: ``start_fake_service(variants, **kwargs)`` returns a started FakeService."""
    started: list[FakeService] = []

    def start(variants: Sequence[Variant | Mapping[str, Any]], **kwargs: Any) -> FakeService:
        kwargs.setdefault("duration", 300.0)
        service = FakeService(variants, **kwargs)
        started.append(service)
        return service.start()

    yield start
    for service in reversed(started):
        service.stop()
