"""Numbers as the reasons print them."""

from __future__ import annotations

import math


def pct(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if value == 0:
        return "0%"
    if abs(value) >= 0.01:
        return f"{100 * value:.2f}%"
    return f"{100 * value:.3g}%"


def num(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}"


def nan_none(value: float) -> float | None:
    return None if math.isnan(value) else value


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def quantile_name(quantile: float) -> str:
    return f"{100 * quantile:g}".replace(".", "")


def bound_text(bounds: tuple[float, ...], index: int | None) -> str:
    return "none" if index is None else f"le={bounds[index]:g}"
