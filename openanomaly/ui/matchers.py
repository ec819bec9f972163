"""The pipeline view's label filter: PromQL label matchers (`instance=~"web.*", job!="x"`).

Parsed and re-rendered rather than pasted into a query, so whatever is typed can only ever
become matchers of the selector it is added to. The same matchers also filter series on our
side (the pipeline's own query is arbitrary PromQL, with no selector we could safely extend).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from openanomaly.domain.labels import escape_label_value
from openanomaly.ui.errors import InvalidLabelFilter

_MATCHER = re.compile(
    r"""\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*
    (?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*(?:,|$)""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # = != =~ !~
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        # As in PromQL: an absent label has the empty value, and regexes are fully anchored.
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found

    def promql(self) -> str:
        return f'{self.name}{self.op}"{escape_label_value(self.value)}"'


@dataclass(frozen=True)
class LabelFilter:
    matchers: tuple[Matcher, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def promql(self) -> str:
        """The matchers, comma-separated, ready to go inside `{...}` ("" when none)."""
        return ", ".join(m.promql() for m in self.matchers)


def parse_label_filter(text: str) -> LabelFilter:
    """`a="x", b=~"y.*"` (optionally in braces) -> LabelFilter; InvalidLabelFilter says what is
    wrong and where."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    if not body.strip():
        return LabelFilter()
    matchers = []
    position = 0
    while position < len(body):
        match = _MATCHER.match(body, position)
        if match is None:
            rest = body[position:].strip()
            raise InvalidLabelFilter(
                f"cannot read {rest[:40]!r}: write label matchers such as "
                'instance="a", job=~"node.*" (operators = != =~ !~, values in quotes)'
            )
        matchers.append(_matcher(match))
        position = match.end()
    return LabelFilter(tuple(matchers))


def _matcher(match: re.Match[str]) -> Matcher:
    name, op, quoted = match["name"], match["op"], match["value"]
    if name.startswith("__"):
        raise InvalidLabelFilter(
            f"{name}: output series carry the input's metric name as the label `metric`; "
            'filter on metric="..." instead'
        )
    value = quoted[1:-1] if quoted[0] == "`" else _unescape(quoted[1:-1])
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise InvalidLabelFilter(f"{name}{op}: invalid regular expression: {exc}") from None
    return Matcher(name, op, value)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], "\\" + m[1]), text, flags=re.DOTALL)
