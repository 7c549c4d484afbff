"""OpenMetrics text for promtool's backfill: metric families and series with their points, written as a file
that ``promtool tsdb create-blocks-from openmetrics`` accepts (every sample timestamped in seconds, series in
time order, ``# EOF`` at the end) and checked first, since promtool drops bad samples silently.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MIN_PLAUSIBLE_TS = 1_000_000_000.0  # 2001-09-09
MAX_FUTURE_SECONDS = 86400.0

_METRIC_NAME_RE = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

MetricType = Literal["counter", "gauge", "histogram", "unknown"]

_SUFFIXES: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
    "unknown": ("",),
}


@dataclass(frozen=True)
class Series:
    """One time series: full sample name (e.g. ``foo_total``, ``foo_bucket``), labels and points.

    ``points`` are ``(unix_seconds, value)`` with strictly increasing timestamps.
    """

    name: str
    labels: Mapping[str, str]
    points: Sequence[tuple[float, float]]


@dataclass(frozen=True)
class MetricFamily:
    """A metric family as OpenMetrics names it: ``foo`` for counter samples ``foo_total``."""

    name: str
    type: MetricType
    help: str
    series: Sequence[Series]


def format_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _check_family(family: MetricFamily, now: float) -> None:
    if not _METRIC_NAME_RE.match(family.name):
        raise ValueError(f"invalid metric family name {family.name!r}")
    if family.type == "counter" and family.name.endswith("_total"):
        raise ValueError(f"counter family {family.name!r}: name the family without the _total suffix")
    allowed = {family.name + suffix for suffix in _SUFFIXES[family.type]}
    for series in family.series:
        if series.name not in allowed:
            raise ValueError(f"sample {series.name!r} does not belong to {family.type} {family.name!r}")
        for label in series.labels:
            if not LABEL_NAME_RE.match(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} on {series.name}")
        if series.name.endswith("_bucket") and family.type == "histogram" and "le" not in series.labels:
            raise ValueError(f"{series.name} needs an 'le' label")
        previous = -math.inf
        for ts, _ in series.points:
            # promtool would silently drop these samples (or misplace them), so fail loudly instead.
            if not (MIN_PLAUSIBLE_TS <= ts <= now + MAX_FUTURE_SECONDS):
                raise ValueError(
                    f"{series.name}{dict(series.labels)}: timestamp {ts!r} is not unix SECONDS in a sane range"
                )
            if ts <= previous:
                raise ValueError(f"{series.name}{dict(series.labels)}: timestamps must strictly increase")
            previous = ts


def write_openmetrics_backfill(path: Path | str, families: Iterable[MetricFamily]) -> Path:
    """Write ``families`` as an OpenMetrics text file that ``promtool`` 2.42 accepts.

    Each family gets ``# HELP`` / ``# TYPE`` lines followed by its series, one series at a time in time
    order (promtool drops out-of-order samples without an error), and the file ends with ``# EOF``.
    """
    out = Path(path)
    now = time.time()
    seen: set[str] = set()
    with out.open("w", encoding="utf-8") as fh:
        for family in families:
            _check_family(family, now)
            if family.name in seen:
                raise ValueError(f"metric family {family.name!r} given twice (families must not interleave)")
            seen.add(family.name)
            fh.write(f"# HELP {family.name} {family.help or family.name}\n")
            fh.write(f"# TYPE {family.name} {family.type}\n")
            for series in family.series:
                labels = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in series.labels.items())
                head = f"{series.name}{{{labels}}}" if labels else series.name
                fh.writelines(f"{head} {format_float(v)} {format_float(ts)}\n" for ts, v in series.points)
        fh.write("# EOF\n")
    return out
