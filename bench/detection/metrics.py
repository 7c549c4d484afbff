"""What the peers' queries return: windowed rates, histogram_quantile and PSI, vectorised over runs."""

from __future__ import annotations

import itertools

import numpy as np
from numpy.typing import NDArray

from bench.detection.scenarios import PSI_EPSILON, Scenario
from bench.detection.simulate import Streams

FloatArray = NDArray[np.float64]


def window_sums(counts: NDArray[np.int64], ends: NDArray[np.int64], width: int) -> FloatArray:
    """Sum over ticks (ends - width, ends] along axis 1 (any trailing axes kept), like increase(x[w])."""
    padded = np.concatenate([np.zeros_like(counts[:, :1]), np.cumsum(counts, axis=1)], axis=1)
    return np.asarray(padded[:, ends] - padded[:, np.maximum(ends - width, 0)], dtype=float)


def histogram_quantile(q: float, bounds: tuple[float, ...], counts: FloatArray) -> FloatArray:
    """Prometheus' histogram_quantile over the last axis (buckets, last = +Inf); NaN without data."""
    cumulative = np.cumsum(counts, axis=-1)
    total = cumulative[..., -1]
    rank = q * total
    index = np.minimum(np.sum(cumulative < rank[..., None], axis=-1), counts.shape[-1] - 1)
    upper_bounds = np.asarray((*bounds, bounds[-1]), dtype=float)
    lower_bounds = np.asarray((0.0, *bounds), dtype=float)
    below = (
        np.take_along_axis(cumulative, index[..., None], axis=-1)[..., 0]
        - np.take_along_axis(counts, index[..., None], axis=-1)[..., 0]
    )
    in_bucket = np.take_along_axis(counts, index[..., None], axis=-1)[..., 0]
    start, end = lower_bounds[index], upper_bounds[index]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = start + (end - start) * (rank - below) / in_bucket
    # In the +Inf bucket Prometheus returns the highest finite bound.
    value = np.where(index == counts.shape[-1] - 1, bounds[-1], value)
    return np.asarray(np.where(total > 0, value, np.nan), dtype=float)


def psi(canary: FloatArray, baseline: FloatArray) -> FloatArray:
    """PSI over the last axis with empty buckets floored at PSI_EPSILON; NaN when a side is empty."""
    c_total, b_total = canary.sum(axis=-1), baseline.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.maximum(canary / c_total[..., None], PSI_EPSILON)
        e = np.maximum(baseline / b_total[..., None], PSI_EPSILON)
        a, e = a / a.sum(axis=-1, keepdims=True), e / e.sum(axis=-1, keepdims=True)
        value = np.sum((a - e) * np.log(a / e), axis=-1)
    return np.asarray(np.where((c_total > 0) & (b_total > 0), value, np.nan), dtype=float)


def bucket_mean(bounds: tuple[float, ...], counts: FloatArray) -> FloatArray:
    """Mean from bucket midpoints (outer buckets at one bucket width beyond their bound); NaN if empty."""
    width = bounds[1] - bounds[0]
    mids = np.asarray(
        [
            bounds[0] - width / 2,
            *((a + b) / 2 for a, b in itertools.pairwise(bounds)),
            bounds[-1] + width / 2,
        ],
        dtype=float,
    )
    total = counts.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(total > 0, (counts @ mids) / total, np.nan), dtype=float)


def _rates(bad: FloatArray, total: FloatArray) -> FloatArray:
    """bad / total, NaN without traffic; `bad` may carry a trailing axis of count metrics over the same total."""
    if bad.ndim == total.ndim + 1:
        total = total[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(total > 0, bad / total, np.nan), dtype=float)


def canary_value(scenario: Scenario, streams: Streams, ends: NDArray[np.int64], width: int) -> FloatArray:
    """The canary's metric over a window ending at each tick in `ends` (runs x len(ends) [x count metrics]);
    NaN = no data.

    Error rate (bad / total), p99 latency in seconds, or PSI of the canary's scores against the baseline's.
    """
    if scenario.kind == "errors":
        return _rates(window_sums(streams.canary_bad, ends, width), window_sums(streams.canary_total, ends, width))
    canary = window_sums(streams.canary_bad, ends, width)
    if scenario.kind == "latency":
        return histogram_quantile(0.99, scenario.bounds, canary)
    return psi(canary, window_sums(streams.baseline_bad, ends, width))


def kayenta_points(scenario: Scenario, streams: Streams, step_ticks: int) -> tuple[FloatArray, FloatArray]:
    """Per-step time series (runs x steps [x count metrics]) for canary and baseline, NaN where a step has no
    data."""
    ends = np.arange(step_ticks, streams.canary_total.shape[1] + 1, step_ticks, dtype=np.int64)
    if scenario.kind == "errors":
        out = []
        for bad, total in ((streams.canary_bad, streams.canary_total), (streams.baseline_bad, streams.baseline_total)):
            out.append(_rates(window_sums(bad, ends, step_ticks), window_sums(total, ends, step_ticks)))
        return out[0], out[1]
    canary = window_sums(streams.canary_bad, ends, step_ticks)
    baseline = window_sums(streams.baseline_bad, ends, step_ticks)
    if scenario.kind == "latency":
        return (
            histogram_quantile(0.99, scenario.bounds, canary),
            histogram_quantile(0.99, scenario.bounds, baseline),
        )
    return bucket_mean(scenario.bounds, canary), bucket_mean(scenario.bounds, baseline)
