"""Backtests the daemon runs for the API (the UI's playground): queued, one at a time, kept in
memory for a while.

One at a time on a thread of their own: a backtest fits a model per refit over the whole range,
which can take minutes, and must never take a slot from the scheduled train and infer jobs (nor
several of them all the CPU). Results live in memory only; they are cheap to reproduce and a
restart forgetting them loses nothing that was promised.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from openanomaly.config.pipeline import Pipeline
from openanomaly.errors import OpenAnomalyError
from openanomaly.ports import MetricsReader, ModelEngine
from openanomaly.usecases.backtest import BacktestResult, backtest

log = logging.getLogger(__name__)

# What one backtest may read: the scored frame is ~100 bytes a point, and the daemon runs its
# schedule beside it. The range's steps are checked before it is queued (http_playground); the
# series count is known only from the TSDB's answer, so the read itself is capped.
MAX_POINTS_READ = 10_000_000
RECENT = 600.0  # seconds: a result finished or read this recently is not forgotten for space
MAX_SERIES_LISTED = 200
MAX_ANOMALIES_LISTED = 500
MAX_SKIPPED_LISTED = 50


class BacktestsBusy(OpenAnomalyError):
    """Too many backtests queued or running; the caller should wait for one to finish."""


class _Cancelled(Exception):
    """Raised from the progress callback to stop a cancelled backtest at its next fit."""


@dataclass
class BacktestRun:
    id: str
    pipeline: Pipeline
    start: datetime
    end: datetime
    created: datetime
    status: str = "queued"  # queued | running | done | failed | cancelled
    done: int = 0
    total: int = 0
    error: str | None = None
    finished: datetime | None = None
    seconds: float = 0.0
    result: BacktestResult | None = None
    view: dict[str, Any] | None = None  # result_json of a finished backtest
    touched: float = field(default_factory=time.monotonic)  # finished or last read
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


class Backtests:
    def __init__(
        self,
        reader: MetricsReader,
        engine_for: Callable[[str], ModelEngine],
        *,
        keep: int = 20,
        keep_points: int = 2_000_000,
        max_active: int = 4,
        recent: float = RECENT,
    ) -> None:
        self._reader = reader
        self._engine_for = engine_for
        self._keep = keep
        # Results are whole scored frames (~100 bytes a point): a backtest of 10,000 series
        # over two days is 5.8 million points. Older results go first; the newest stays.
        self._keep_points = keep_points
        self._recent = recent
        self._max_active = max_active
        self._runs: OrderedDict[str, BacktestRun] = OrderedDict()
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="backtest")

    def submit(self, pipeline: Pipeline, start: datetime, end: datetime) -> BacktestRun:
        run = BacktestRun(uuid.uuid4().hex[:12], pipeline, start, end, datetime.now(UTC))
        with self._lock:
            if sum(r.active for r in self._runs.values()) >= self._max_active:
                raise BacktestsBusy(
                    f"{self._max_active} backtests are queued or running; wait for one to finish"
                )
            self._runs[run.id] = run
            self._evict()
        self._executor.submit(self._run, run)
        return run

    def _evict(self) -> None:
        """Forget finished backtests beyond `keep` runs or `keep_points` points, the least
        recently finished or read first; never one touched in the last `recent` seconds (the two
        runs of a comparison, a result someone is looking at)."""
        finished = sorted((r for r in self._runs.values() if not r.active), key=lambda r: r.touched)
        points = sum(len(r.result.scored) for r in finished if r.result is not None)
        now = time.monotonic()
        for run in finished:
            if len(self._runs) <= self._keep and points <= self._keep_points:
                break
            if now - run.touched < self._recent:
                break  # sorted: every later one is more recent still
            del self._runs[run.id]
            points -= len(run.result.scored) if run.result is not None else 0

    def get(self, run_id: str) -> BacktestRun | None:
        with self._lock:
            run = self._runs.get(run_id)
            if run is not None and not run.active:
                run.touched = time.monotonic()
            return run

    def all(self) -> list[BacktestRun]:
        with self._lock:
            return list(reversed(self._runs.values()))

    def cancel(self, run_id: str) -> BacktestRun | None:
        """A queued backtest is cancelled at once; a running one stops at its next model fit
        (it stays `running` until then)."""
        with self._lock:  # against _run's start: a run is either cancelled here or started
            run = self._runs.get(run_id)
            if run is not None and run.active:
                run.cancel.set()
                if run.status == "queued":  # never started: nothing will notice the event
                    self._finish(run, "cancelled")
        return run

    def close(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.cancel.set()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _run(self, run: BacktestRun) -> None:
        with self._lock:
            if run.cancel.is_set():
                return
            run.status = "running"
        began = time.monotonic()

        def progress(done: int, total: int) -> None:
            run.done, run.total = done, total
            if run.cancel.is_set():
                raise _Cancelled

        pipeline = run.pipeline
        max_series = series_cap(pipeline, run.start, run.end)
        try:
            run.result = backtest(
                pipeline,
                self._reader,
                self._engine_for(pipeline.model.engine),
                run.start,
                run.end,
                progress=progress,
                max_series=max_series,
            )
            # Once, here: every poll of a finished backtest returns it.
            run.view = result_json(run.result, time.monotonic() - began)
        except _Cancelled:
            self._finish(run, "cancelled", began=began)
        except (OpenAnomalyError, ValueError) as exc:
            error = str(exc)
            if max_series < pipeline.limits.max_series:
                error += (
                    f" (a backtest reads at most {MAX_POINTS_READ:,} points: over this range "
                    f"that is {max_series:,} series; narrow the query or the range)"
                )
            self._finish(run, "failed", error, began=began)
        except Exception as exc:  # a bug or a library failure: say so, keep serving
            log.exception("backtest %s of %s failed", run.id, pipeline.name)
            self._finish(run, "failed", f"internal error: {type(exc).__name__}: {exc}", began)
        else:
            self._finish(run, "done", began=began)
        with self._lock:
            self._evict()

    @staticmethod
    def _finish(
        run: BacktestRun, status: str, error: str | None = None, began: float | None = None
    ) -> None:
        run.error = error
        run.seconds = time.monotonic() - began if began is not None else 0.0
        run.finished = datetime.now(UTC)
        run.touched = time.monotonic()
        run.status = status  # last: a reader that sees "done" sees the result too


def series_cap(pipeline: Pipeline, start: datetime, end: datetime) -> int:
    """How many series a backtest from `start` to `end` may read within MAX_POINTS_READ (the
    read reaches back a train window and a context before `start`)."""
    steps = (end - start + pipeline.train.window + pipeline.infer.context) / pipeline.step
    return max(1, min(pipeline.limits.max_series, int(MAX_POINTS_READ // max(steps, 1))))


# --- JSON views --------------------------------------------------------------------------------


def run_json(run: BacktestRun, *, detail: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": run.id,
        "pipeline": run.pipeline.name,
        "start": run.start.isoformat(),
        "end": run.end.isoformat(),
        "status": run.status,
        "progress": {"done": run.done, "total": run.total},
        "error": run.error,
        "created": run.created.isoformat(),
        "finished": run.finished.isoformat() if run.finished else None,
    }
    if detail and run.status == "done" and run.view is not None:
        data.update(run.view)
    return data


def result_json(result: BacktestResult, seconds: float) -> dict[str, Any]:
    """Summary, the series worst first, and the anomalies highest score first."""
    scored = result.scored
    over = scored[scored["score"] > 1]
    inside = scored.dropna(subset=["y", "yhat_lower", "yhat_upper"])
    covered = (inside["y"] >= inside["yhat_lower"]) & (inside["y"] <= inside["yhat_upper"])
    summary = {
        "series": int(scored["unique_id"].nunique()),
        "points": len(scored),
        "fits": result.fits,
        "anomalies": len(over),
        "mae": _number((scored["y"] - scored["yhat"]).abs().mean()),
        "coverage": _number(covered.mean()) if len(inside) else None,
        "seconds": round(seconds, 3),
        "skipped": dict(list(result.skipped.items())[:MAX_SKIPPED_LISTED]),
    }
    series = []
    if len(scored):
        by_series = scored.groupby("unique_id", sort=False)
        per_series = pd.DataFrame(
            {
                "max_score": by_series["score"].max(),
                "anomalies": (scored["score"] > 1).groupby(scored["unique_id"]).sum(),
            }
        ).sort_values(by="max_score", ascending=False, na_position="last")
        series = [
            {
                "id": str(uid),
                "labels": result.labels.get(str(uid), {}),
                "max_score": _number(row.max_score),
                "anomalies": int(row.anomalies),
            }
            for uid, row in per_series.head(MAX_SERIES_LISTED).iterrows()
        ]
    top = over.sort_values("score", ascending=False, kind="stable").head(MAX_ANOMALIES_LISTED)
    anomalies = [
        {
            "series": str(row.unique_id),
            "labels": result.labels.get(str(row.unique_id), {}),
            "ds": _iso(row.ds),
            **{k: _number(getattr(row, k)) for k in ("y", "yhat", "yhat_lower", "yhat_upper")},
            "score": _number(row.score),
        }
        for row in top.itertuples(index=False)
    ]
    return {"summary": summary, "series": series, "anomalies": anomalies}


def series_json(result: BacktestResult, series_id: str) -> dict[str, Any] | None:
    """Every scored point of one series, as columns (null where unknown)."""
    points = result.scored[result.scored["unique_id"] == series_id]
    if points.empty:
        return None
    columns: dict[str, list[Any]] = {"ds": [_iso(ds) for ds in points["ds"]]}
    for name in ("y", "yhat", "yhat_lower", "yhat_upper", "score"):
        values = points[name].to_numpy(dtype=np.float64)
        columns[name] = [None if np.isnan(v) else float(v) for v in values]
    return {"id": series_id, "labels": result.labels.get(series_id, {}), "points": columns}


def _number(value: Any) -> float | None:
    number = float(value)
    return None if np.isnan(number) else number


def _iso(value: Any) -> str:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize(UTC)
    return str(stamp.isoformat())
