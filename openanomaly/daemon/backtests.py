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
    ) -> None:
        self._reader = reader
        self._engine_for = engine_for
        self._keep = keep
        # Results are whole scored frames (~100 bytes a point): a backtest of 10,000 series
        # over two days is 5.8 million points. Older results go first; the newest stays.
        self._keep_points = keep_points
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
        """Forget the oldest finished backtests beyond `keep` runs or `keep_points` points."""
        finished = [r for r in self._runs.values() if not r.active]
        points = sum(len(r.result.scored) for r in finished if r.result is not None)
        for run in finished[:-1]:  # the newest result stays, however big
            if len(self._runs) <= self._keep and points <= self._keep_points:
                break
            del self._runs[run.id]
            points -= len(run.result.scored) if run.result is not None else 0

    def get(self, run_id: str) -> BacktestRun | None:
        with self._lock:
            return self._runs.get(run_id)

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
        try:
            run.result = backtest(
                pipeline,
                self._reader,
                self._engine_for(pipeline.model.engine),
                run.start,
                run.end,
                progress=progress,
            )
        except _Cancelled:
            self._finish(run, "cancelled", began=began)
        except (OpenAnomalyError, ValueError) as exc:
            self._finish(run, "failed", str(exc), began=began)
        except Exception as exc:  # a bug or a library failure: say so, keep serving
            log.exception("backtest %s of %s failed", run.id, pipeline.name)
            self._finish(run, "failed", f"internal error: {type(exc).__name__}: {exc}", began)
        else:
            # Once, here: every poll of a finished backtest returns it.
            run.view = result_json(run.result, time.monotonic() - began)
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
        run.status = status  # last: a reader that sees "done" sees the result too


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
