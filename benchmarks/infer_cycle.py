"""One infer cycle of the daemon against a local VictoriaMetrics: AutoETS, step 1m, context 1d.

Seeds N series x (1 day + a few minutes) into a private VictoriaMetrics, registers a model for
all of them, then runs the infer use case as the daemon does (model cache, incremental context
cache, remote write) and reports, per cycle: wall time from job start to samples accepted, the
phases (read / prepare / model / score / write), the ratio of the whole to the model phase, and
the bytes read from the TSDB. The first cycle is the full context read a (re)start does; the
next ones are the steady state.

Fitting AutoETS takes ~1.4 s per series here, so `--fit-series` distinct series are fitted and
their fitted models are reused for the others (forward's cost does not depend on which
parameters it runs). Peak RSS is for this process, which holds what the daemon would: the
loaded models, the context cache, one cycle's frames.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mib

from openanomaly.adapters.model_engine.statsforecast import StatsForecastEngine
from openanomaly.bootstrap import build
from openanomaly.config.pipeline import Pipeline
from openanomaly.config.settings import Settings
from openanomaly.domain.labels import output_labels
from openanomaly.domain.series import SeriesFrame, series_id
from openanomaly.local_tsdb import LocalVictoriaMetrics
from openanomaly.ports import ModelRecord, OutputSeries
from openanomaly.usecases.common import ModelCache
from openanomaly.usecases.context_cache import ContextCache
from openanomaly.usecases.infer import infer

STEP = timedelta(minutes=1)
METRIC = "bench_load"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def values(i: int, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n)
    return np.round(100 + i % 50 + 10 * np.sin(2 * np.pi * t / 60) + rng.normal(0, 1, n), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=1_000)
    parser.add_argument("--fit-series", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=4, help="steady-state cycles after the first")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    binary = shutil.which("victoria-metrics")
    if binary is None:
        raise SystemExit("victoria-metrics is not on PATH (apt-get install victoria-metrics)")
    work = Path(tempfile.mkdtemp(prefix="oa-bench-"))
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    points = 1440 + 10 + args.cycles
    with LocalVictoriaMetrics(work / "vm", binary=binary) as vm:
        settings = Settings.model_validate(
            {
                "tsdb": {"url": vm.url, "query_delay": "0s"},
                "storage": {"data_dir": str(work / "data")},
                "pipelines_dir": str(work),
            }
        )
        clock = Clock(end - STEP * args.cycles)
        app = build(settings, clock=clock)
        pipeline = Pipeline.model_validate(
            {
                "name": "bench",
                "query": METRIC,
                "step": "1m",
                "infer": {"every": "1m", "context": "1d", "max_catchup": "1h"},
                "model": {"name": "AutoETS", "params": {"season_length": 12}},
                "limits": {"max_series": args.series},
            }
        )
        seed(app, vm, args.series, points, end)
        register(
            app, pipeline, series=args.series, fit_series=args.fit_series, end=end, clock=clock
        )
        print(f"peak RSS after seeding and fitting {peak_rss_mib():,.0f} MiB")
        cycles(app, pipeline, args.cycles, clock)
        print(f"peak RSS {peak_rss_mib():,.0f} MiB (models, context cache, one cycle)")
        app.close()
    shutil.rmtree(work, ignore_errors=True)


def seed(app: Any, vm: LocalVictoriaMetrics, series: int, points: int, end: datetime) -> None:
    rng = np.random.default_rng(0)
    stamps = pd.date_range(end=end, periods=points, freq="1min")
    ts_ms = (stamps.asi8 // 1_000_000).astype(np.int64)
    started = time.perf_counter()
    batch: list[OutputSeries] = []
    for i in range(series):
        labels = output_labels(METRIC, {"instance": f"host-{i:05d}"}, {})
        batch.append(OutputSeries(labels, ts_ms, values(i, points, rng)))
        if len(batch) == 500:
            app.writer.write(batch)
            batch = []
    if batch:
        app.writer.write(batch)
    vm.flush()
    print(f"seeded {series} x {points} points in {time.perf_counter() - started:.1f} s")


def register(
    app: Any, pipeline: Pipeline, *, series: int, fit_series: int, end: datetime, clock: Clock
) -> None:
    engine = StatsForecastEngine()
    fit_ids = [
        series_id({"__name__": METRIC, "instance": f"host-{i:05d}"}) for i in range(fit_series)
    ]
    # Only the series to fit: reading all of them here would set the peak RSS the daemon is
    # measured by before the daemon's own work starts.
    fit_hosts = "|".join(f"host-{i:05d}" for i in range(fit_series))
    history = app.reader.query_range(
        f'{METRIC}{{instance=~"{fit_hosts}"}}', end - timedelta(days=2), end, STEP
    )
    sample = history.data[history.data["unique_id"].isin(fit_ids)].reset_index(drop=True)
    started = time.perf_counter()
    fitted = engine.fit(SeriesFrame(sample, history.labels), pipeline.model, STEP)
    print(f"fitted {fit_series} series in {time.perf_counter() - started:.1f} s")
    for i in range(series):
        uid = series_id({"__name__": METRIC, "instance": f"host-{i:05d}"})
        source = fit_ids[i % fit_series]
        for name in ("models", "sigma", "half", "ranges", "origin"):  # every per-series field
            per_series = getattr(fitted, name)
            if source in per_series:
                per_series[uid] = per_series[source]
    artifact = app.artifacts.put("bench/model.bin", engine.dumps(fitted))
    print(f"artifact: {artifact.size / series:,.0f} bytes per series")
    app.registry.add_model(
        ModelRecord(
            "bench", 0, pipeline.config_hash(), "statsforecast", artifact,
            clock(), series, end - timedelta(days=2), end - timedelta(days=1), 0.0,
        )
    )  # fmt: skip
    # The daemon's start: nothing scored yet, so the first cycle scores the newest point.
    app.registry.set_watermark("bench", clock.now - STEP)
    del history, sample


def cycles(app: Any, pipeline: Pipeline, count: int, clock: Clock) -> None:
    models, contexts = ModelCache(), ContextCache()
    ports = app.ports()
    reader = app.reader
    print(
        "cycle  kind         wall s   read  prepare  model  score  write  ratio  MB read  samples"
    )
    profile = cProfile.Profile() if os.environ.get("OA_BENCH_PROFILE") else None
    for cycle in range(count + 1):
        if profile is not None and cycle == 1:
            profile.enable()
        before = reader.bytes_read  # type: ignore[attr-defined]
        started = time.perf_counter()
        outcome = infer(pipeline, ports, models, contexts=contexts)
        wall = time.perf_counter() - started
        assert outcome.run.status == "ok", outcome.run.error
        t = outcome.timings
        read_mb = (reader.bytes_read - before) / 1e6  # type: ignore[attr-defined]
        kind = "full read" if cycle == 0 else "incremental"
        print(
            f"{cycle:>5}  {kind:<11} {wall:>7.2f} {t.get('read', 0):>6.2f} "
            f"{t.get('prepare', 0):>8.2f} {t.get('model', 0):>6.2f} {t.get('score', 0):>6.2f} "
            f"{t.get('write', 0):>6.2f} {wall / max(t.get('model', 1e-9), 1e-9):>6.2f} "
            f"{read_mb:>8.1f} {outcome.run.samples_written:>8}"
        )
        clock.now += STEP
        if profile is not None and cycle == 1:
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
