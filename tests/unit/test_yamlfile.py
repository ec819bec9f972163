from __future__ import annotations

import pytest

from openanomaly.config.yamlfile import YamlSyntaxError, parse_yaml


def test_records_the_line_of_every_key_and_item() -> None:
    doc = parse_yaml("a: 1\nb:\n  c: 2\n  d:\n    - x\n    - y: 3\n")
    assert doc.data == {"a": 1, "b": {"c": 2, "d": ["x", {"y": 3}]}}
    assert doc.lines[("a",)] == 1
    assert doc.lines[("b", "c")] == 3
    assert doc.lines[("b", "d", 1)] == 6
    assert doc.lines[("b", "d", 1, "y")] == 6
    assert doc.line_of(("b", "d", 0, "missing", "deeper")) == 5
    assert doc.line_of(("nowhere",)) == 1


def test_reports_duplicate_keys_that_yaml_would_silently_merge() -> None:
    doc = parse_yaml("a: 1\nb: 2\na: 3\n")
    assert doc.duplicates == [(("a",), 3)]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("a: [1, 2\n", 2, "invalid YAML"),
        ("a: 1\n  b: 2\n", 2, "invalid YAML"),
        ("a: 1\n---\nb: 2\n", 2, "several YAML documents"),
        ("a: *missing\n", 1, "invalid YAML"),
    ],
)
def test_syntax_errors_carry_a_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(YamlSyntaxError) as caught:
        parse_yaml(text)
    assert caught.value.line == line
    assert reason in caught.value.reason


def test_empty_document_is_none() -> None:
    assert parse_yaml("# only a comment\n").data is None
