"""Field types shared by the settings and the pipeline schema."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from openanomaly.durations import DURATION_PATTERN, format_duration, parse_duration


def _to_timedelta(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a duration such as 30s, 5m, 1h, 7d, got {value!r}")
    if isinstance(value, int | float):
        raise ValueError(f"'{value}' has no unit; write e.g. {value}s or {value}m")
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_to_timedelta),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "Prometheus duration: 30s, 5m, 1h, 7d, 1w (ms, s, m, h, d, w, y)",
        }
    ),
]
"""A timedelta written as a Prometheus duration in YAML, env vars and flags."""

METRIC_NAME_PATTERN = r"^[a-zA-Z_:][a-zA-Z0-9_:]*$"
LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
