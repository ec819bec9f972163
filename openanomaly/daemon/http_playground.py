"""The playground's endpoints: validate pipeline text, backtest it against the real TSDB, save it
into pipelines_dir. The web UI's playground is a client of these (docs/api.md)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from openanomaly.config.pipeline import Pipeline
from openanomaly.daemon.backtests import BacktestsBusy, run_json, series_json
from openanomaly.durations import format_duration, parse_time
from openanomaly.errors import (
    ConfigError,
    OpenAnomalyError,
    PipelineConflict,
    PipelineRejected,
    Problem,
)

if TYPE_CHECKING:
    from openanomaly.daemon.service import Daemon

log = logging.getLogger(__name__)

MAX_YAML = 1_000_000  # characters; a pipeline file is a few hundred
# A backtest runs in the daemon, beside its schedule, for whoever may call the API: bounded so
# that one request cannot read years of data or fit thousands of times. 100,000 steps is 69 days
# at 1m, a year at 5m.
MAX_BACKTEST_STEPS = 100_000
MAX_BACKTEST_FITS = 1_000


class ValidateRequest(BaseModel):
    yaml: str = Field(max_length=MAX_YAML)
    filename: str = Field("playground.yaml", min_length=1, max_length=255)


class BacktestRequest(BaseModel):
    yaml: str = Field(max_length=MAX_YAML)
    pipeline: str | None = None
    start: str = "2d"
    end: str = "0s"


class SaveRequest(BaseModel):
    yaml: str = Field(max_length=MAX_YAML)
    overwrite: bool = False


def problems_json(problems: list[Problem]) -> list[dict[str, Any]]:
    return [
        {"file": p.where, "line": p.line, "field": p.field, "reason": p.reason, "message": str(p)}
        for p in problems
    ]


def unprocessable(problems: list[Problem]) -> HTTPException:
    return HTTPException(422, {"problems": problems_json(problems)})


def add_playground_routes(api: FastAPI, daemon: Daemon, *, checked: Any, changes: Any) -> None:
    """`checked`: the token dependency (checked when one is set); `changes`: the dependency
    of endpoints that change what the daemon does (refused without a token)."""
    source = daemon.app.pipelines
    backtests = daemon.backtests

    @api.post("/api/v1/validate", dependencies=[checked])
    async def validate(request: ValidateRequest) -> dict[str, Any]:
        parsed = await asyncio.to_thread(source.parse, request.yaml, request.filename)
        return {
            "pipelines": [p.pipeline.name for p in parsed.pipelines],
            "problems": problems_json(parsed.problems),
        }

    @api.post("/api/v1/backtests", status_code=202, dependencies=[checked])
    async def start_backtest(request: BacktestRequest) -> dict[str, Any]:
        pipeline = await asyncio.to_thread(_one_pipeline, daemon, request)
        start, end = _backtest_range(pipeline, request)
        try:
            run = backtests.submit(pipeline, start, end)
        except BacktestsBusy as exc:
            raise HTTPException(429, str(exc)) from None
        return run_json(run, detail=False)

    @api.get("/api/v1/backtests")
    async def list_backtests() -> dict[str, Any]:
        return {"backtests": [run_json(r, detail=False) for r in backtests.all()]}

    @api.get("/api/v1/backtests/{run_id}")
    async def get_backtest(run_id: str) -> dict[str, Any]:
        run = backtests.get(run_id)
        if run is None:
            raise HTTPException(404, f"no backtest {run_id!r} (results are kept for a while only)")
        return run_json(run, detail=True)

    @api.get("/api/v1/backtests/{run_id}/series")
    async def get_backtest_series(run_id: str, id: str) -> dict[str, Any]:
        run = backtests.get(run_id)
        if run is None or run.result is None or run.status != "done":
            raise HTTPException(404, f"no finished backtest {run_id!r}")
        points = await asyncio.to_thread(series_json, run.result, id)
        if points is None:
            raise HTTPException(404, f"backtest {run_id!r} scored no series {id!r}")
        return points

    @api.delete("/api/v1/backtests/{run_id}", dependencies=[checked])
    async def cancel_backtest(run_id: str) -> dict[str, Any]:
        run = backtests.cancel(run_id)
        if run is None:
            raise HTTPException(404, f"no backtest {run_id!r}")
        return run_json(run, detail=False)

    @api.put("/api/v1/pipelines/{name}", status_code=201, dependencies=[changes])
    async def save_pipeline(name: str, request: SaveRequest) -> dict[str, Any]:
        try:
            where = await asyncio.to_thread(
                source.save, name, request.yaml, overwrite=request.overwrite
            )
        except PipelineRejected as exc:
            raise unprocessable(exc.problems) from None
        except PipelineConflict as exc:
            raise HTTPException(409, str(exc)) from None
        except OpenAnomalyError as exc:
            raise HTTPException(500, str(exc)) from None
        try:
            daemon.reload()  # at once, not at the next reload tick: the caller waits to see it
        except Exception as exc:  # the file is written; the reload tick will try again
            log.exception("reload after saving %s failed", where)
            return {"file": where, "pipeline": name, "loaded": False, "reason": str(exc)}
        if name not in daemon.pipelines:
            reason = "not loaded; see the problems of GET /api/v1/pipelines"
            return {"file": where, "pipeline": name, "loaded": False, "reason": reason}
        return {"file": where, "pipeline": name, "loaded": True}


def _backtest_range(pipeline: Pipeline, request: BacktestRequest) -> tuple[datetime, datetime]:
    """The request's start and end, or a 422 naming what is wrong with them."""
    now = datetime.now(UTC)
    try:
        start = parse_time(request.start, "start", now)
        end = parse_time(request.end, "end", now)
    except ConfigError as exc:
        raise unprocessable(exc.problems) from None
    except (OverflowError, OSError):
        raise unprocessable([Problem("start/end", 0, "", "time out of range")]) from None
    if start >= end:
        reason = f"start {start:%Y-%m-%d %H:%M} is not before end {end:%Y-%m-%d %H:%M}"
        raise unprocessable([Problem("start/end", 0, "", reason)])
    too_big = _too_big(pipeline, start, end)
    if too_big:
        raise unprocessable([Problem("start", 0, "", too_big)])
    return start, end


def _too_big(pipeline: Pipeline, start: datetime, end: datetime) -> str | None:
    steps = (end - start) / pipeline.step
    if steps > MAX_BACKTEST_STEPS:
        return (
            f"{steps:,.0f} steps of {format_duration(pipeline.step)} is more than the "
            f"{MAX_BACKTEST_STEPS:,} a backtest may score; shorten the range"
        )
    every = pipeline.train.every or timedelta(days=1)
    fits = (end - start) / every
    if fits > MAX_BACKTEST_FITS:
        return (
            f"{fits:,.0f} refits (train.every {format_duration(every)}) is more than the "
            f"{MAX_BACKTEST_FITS:,} a backtest may do; shorten the range or refit less often"
        )
    return None


def _one_pipeline(daemon: Daemon, request: BacktestRequest) -> Pipeline:
    parsed = daemon.app.pipelines.parse(request.yaml, "playground.yaml")
    if parsed.problems:
        raise unprocessable(parsed.problems)
    by_name = parsed.by_name()
    if request.pipeline is not None:
        found = by_name.get(request.pipeline)
        if found is None:
            reason = f"the text defines no pipeline named {request.pipeline!r}"
            raise unprocessable([Problem("playground.yaml", 0, "pipeline", reason)])
        return found.pipeline
    if len(by_name) != 1:
        reason = f"the text defines {len(by_name)} pipelines; say which to backtest"
        raise unprocessable([Problem("playground.yaml", 0, "pipeline", reason)])
    return next(iter(by_name.values())).pipeline
