"""StatsForecastEngine against raw statsforecast: fit time, time to score the newest point of
every series, and serialised bytes per series model (AutoETS, 5-minute data, one week)."""

from __future__ import annotations

import argparse
import pickle
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


def frame(series: int, points: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    t = np.arange(points)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    return pd.concat(
        [
            pd.DataFrame(
                {
                    "unique_id": f"s{i:05d}",
                    "ds": start + pd.to_timedelta(t * 5, unit="min"),
                    "y": 50 + 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, points),
                }
            )
            for i in range(series)
        ],
        ignore_index=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=1_000)
    parser.add_argument("--points", type=int, default=2_016)
    parser.add_argument("--season", type=int, default=12, help="AutoETS season_length in steps")
    parser.add_argument("--repeat", type=int, default=1, help="fits per path (scoring: best of 5)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    data = frame(args.series, args.points)
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
        f"fit {args.series} x {args.points}: raw StatsForecast.fit {t_raw:.2f} s, ours {t_ours:.2f} s, ratio {t_ours / t_raw:.2f}"
    )

    context = SeriesFrame(data.groupby("unique_id").tail(288).reset_index(drop=True))
    newest = [context.data["ds"].max()]
    ys = [g["y"].to_numpy() for _, g in context.data.groupby("unique_id", sort=True)]
    models = [raw.fitted_[i, 0] for i in range(args.series)]

    def raw_forward() -> None:
        for model, y in zip(models, ys, strict=True):
            model.forward(y=y, h=1, fitted=True)

    raw_forward()  # warm both paths (numba, caches) before timing
    engine.predict(fitted, context, newest, 99)
    t_fw, _ = best_of(raw_forward, 5)
    t_pred, bands = best_of(lambda: engine.predict(fitted, context, newest, 99), 5)
    assert len(bands) == args.series
    print(
        f"score newest point: raw forward loop {t_fw * 1000:.1f} ms, ours {t_pred * 1000:.1f} ms, ratio {t_pred / t_fw:.2f}"
    )
    untrimmed = np.mean([len(pickle.dumps(m)) for m in models[:50]])
    trimmed = len(engine.dumps(fitted)) / args.series
    print(
        f"bytes per series model: untrimmed {untrimmed:,.0f}, ours (trimmed, whole artifact) {trimmed:,.0f}"
    )
    print(f"peak RSS {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
