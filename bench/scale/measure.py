"""Pure readings: CPU time and peak memory from /proc, and the operator's metrics from their text form."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def cpu_seconds(stat: str, ticks_per_second: int | None = None) -> float:
    """utime + stime of a /proc/<pid>/stat line, in seconds (the command may contain spaces and ')')."""
    fields = stat[stat.rindex(")") + 2 :].split()
    # After "pid (comm) ", field 3 (state) is fields[0]: utime and stime are fields 14 and 15.
    utime, stime = int(fields[11]), int(fields[12])
    ticks = ticks_per_second or os.sysconf("SC_CLK_TCK")
    return (utime + stime) / ticks


def machine_busy_seconds(stat: str, ticks_per_second: int | None = None) -> float:
    """CPU seconds all CPUs spent busy, from the first line of /proc/stat: everything but idle and iowait
    (guest time is already inside user and nice)."""
    first = stat.splitlines()[0].split()
    if first[0] != "cpu":
        raise ValueError("/proc/stat does not start with the all-CPU line")
    user, nice, system, _idle, _iowait, irq, softirq, *rest = (int(value) for value in first[1:])
    steal = rest[0] if rest else 0
    ticks = ticks_per_second or os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq + steal) / ticks


def status_kib(status: str, key: str) -> int:
    """A "Key:   123 kB" value of /proc/<pid>/status (VmHWM is the peak resident set)."""
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    raise ValueError(f"no {key} in the status text")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse_exposition(text: str) -> list[Sample]:
    """Samples of the Prometheus text format (comments skipped)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line.strip())
        if match is None:
            raise ValueError(f"unreadable exposition line: {line!r}")
        labels = {key: value.replace('\\"', '"').replace("\\\\", "\\") for key, value in _LABEL.findall(match[3] or "")}
        samples.append(Sample(match[1], labels, float(match[4])))
    return samples


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def by_label(samples: list[Sample], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in samples:
        if s.name == name:
            out[s.labels.get(label, "")] = out.get(s.labels.get(label, ""), 0.0) + s.value
    return out


def buckets(samples: list[Sample], histogram: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of a histogram, sorted by bound."""
    found = [(float(s.labels["le"]), s.value) for s in samples if s.name == f"{histogram}_bucket"]
    return sorted(found)


def difference(after: list[tuple[float, float]], before: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Bucket counts accumulated between two readings of the same histogram."""
    earlier = dict(before)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]


def quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """As PromQL's histogram_quantile: linear within the bucket; the highest finite bound if in +Inf."""
    if not cumulative or cumulative[-1][1] <= 0:
        return math.nan
    rank = q * cumulative[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


def mean(cumulative: list[tuple[float, float]]) -> float:
    """Mean observation, each bucket's count at its midpoint (the +Inf bucket at its lower bound)."""
    total_sum, lower_bound, lower_count = 0.0, 0.0, 0.0
    for bound, count in cumulative:
        point = lower_bound if math.isinf(bound) else (lower_bound + bound) / 2
        total_sum += (count - lower_count) * point
        lower_bound, lower_count = bound, count
    return total_sum / cumulative[-1][1] if cumulative and cumulative[-1][1] > 0 else math.nan


def share_at_most(limit: float, cumulative: list[tuple[float, float]]) -> float:
    """Exact share of observations ≤ `limit` when `limit` is a bucket bound."""
    counts = dict(cumulative)
    if limit not in counts:
        raise ValueError(f"{limit} is not a bucket bound")
    all_count = cumulative[-1][1]
    return counts[limit] / all_count if all_count > 0 else math.nan
