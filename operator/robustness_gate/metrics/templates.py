"""Strict PromQL templates and label selectors. A value can never change the query's structure.

Templates use {{name}} variables. Unknown variables are an error naming them, and every label
value is escaped as a PromQL string (and as an RE2 literal inside regex matchers).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')


class TemplateError(ValueError):
    """A template or selector that cannot be rendered safely; `where` names the field."""

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(f"{where}: {detail}")
        self.where = where
        self.detail = detail


def render(template: str, variables: dict[str, str], where: str = "query") -> str:
    """Substitute {{name}} variables; refuse unknown names and unbalanced braces."""
    unknown = sorted({name for name in VARIABLE.findall(template) if name not in variables})
    if unknown:
        raise TemplateError(
            where,
            f"unknown template variable {', '.join('{{' + n + '}}' for n in unknown)}; "
            f"known: {', '.join('{{' + n + '}}' for n in sorted(variables))}",
        )
    rendered = VARIABLE.sub(lambda match: variables[match.group(1)], template)
    if "{{" in VARIABLE.sub("", template) or "}}" in VARIABLE.sub("", template):
        raise TemplateError(where, "malformed template variable; write variables like {{selector}}")
    return rendered


def uses(template: str, name: str) -> bool:
    return name in VARIABLE.findall(template)


def escape_string(value: str) -> str:
    """A PromQL double-quoted string literal body."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_regex(value: str) -> str:
    """An RE2 pattern matching exactly `value`."""
    return re.sub(r"([^A-Za-z0-9_])", r"\\\1", value)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str
    value: str

    def render(self) -> str:
        return f'{self.name}{self.op}"{escape_string(self.value)}"'

    def matches(self, value: str) -> bool:
        """Whether a series with this label value is selected (PromQL regexes match the whole value)."""
        if self.op in ("=", "!="):
            return (value == self.value) == (self.op == "=")
        try:
            found = re.fullmatch(self.value, value) is not None
        except re.error:
            return False
        return found == (self.op == "=~")


def parse_selector(text: str, where: str = "selector") -> tuple[Matcher, ...]:
    """Parse `a="x",b!~"y.*"` into matchers; anything else is rejected with the expected form."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    matchers: list[Matcher] = []
    position = 0
    while position < len(body):
        match = _MATCHER.match(body, position)
        if match is None:
            raise TemplateError(
                where,
                f"cannot parse {text!r} near {body[position : position + 20]!r}; "
                'write label matchers like version="v2" or app="fraud",version="v2"',
            )
        raw = match.group(3)
        value = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), raw)
        matchers.append(Matcher(match.group(1), match.group(2), value))
        position = match.end()
        if position < len(body):
            if body[position] != ",":
                raise TemplateError(where, f"expected a comma after {match.group(0).strip()!r} in {text!r}")
            position += 1
    if not matchers:
        raise TemplateError(where, 'empty selector; write label matchers like version="v2"')
    return tuple(matchers)


def render_matchers(matchers: tuple[Matcher, ...]) -> str:
    return ",".join(matcher.render() for matcher in matchers)


@dataclass(frozen=True)
class Split:
    """Canary and baseline differ only in one label's value: one query can fetch both."""

    label: str
    canary: str
    baseline: str
    common: tuple[Matcher, ...]

    def selector(self) -> str:
        both = Matcher(self.label, "=~", f"{escape_regex(self.canary)}|{escape_regex(self.baseline)}")
        return render_matchers((*self.common, both))


@dataclass(frozen=True)
class Sides:
    """How canary and baseline series are told apart."""

    canary: tuple[Matcher, ...]
    baseline: tuple[Matcher, ...]

    @classmethod
    def parse(cls, canary: str, baseline: str) -> Sides:
        sides = cls(parse_selector(canary, "canary selector"), parse_selector(baseline, "baseline selector"))
        canary_set, baseline_set = set(sides.canary), set(sides.baseline)
        if canary_set == baseline_set:
            raise TemplateError("--canary/--baseline", "identical selectors; they must select different series")
        # Fewer matchers select more series: every series of the narrower side is also on the wider one.
        if canary_set < baseline_set or baseline_set < canary_set:
            wider, narrower = ("canary", "baseline") if canary_set < baseline_set else ("baseline", "canary")
            raise TemplateError(
                "--canary/--baseline",
                f"overlapping selectors: every {narrower} series is also a {wider} series; give each side a "
                'matcher the other cannot match, e.g. version="v2" and version="v1"',
            )
        return sides

    @classmethod
    def by_label(cls, label: str, canary: str, baseline: str) -> Sides:
        return cls((Matcher(label, "=", canary),), (Matcher(label, "=", baseline),))

    def disjoint(self) -> bool:
        """Whether no series can match both sides: some label is required equal to different values, or
        equal to a value on one side and not equal to it on the other."""
        return self._disjoint

    @functools.cached_property
    def _disjoint(self) -> bool:
        def excludes(one: tuple[Matcher, ...], other: tuple[Matcher, ...]) -> bool:
            equal = {m.name: m.value for m in one if m.op == "="}
            return any(
                m.name in equal
                and ((m.op == "=" and m.value != equal[m.name]) or (m.op == "!=" and m.value == equal[m.name]))
                for m in other
            )

        return excludes(self.canary, self.baseline) or excludes(self.baseline, self.canary)

    def split(self) -> Split | None:
        """Asked for every series of every answer: worked out once per Sides (which never changes)."""
        return self._split

    @functools.cached_property
    def _split(self) -> Split | None:
        canary_only = [m for m in self.canary if m not in self.baseline]
        baseline_only = [m for m in self.baseline if m not in self.canary]
        if len(canary_only) != 1 or len(baseline_only) != 1:
            return None
        c, b = canary_only[0], baseline_only[0]
        if c.name != b.name or c.op != "=" or b.op != "=" or c.value == b.value:
            return None
        common = tuple(m for m in self.canary if m in self.baseline)
        if any(m.name == c.name for m in common):
            return None
        return Split(label=c.name, canary=c.value, baseline=b.value, common=common)
