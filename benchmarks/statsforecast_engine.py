"""StatsForecastEngine against raw statsforecast: fit time, time to score the newest point of
every series, and serialised bytes per series model (AutoETS, 5-minute data, one week).

Fitting AutoETS costs ~1.4 s per series of a week on a small machine, so the fit ratio is
measured on `--fit-series` distinct series. Scoring at `--series` reuses those fitted models
(parameters and sigma) under new unique_ids, each scored on its own distinct data: `forward`
filters the context with whatever parameters it is given, so its cost does not depend on which
fitted parameters a series carries."""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import pickle
import pstats
import sys
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, peak_rss_mib

from openanomaly.adapters.model_engine.statsforecast import StatsForecastEngine
from openanomaly.config.pipeline import ModelSpec
from openanomaly.domain.series import SeriesFrame

STEP = timedelta(minutes=5)
CONTEXT = 288  # one day at 5m: the context the daemon reads to score the newest point


def frame(series: int, points: int, first: int = 0, seed: int = 0) -> pd.DataFrame:
    """`series` noisy 12-step sines, points `first`..`points - 1` of each, sorted by
    unique_id then ds (as SeriesFrame requires). Built as whole arrays: a frame per series
    takes longer than the benchmark at 10,000 series."""
    rng = np.random.default_rng(seed)
    t = np.arange(first, points)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    y = 50 + 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, (series, len(t)))
    return pd.DataFrame(
        {
            "unique_id": np.repeat([f"s{i:05d}" for i in range(series)], len(t)),
            "ds": np.tile(start + pd.to_timedelta(t * 5, unit="min"), series),
            "y": y.ravel(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=1_000, help="series scored")
    parser.add_argument("--fit-series", type=int, default=100, help="series fitted (both ways)")
    parser.add_argument("--points", type=int, default=2_016)
    parser.add_argument("--season", type=int, default=12, help="AutoETS season_length in steps")
    parser.add_argument("--repeat", type=int, default=1, help="fits per path (scoring: best of 5)")
    parser.add_argument("--profile", action="store_true", help="profile one engine.predict")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    data = frame(args.fit_series, args.points)
    naive = data.assign(ds=data["ds"].dt.tz_localize(None))
    spec = ModelSpec(name="AutoETS", params={"season_length": args.season})
    engine = StatsForecastEngine()
    StatsForecast(models=[AutoETS(season_length=args.season)], freq="300s").fit(
        naive.head(args.points)
    )  # compile

    t_raw, raw = best_of(
        lambda: StatsForecast(
            models=[AutoETS(season_length=args.season)], freq="300s", n_jobs=1
        ).fit(naive),
        args.repeat,
    )
    t_ours, fitted = best_of(lambda: engine.fit(SeriesFrame(data), spec, STEP), args.repeat)
    print(
        f"fit {args.fit_series} x {args.points}: raw StatsForecast.fit {t_raw:.2f} s, "
        f"ours {t_ours:.2f} s, ratio {t_ours / t_raw:.2f}"
    )
    # Bytes on the fitted subset: in a replicated model pickle would store each shared model
    # object once, and understate the size.
    untrimmed = np.mean([len(pickle.dumps(raw.fitted_[i, 0])) for i in range(args.fit_series)])
    trimmed = len(engine.dumps(fitted)) / args.fit_series
    print(
        f"bytes per series model ({args.fit_series} fitted): untrimmed pickle {untrimmed:,.0f}, "
        f"ours (trimmed, whole artifact / series) {trimmed:,.0f}"
    )
    rss_fit = peak_rss_mib()

    # Series i reuses what was fitted for series i % fit-series, in both paths: every
    # per-series field of the fitted model (models, sigma, and any the engine adds later).
    fitted_ids = sorted(fitted.models)
    context = SeriesFrame(frame(args.series, args.points, args.points - CONTEXT, seed=1))
    ids = sorted(context.data["unique_id"].unique())
    per_series = {
        f.name: {u: value[fitted_ids[i % len(fitted_ids)]] for i, u in enumerate(ids)}
        for f in dataclasses.fields(fitted)
        if isinstance(value := getattr(fitted, f.name), dict)
        and value.keys() == fitted.models.keys()
    }
    big = dataclasses.replace(fitted, **per_series)
    models = [raw.fitted_[i % args.fit_series, 0] for i in range(args.series)]
    ys = list(context.data["y"].to_numpy().reshape(args.series, CONTEXT))
    newest = [context.data["ds"].max()]
    print(
        f"scoring {args.series} series x {CONTEXT} points of distinct data, reusing the "
        f"{'/'.join(per_series)} fitted on {args.fit_series} series "
        "(forward's cost does not depend on which parameters)"
    )

    def raw_forward() -> None:
        for model, y in zip(models, ys, strict=True):
            model.forward(y=y, h=1, fitted=True)

    raw_forward()  # warm both paths (numba, caches) before timing
    engine.predict(big, context, newest, 99)
    t_fw, _ = best_of(raw_forward, 5)
    t_pred, bands = best_of(lambda: engine.predict(big, context, newest, 99), 5)
    assert len(bands) == args.series
    print(
        f"score newest point of {args.series}: raw forward loop {t_fw * 1000:,.0f} ms, "
        f"ours {t_pred * 1000:,.0f} ms, ratio {t_pred / t_fw:.2f}"
    )
    print(
        f"peak RSS {peak_rss_mib():,.0f} MiB (after fitting {args.fit_series} series: "
        f"{rss_fit:,.0f} MiB)"
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(engine.predict, big, context, newest, 99)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
