"""The pipeline file: the user's contract for what to watch and how (`pipelines.d/*.yaml`).

This module is the schema (types, ranges, defaults). Checks that need several fields at once or
knowledge of an engine's models live in `pipeline_checks`, so each problem can name its own field.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from openanomaly.config.types import LABEL_NAME_PATTERN, METRIC_NAME_PATTERN, Duration
from openanomaly.durations import DurationError, format_duration, parse_duration

NAME_PATTERN = r"^[a-z0-9_-]+$"
BUILTIN_ENGINES = ("statsforecast", "mlforecast", "neuralforecast")
CUSTOM_ENGINE_PATTERN = (
    r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
)
# Labels every output series carries; a user label with these names would be ambiguous.
RESERVED_OUTPUT_LABELS = frozenset({"pipeline", "model", "metric", "__name__"})


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _positive(value: timedelta, what: str) -> timedelta:
    if value <= timedelta(0):
        raise ValueError(f"{what} must be greater than 0s")
    return value


class TrainSpec(Section):
    every: Duration | None = Field(
        None, description="Refit interval (default 1d); give either every or cron"
    )
    cron: str | None = Field(None, description='Refit schedule, crontab syntax, UTC: "0 3 * * *"')
    window: Duration = Field(timedelta(days=14), description="History used to fit")

    @model_validator(mode="after")
    def _schedule(self) -> TrainSpec:
        if self.every is not None and self.cron is not None:
            raise ValueError("give either every or cron, not both")
        if self.every is None and self.cron is None:
            object.__setattr__(self, "every", timedelta(days=1))
        return self

    @field_validator("every", "window")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        return None if value is None else _positive(value, "duration")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if len(value.split()) != 5:
            raise ValueError(f"cron needs 5 fields (minute hour day month weekday), got {value!r}")
        # Imported here: only pipelines that use cron pay for it, and validation stays pure.
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"invalid cron {value!r}: {exc}") from None
        return value


class InferSpec(Section):
    every: Duration = Field(timedelta(minutes=1), description="How often new points are scored")
    context: Duration = Field(timedelta(days=1), description="History handed to the model")
    max_catchup: Duration = Field(
        timedelta(hours=1),
        description="After downtime, score at most this far back (older points stay unscored)",
    )

    @field_validator("every", "context", "max_catchup")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        return _positive(value, "duration")


class ModelSpec(Section):
    engine: str = Field(
        "statsforecast",
        description="statsforecast | mlforecast | neuralforecast | package.module:Class",
    )
    name: str = Field("MSTL", description="Model class inside the engine (default: chosen on NAB)")
    params: dict[str, Any] = Field(
        default_factory=lambda: {"season_length": "1d"},
        description="Constructor parameters; season_length may be a duration such as 1d. "
        "The default is the default model's; a model named without params gets none",
    )
    level: float = Field(
        99.0, gt=0, lt=100, description="Prediction-interval level (%) of the band"
    )
    scale: float = Field(
        2.0,
        gt=0,
        description="Widens (> 1) or narrows the band: half-width = scale x the level-% "
        "interval's (as vmanomaly's scale)",
    )
    cold_start: Literal["fit", "skip"] = Field(
        "fit",
        description="Series that appear after training: fit on their context on the fly "
        "(until the next train), or leave them unscored until then",
    )

    @model_validator(mode="before")
    @classmethod
    def _params_follow_the_name(cls, data: Any) -> Any:
        # The default params (a daily season) belong to the default model: `name: AutoETS`
        # alone must not inherit a 1d season_length that AutoETS cannot take.
        if isinstance(data, dict) and "name" in data and "params" not in data:
            return {**data, "params": {}}
        return data

    @field_validator("engine")
    @classmethod
    def _engine(cls, value: str) -> str:
        if value in BUILTIN_ENGINES or re.match(CUSTOM_ENGINE_PATTERN, value):
            return value
        raise ValueError(
            f"unknown engine {value!r}; use one of {', '.join(BUILTIN_ENGINES)} "
            "or a custom engine as package.module:Class"
        )


class ScoringSpec(Section):
    direction: Literal["both", "above", "below"] = "both"
    min_dev: float = Field(0.0, ge=0, description="Absolute deviation under which score is 0")
    min_rel_dev: float = Field(
        0.0, ge=0, description="Deviation relative to |yhat| under which score is 0"
    )
    outside_range: float = Field(
        0.1,
        ge=0,
        description="A value this fraction of the training range (max - min) beyond the "
        "training min or max scores 1, further out more (0: off)",
    )
    holdoff: Duration = Field(
        timedelta(hours=8),
        description="After a point scores over 1, later points of the series within this "
        "score at most 1: one alert per incident (0s: off; at most infer.context)",
    )

    @field_validator("holdoff")
    @classmethod
    def _holdoff(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("holdoff must not be negative")
        return value


class OutputSpec(Section):
    prefix: str = Field(
        "anomaly",
        pattern=METRIC_NAME_PATTERN,
        description="Output metric names: {prefix}_score, _yhat, _yhat_lower, _yhat_upper",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Added to every output series")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name, label_value in value.items():
            if not re.match(LABEL_NAME_PATTERN, name) or name.startswith("__"):
                raise ValueError(f"'{name}' is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)")
            if name in RESERVED_OUTPUT_LABELS:
                raise ValueError(f"label '{name}' is set by OpenAnomaly itself")
            if label_value == "":
                raise ValueError(f"label '{name}' has an empty value (it would be dropped)")
        return value


class LimitsSpec(Section):
    max_series: int = Field(10_000, ge=1, description="Refuse a query result with more series")


class Pipeline(Section):
    """One query, one model, one set of output series."""

    name: str = Field(pattern=NAME_PATTERN, max_length=128, description="Unique, [a-z0-9_-]+")
    query: str = Field(min_length=1, description="PromQL; each result series is modelled apart")
    step: Duration = Field(timedelta(minutes=1), description="Resolution the model works at")
    train: TrainSpec = TrainSpec()
    infer: InferSpec = InferSpec()
    model: ModelSpec = ModelSpec()
    scoring: ScoringSpec = ScoringSpec()
    output: OutputSpec = OutputSpec()
    limits: LimitsSpec = LimitsSpec()

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is empty")
        return value.strip()

    @field_validator("step")
    @classmethod
    def _step(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("step must be at least 1s")
        if value > timedelta(weeks=1):
            raise ValueError("step must be at most 1w")
        return value

    def config_hash(self) -> str:
        """Changes exactly when something that affects the fitted model changes."""
        relevant = self.model_dump(mode="json", include={"query", "step", "train", "model"})
        blob = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


class PipelineList(Section):
    """A file may hold several pipelines under `pipelines:`."""

    pipelines: list[Pipeline] = Field(min_length=1)


MAX_SEASON_STEPS = 1_000_000  # a season longer than this is a typo, not a model


def season_steps(value: Any, step: timedelta) -> list[int]:
    """`season_length` in steps: an int (steps), a duration ("1d"), or a list of those (MSTL).

    Raises ValueError with a user-facing reason.
    """
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise ValueError(
                f"season_length must be a whole number of steps or a duration, got {item!r}"
            )
        if isinstance(item, int):
            if not 1 <= item <= MAX_SEASON_STEPS:
                raise ValueError(
                    f"season_length must be between 1 and {MAX_SEASON_STEPS:,} steps, got {item}"
                )
            out.append(item)
            continue
        try:
            period = parse_duration(item)
        except DurationError as exc:
            raise ValueError(f"season_length: {exc}") from None
        if period % step or period < step:
            raise ValueError(
                f"season_length {item} is not a whole number of steps ({format_duration(step)})"
            )
        if period // step > MAX_SEASON_STEPS:
            raise ValueError(f"season_length {item} is more than {MAX_SEASON_STEPS:,} steps")
        out.append(period // step)
    return out
