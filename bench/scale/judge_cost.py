"""CPU time of the judge for one step of the benchmark's gate, by the age of the analysis.

A step judges every look since the analysis started, so its cost grows with the looks taken; the
operator measurements only see analyses a few minutes old. Here the same gate (error rate, latency
p99, prediction drift) is judged in-process on seeded data shaped like the exporter's: its buckets,
its error share, an even traffic split.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from bench.scale import exporter, lab
from robustness_gate.api import parse_gate
from robustness_gate.judge import judge_gate
from robustness_gate.series import CountSeries, HistogramSeries, MetricData

LOOKS = (10, 60, 360)  # 100 s, 10 min and 1 h of 10 s looks
REQUESTS_PER_LOOK = 200.0  # per side


def _cdf_shares(cdf: Sequence[float]) -> np.ndarray:
    cumulative = np.array([*cdf, 1.0])
    return np.diff(np.concatenate(([0.0], cumulative)))


def gate_data(looks: int, seed: int = 7) -> dict[str, MetricData]:
    rng = np.random.default_rng(seed)
    gate = parse_gate(lab.gate_manifest("bench", "gate", "canary", "stable", "http://127.0.0.1:1", "app"))
    latency = _cdf_shares([exporter._lognormal_cdf(b) for b in exporter.LATENCY_BUCKETS])
    score = _cdf_shares([exporter._score_cdf(b) for b in exporter.SCORE_BUCKETS])
    data: dict[str, MetricData] = {}
    for metric in gate.spec.metrics:
        sides = [rng.poisson(REQUESTS_PER_LOOK, looks).astype(float) for _ in range(2)]
        if metric.error_rate is not None:
            bad = [rng.binomial(total.astype(np.int64), exporter.ERROR_SHARE).astype(float) for total in sides]
            data[metric.name] = CountSeries(bad[0], sides[0], bad[1], sides[1])
        else:
            bounds, shares = (
                (exporter.LATENCY_BUCKETS, latency) if metric.latency is not None else (exporter.SCORE_BUCKETS, score)
            )
            counts = [np.array([rng.multinomial(int(n), shares) for n in total], dtype=float) for total in sides]
            data[metric.name] = HistogramSeries(tuple(bounds), counts[0], counts[1])
    return data


def judge_milliseconds(looks: Sequence[int] = LOOKS, repeats: int = 15) -> list[tuple[int, float]]:
    """Median CPU milliseconds of one judge_gate call, per number of looks."""
    gate = parse_gate(lab.gate_manifest("bench", "gate", "canary", "stable", "http://127.0.0.1:1", "app"))
    measured = []
    for count in looks:
        data = gate_data(count)
        judge_gate(gate.spec, data)  # warm caches and imports
        times = []
        for _ in range(repeats):
            started = time.process_time()
            judge_gate(gate.spec, data)
            times.append(time.process_time() - started)
        measured.append((count, 1000.0 * float(np.median(times))))
    return measured


def per_look_growth(measured: Sequence[tuple[int, float]]) -> float:
    """Milliseconds added per look, from the first and last points."""
    (first_looks, first_ms), (last_looks, last_ms) = measured[0], measured[-1]
    return (last_ms - first_ms) / (last_looks - first_looks) if last_looks != first_looks else math.nan
