from __future__ import annotations

from datetime import timedelta

import pytest

from openanomaly.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
        ("1y", timedelta(days=365)),
        ("250ms", timedelta(milliseconds=250)),
        ("1h30m", timedelta(minutes=90)),
        ("1d12h", timedelta(hours=36)),
        ("2w3d", timedelta(days=17)),
        ("1m500ms", timedelta(seconds=60.5)),
        ("0s", timedelta(0)),
        (" 10m ", timedelta(minutes=10)),
    ],
)
def test_parses_prometheus_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty duration"),
        ("30", "has no unit"),
        ("1.5", "has no unit"),
        ("1.5h", "is not a duration"),
        ("5 m", "is not a duration"),
        ("5M", "is not a duration"),
        ("-5m", "is not a duration"),
        ("m", "is not a duration"),
        ("30m1h", "largest to smallest"),
        ("1h1h", "largest to smallest"),
        ("1hour", "is not a duration"),
    ],
)
def test_refuses_bad_durations_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(DurationError, match=reason):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(seconds=90), "1m30s"),
        (timedelta(days=14), "2w"),
        (timedelta(days=1), "1d"),
        (timedelta(0), "0s"),
        (timedelta(milliseconds=1500), "1s500ms"),
        (timedelta(days=366), "1y1d"),
    ],
)
def test_formats_the_shortest_spelling(value: timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value


@pytest.mark.parametrize("ms", [1, 999, 60_000, 86_399_999, 3 * 86_400_000 + 7, 10**12])
def test_format_and_parse_round_trip(ms: int) -> None:
    value = timedelta(milliseconds=ms)
    assert parse_duration(format_duration(value)) == value


def test_negative_durations_cannot_be_formatted() -> None:
    with pytest.raises(DurationError):
        format_duration(timedelta(seconds=-1))
