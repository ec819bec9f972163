"""Checks across fields and against the engines' catalogs, each naming the field to fix."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from openanomaly.config.pipeline import Pipeline, season_steps
from openanomaly.durations import format_duration
from openanomaly.ports import ModelCatalog

FieldIssue = tuple[tuple[str, ...], str, tuple[str, ...]]
"""(path inside the pipeline, reason, the other field involved): when the first field was left
at its default, the problem is shown at the second one, which the user did write."""

# Seasonal models estimate each seasonal index from repeated seasons; with fewer than two full
# seasons in the fitting window they either refuse or silently drop the seasonality.
MIN_SEASONS_TO_FIT = 2
SEASON = ("model", "params", "season_length")


def cross_check(pipeline: Pipeline, catalog_for: Callable[[str], ModelCatalog]) -> list[FieldIssue]:
    issues: list[FieldIssue] = []
    step = pipeline.step
    for path, value in (
        (("train", "window"), pipeline.train.window),
        (("infer", "context"), pipeline.infer.context),
    ):
        if value % step:
            issues.append((path, f"{_d(value)} is not a multiple of step ({_d(step)})", ("step",)))

    # The default hold-off is cut to a shorter context; one the user wrote is checked.
    holdoff_set = "holdoff" in pipeline.scoring.model_fields_set
    if holdoff_set and pipeline.scoring.holdoff > pipeline.infer.context:
        reason = (
            f"{_d(pipeline.scoring.holdoff)} is longer than infer.context "
            f"({_d(pipeline.infer.context)}): the points it looks back at must be in the context"
        )
        issues.append((("scoring", "holdoff"), reason, ("infer", "context")))

    try:
        seasons = season_steps(pipeline.model.params.get("season_length"), step)
    except ValueError as exc:
        # The catalog would only repeat this problem in other words.
        return [*issues, (SEASON, str(exc), SEASON)]
    if seasons:
        longest = max(seasons)
        # Whole milliseconds: a long step times a long season overflows timedelta.
        need_fit = _ms(step) * longest * MIN_SEASONS_TO_FIT
        if _ms(pipeline.train.window) < need_fit:
            issues.append(
                (
                    ("train", "window"),
                    (
                        f"{_d(pipeline.train.window)} is shorter than {MIN_SEASONS_TO_FIT} "
                        f"seasons of season_length {longest} at step {_d(step)}; "
                        f"needs at least {_d_ms(need_fit)}"
                    ),
                    SEASON,
                )
            )
        need_context = _ms(step) * longest
        if _ms(pipeline.infer.context) < need_context:
            issues.append(
                (
                    ("infer", "context"),
                    (
                        f"{_d(pipeline.infer.context)} is shorter than one season "
                        f"(season_length {longest} at step {_d(step)} = {_d_ms(need_context)})"
                    ),
                    SEASON,
                )
            )

    # Catalogs see season_length in steps, as the engines will.
    params = dict(pipeline.model.params)
    if seasons:
        raw = params["season_length"]
        params["season_length"] = seasons if isinstance(raw, list) else seasons[0]
    catalog = catalog_for(pipeline.model.engine)
    for issue in catalog.check(pipeline.model.name, params):
        model_field = ("model", *issue.field.split("."))
        issues.append((model_field, issue.reason, model_field))
    return issues


def _d(value: timedelta) -> str:
    return format_duration(value)


def _ms(value: timedelta) -> int:
    return round(value.total_seconds() * 1000)


def _d_ms(ms: int) -> str:
    return format_duration(timedelta(milliseconds=ms)) if ms < _MAX_MS else f"{ms // 86_400_000:,}d"


_MAX_MS = 999_999_999 * 86_400_000
