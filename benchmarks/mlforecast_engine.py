"""MLForecastEngine (LightGBM on lag, rolling and calendar features) against raw mlforecast:
time to fit, time to predict the newest point of every series, artifact bytes and peak RSS
(5-minute data, one week per series).

Each path runs in a fresh subprocess, so its peak RSS is its own (ru_maxrss never goes down,
and 10,000 series would hide 1,000). Both run on the same data in the same invocation, one
after the other, so the ratio compares like with like on this machine."""

from __future__ import annotations

import argparse
import cProfile
import json
import pickle
import pstats
import subprocess
import sys
import warnings
from datetime import timedelta
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import best_of, peak_rss_mib
from statsforecast_engine import frame

STEP = timedelta(minutes=5)
CONTEXT = 288  # one day at 5m: the context the daemon reads to score the newest point


def ours(series: int, points: int, profile: bool) -> dict[str, float]:
    from openanomaly.adapters.model_engine.mlforecast import MLForecastEngine
    from openanomaly.config.pipeline import ModelSpec
    from openanomaly.domain.series import SeriesFrame

    spec = ModelSpec(
        engine="mlforecast", name="LGBMRegressor", params={"season_length": 12, "verbose": -1}
    )
    engine = MLForecastEngine()
    engine.fit(SeriesFrame(frame(2, 200)), spec, STEP)  # imports and first-call costs, untimed
    data = frame(series, points)
    rss_data = peak_rss_mib()
    t_fit, fitted = best_of(lambda: engine.fit(SeriesFrame(data), spec, STEP), 1)
    context = SeriesFrame(data.groupby("unique_id").tail(CONTEXT).reset_index(drop=True))
    newest = [context.data["ds"].max()]
    t_pred, bands = best_of(lambda: engine.predict(fitted, context, newest, 99), 3)
    assert len(bands) == series, len(bands)
    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(engine.predict, fitted, context, newest, 99)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    return {
        "fit": t_fit,
        "predict": t_pred,
        "bytes": len(engine.dumps(fitted)),
        "rss_data": rss_data,
        "rss": peak_rss_mib(),
    }


def raw(series: int, points: int, profile: bool) -> dict[str, float]:
    import lightgbm
    import mlforecast
    from mlforecast.lag_transforms import RollingMean

    def forecaster() -> mlforecast.MLForecast:
        # The features our engine derives from season_length 12 at a 5-minute step.
        return mlforecast.MLForecast(
            models=[lightgbm.LGBMRegressor(verbose=-1)],
            freq="300s",
            lags=[1, 2, 3, 12],
            lag_transforms={1: [RollingMean(12)]},
            date_features=["hour", "dayofweek"],
        )

    def naive(series: int, points: int) -> pd.DataFrame:
        data = frame(series, points)
        return data.assign(ds=data["ds"].dt.tz_localize(None))

    forecaster().fit(naive(2, 200)).predict(h=1)  # first-call costs, untimed (as in ours)
    data = naive(series, points)
    rss_data = peak_rss_mib()
    t_fit, fitted = best_of(lambda: forecaster().fit(data), 1)
    t_pred, forecast = best_of(lambda: fitted.predict(h=1), 3)
    assert len(forecast) == series, len(forecast)
    return {
        "fit": t_fit,
        "predict": t_pred,
        "bytes": len(pickle.dumps(fitted.models_["LGBMRegressor"])),
        "rss_data": rss_data,
        "rss": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=1_000)
    parser.add_argument("--points", type=int, default=2_016)
    parser.add_argument("--profile", action="store_true", help="profile one engine.predict")
    parser.add_argument("--worker", choices=["raw", "ours"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        warnings.filterwarnings("ignore")
        run = raw if args.worker == "raw" else ours
        print(json.dumps(run(args.series, args.points, args.profile)))
        return

    results = {}
    for path in ("raw", "ours"):
        command = [sys.executable, __file__, "--worker", path]
        command += ["--series", str(args.series), "--points", str(args.points)]
        command += ["--profile"] if args.profile else []
        out = subprocess.run(command, check=True, capture_output=True, text=True)
        sys.stderr.write(out.stderr)
        results[path] = json.loads(out.stdout.strip().splitlines()[-1])
    r, o = results["raw"], results["ours"]
    n = args.series
    print(f"{n} series x {args.points} points, LGBMRegressor, lags 1,2,3,12, rolling mean 12")
    print(
        f"fit: raw MLForecast.fit {r['fit']:.1f} s, ours {o['fit']:.1f} s, "
        f"ratio {o['fit'] / r['fit']:.2f} (ours fits twice: split-conformal band)"
    )
    print(
        f"predict newest point: raw predict(h=1) {r['predict'] * 1000:,.0f} ms, "
        f"ours from {CONTEXT}-point context {o['predict'] * 1000:,.0f} ms, "
        f"ratio {o['predict'] / r['predict']:.2f}"
    )
    print(
        f"artifact: ours {o['bytes']:,} bytes ({o['bytes'] / n:,.1f} per series), "
        f"raw booster pickled {r['bytes']:,} bytes"
    )
    for name, res in (("raw", r), ("ours", o)):
        print(
            f"peak RSS {name}: {res['rss']:,.0f} MiB ({res['rss'] / n * 1024:,.0f} KiB per "
            f"series; before fitting, with imports and the input frame: {res['rss_data']:,.0f} MiB)"
        )


if __name__ == "__main__":
    main()
