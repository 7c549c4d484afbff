"""Time as text, as Kubernetes writes it: Go-style duration strings ("30s", "1m30s", "250ms", "2h") and
RFC 3339 timestamps in whole seconds UTC ("2023-11-14T22:13:20Z")."""

from __future__ import annotations

import datetime as dt
import re

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration string; raises ValueError with the accepted form when malformed."""
    if not isinstance(text, str) or not re.fullmatch(DURATION_PATTERN, text.strip()):
        raise ValueError(f"{text!r} is not a duration; write it like 30s, 5m, 1h30m or 250ms")
    return sum(float(value) * _UNIT_SECONDS[unit] for value, unit in _PART.findall(text.strip()))


def format_duration(seconds: float) -> str:
    """Shortest exact duration string for whole milliseconds (used in messages and PromQL windows)."""
    millis = round(seconds * 1000)
    if millis <= 0:
        return "0s"
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)


_TIMESTAMP = "%Y-%m-%dT%H:%M:%SZ"


def iso(timestamp: float) -> str:
    """Unix seconds as an RFC 3339 timestamp, the fraction cut off: the form of the CRD's date-time fields,
    used by the gate's status and the CLI's output alike."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime(_TIMESTAMP)


def parse_iso(text: str) -> float:
    """Unix seconds of a timestamp written by `iso`; raises ValueError on any other form."""
    return dt.datetime.strptime(text, _TIMESTAMP).replace(tzinfo=dt.UTC).timestamp()
