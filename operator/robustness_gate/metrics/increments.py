"""Exact per-look counter increments instead of `increase()`'s extrapolated ones.

`increase(c[w])` at look t only sees the samples inside (t - w, t] and extrapolates their change to
the whole window. With n scrapes per look, the events between the last sample of one look and the
first of the next are dropped and the rest are scaled by about n/(n - 1): at n = 2 half the events
are lost and the others count double, so per-look counts are over-dispersed by about 2 and a
sequential test's false-rollback guarantee weakens from alpha towards sqrt(alpha).

The difference of the counter between two looks has neither problem: `c - c offset w` at look t is
the change between the last samples at or before t - w and t, so consecutive looks share their
boundary sample, every event is counted exactly once and a look's count is a plain integer.
Series whose difference is negative (a counter reset: the process restarted) or that have no sample
a window earlier (new series) fall back to `increase()`, which handles resets.

`exact_increments` rewrites every `increase(<selector>[<window>])` in a query whose range is the
look interval into `((<selector> - <selector> offset <window>) >= 0 or increase(<selector>[<window>]))`.
Set operators match on all labels but the metric name, so `or` adds exactly the series the
difference left out. Anything else (another range, a subquery, a selector without a metric name)
is left as written.
"""

from __future__ import annotations

import re

_INCREASE = re.compile(r"\bincrease\s*\(")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SPACE = re.compile(r"\s*")


def exact_form(selector: str, window: str) -> str:
    """The exact per-look increment of the counters `selector` selects."""
    return f"(({selector} - {selector} offset {window}) >= 0 or increase({selector}[{window}]))"


def exact_increments(promql: str, window: str) -> str:
    """`promql` with each `increase(<selector>[<window>])` replaced by `exact_form`."""
    strings = [(match.start(), match.end()) for match in _STRING.finditer(promql)]

    def in_string(position: int) -> bool:
        return any(start <= position < end for start, end in strings)

    pieces: list[str] = []
    copied = 0
    for match in _INCREASE.finditer(promql):
        if match.start() < copied or in_string(match.start()):
            continue
        parsed = _counter_range(promql, match.end(), window)
        if parsed is None:
            continue
        selector, end = parsed
        pieces += [promql[copied : match.start()], exact_form(selector, window)]
        copied = end
    pieces.append(promql[copied:])
    return "".join(pieces)


def _skip_space(text: str, position: int) -> int:
    match = _SPACE.match(text, position)
    return match.end() if match else position


def _counter_range(text: str, position: int, window: str) -> tuple[str, int] | None:
    """The selector of `<name>{<matchers>}[<window>])` starting at `position`, and the end of `)`."""
    start = _skip_space(text, position)
    name = _NAME.match(text, start)
    if name is None or name.group(0) in ("offset", "by", "without"):
        return None
    position = _skip_space(text, name.end())
    if position < len(text) and text[position] == "{":
        matchers_end = _matchers_end(text, position)
        if matchers_end is None:
            return None
        position = matchers_end
    selector_end = position
    position = _skip_space(text, position)
    if not text.startswith("[", position):
        return None
    position = _skip_space(text, position + 1)
    if not text.startswith(window, position):
        return None
    position = _skip_space(text, position + len(window))
    if not text.startswith("]", position):
        return None
    position = _skip_space(text, position + 1)
    if not text.startswith(")", position):
        return None
    return text[start:selector_end].strip(), position + 1


def _matchers_end(text: str, position: int) -> int | None:
    """The index after the `}` closing the label matchers opened at `position`, skipping strings."""
    position += 1
    while position < len(text):
        character = text[position]
        if character == "}":
            return position + 1
        if character in "\"'`":
            string = _STRING.match(text, position)
            if string is None:
                return None
            position = string.end()
            continue
        if character in "{[()":
            return None
        position += 1
    return None
