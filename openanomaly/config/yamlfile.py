"""Load YAML and remember where every key and list item stood, so errors can say `file:line`.

PyYAML throws positions away once it builds Python objects, so we compose the node tree, build
the data from it, and walk the same tree to map each path (`("train", "window")`,
`("pipelines", 2, "name")`) to its 1-based line. The walk also catches duplicate keys, which
PyYAML would silently resolve to the last one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass
class YamlDocument:
    """Parsed data plus the line of every key and list item (1-based)."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    duplicates: list[tuple[Path, int]] = field(default_factory=list)

    def line_of(self, path: Iterable[str | int]) -> int:
        """Line of the longest prefix of `path` that exists in the document (1 when none)."""
        parts = tuple(path)
        while parts:
            if parts in self.lines:
                return self.lines[parts]
            parts = parts[:-1]
        return 1


class YamlSyntaxError(ValueError):
    """The text is not valid YAML. `line` is 1-based."""

    def __init__(self, line: int, reason: str) -> None:
        self.line, self.reason = line, reason
        super().__init__(f"line {line}: {reason}")


MAX_NODES = 100_000
"""Values a document may expand to through aliases: enough for any real configuration, and a
wall against alias bombs ("billion laughs") and self-referencing anchors."""


class _TooLarge(Exception):
    pass


def parse_yaml(text: str) -> YamlDocument:
    """Parse one YAML document; raise YamlSyntaxError with a line and a readable reason."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        document = YamlDocument(data=None)
        if node is not None:
            # Walk before constructing: construction rewrites merge keys (`<<`) in place, and
            # the walk must see the document as written.
            _walk(node, (), document, [0])
            document.data = loader.construct_document(node)
    except yaml.composer.ComposerError as exc:
        if "expected a single document" in str(exc):
            raise YamlSyntaxError(
                _line(exc), "several YAML documents ('---'); list pipelines under 'pipelines:'"
            ) from None
        raise YamlSyntaxError(_line(exc), _reason(exc)) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(_line(exc), _reason(exc)) from None
    except (_TooLarge, RecursionError):
        raise YamlSyntaxError(
            1,
            f"the document expands to more than {MAX_NODES:,} values through aliases "
            "(an anchor referenced inside itself, or aliases nested too deep)",
        ) from None
    finally:
        loader.dispose()
    return document


def _walk(node: yaml.Node, path: Path, document: YamlDocument, count: list[int]) -> None:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise _TooLarge
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if (
                not isinstance(key_node, yaml.ScalarNode)
                or key_node.tag == "tag:yaml.org,2002:merge"
            ):
                continue
            key = key_node.value
            child = (*path, key)
            if key in seen:
                document.duplicates.append((child, key_node.start_mark.line + 1))
            seen.add(key)
            document.lines.setdefault(child, key_node.start_mark.line + 1)
            _walk(value_node, child, document, count)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            document.lines[child] = item.start_mark.line + 1
            _walk(item, child, document, count)


def _line(exc: yaml.YAMLError) -> int:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else 1


def _reason(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None)
    context = getattr(exc, "context", None)
    if problem and context:
        return f"invalid YAML: {problem} ({context})"
    return f"invalid YAML: {problem or exc}"
