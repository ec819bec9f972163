"""Prometheus-style durations: `30s`, `5m`, `1h30m`, `7d`, `1w`, `1y`, `250ms`.

Units follow Prometheus (`model.ParseDuration`): a day is 24h, a week 7d, a year 365d. Units must
appear from largest to smallest and at most once, as Prometheus requires. A bare number is refused:
`30` could mean seconds or steps, and a config that guesses is a config that pages someone at 3 am.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from openanomaly.errors import ConfigError, Problem

_UNITS_MS: dict[str, int] = {
    "y": 365 * 86_400_000,
    "w": 7 * 86_400_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1_000,
    "ms": 1,
}
_ORDER = ["y", "w", "d", "h", "m", "s", "ms"]
_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
DURATION_PATTERN = r"^((\d+)(y|w|d|h|m|s|ms))+$"


class DurationError(ValueError):
    """The text is not a Prometheus duration. The message says why, in user terms."""


def parse_duration(text: str) -> timedelta:
    """Parse a Prometheus duration into a timedelta; raise DurationError with a clear reason."""
    raw = text.strip()
    if not raw:
        raise DurationError("empty duration; use a number and a unit, e.g. 30s, 5m, 1h, 7d")
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        raise DurationError(
            f"'{raw}' has no unit; write e.g. {raw}s or {raw}m (units: ms, s, m, h, d, w, y)"
        )
    total_ms = 0
    position = 0
    last_rank = -1
    for match in _PART.finditer(raw):
        if match.start() != position:
            break
        number, unit = int(match.group(1)), match.group(2)
        rank = _ORDER.index(unit)
        if rank <= last_rank:
            raise DurationError(
                f"'{raw}': units must go from largest to smallest, each at most once (e.g. 1h30m)"
            )
        last_rank = rank
        total_ms += number * _UNITS_MS[unit]
        position = match.end()
    if position != len(raw):
        raise DurationError(
            f"'{raw}' is not a duration; use a number and a unit, e.g. 30s, 5m, 1h, 7d, 1w "
            "(units: ms, s, m, h, d, w, y)"
        )
    try:
        return timedelta(milliseconds=total_ms)
    except OverflowError:
        raise DurationError(f"'{raw}' is too long a duration") from None


def format_duration(value: timedelta) -> str:
    """The shortest Prometheus spelling of a duration (`90s` -> `1m30s`, `0` -> `0s`)."""
    remaining = round(value.total_seconds() * 1000)
    if remaining < 0:
        raise DurationError("negative durations have no Prometheus spelling")
    if remaining == 0:
        return "0s"
    parts: list[str] = []
    for unit in _ORDER:
        count, remaining = divmod(remaining, _UNITS_MS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_time(text: str, flag: str, now: datetime) -> datetime:
    """An ISO 8601 time (UTC unless it has an offset), Unix seconds, or a duration meaning
    that long before now (`7d`, `36h`)."""
    text = text.strip()
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        reason = f"{text!r} is not a time: use ISO 8601, Unix seconds, or a duration ago (7d)"
        raise ConfigError([Problem(flag, 0, "", reason)]) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
