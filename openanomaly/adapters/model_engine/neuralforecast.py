"""NeuralForecast (extra `neural`): NHITS, NBEATS, TFT, ... trained with a quantile loss.

Forecasts are one step ahead, as for the other engines: the model is built with `h=1`, and the
forecast for t is `predict` on the `input_size` points before t. Many (series, t) pairs are
scored in one `predict` call by giving each its own window as a pseudo-series: the models
offered here are univariate and global (they share weights across series and see nothing but
the window), so a window's name does not change its forecast.

The band is conformalized quantile regression (Romano et al., 2019): the network learns the
level's lower and upper quantiles with `MQLoss`; the newest `CALIBRATION_SHARE` of each series
is held out of training, and the level quantile of how far its points fall outside the learned
band widens (or narrows) the band. A network trained for few steps learns quantiles that are
too narrow; the held-out correction keeps the alert rate near what `level` promises.
"""

from __future__ import annotations

import io
import logging
import tarfile
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openanomaly.adapters.model_engine.catalog_checks import check_name
from openanomaly.adapters.model_engine.introspect import package_dir
from openanomaly.adapters.model_engine.pickled import dump_model, load_model
from openanomaly.config.pipeline import season_steps
from openanomaly.domain.ranges import ranges_for, training_ranges
from openanomaly.errors import MissingExtra
from openanomaly.ports import CatalogIssue

if TYPE_CHECKING:
    import pandas as pd

    from openanomaly.config.pipeline import ModelSpec
    from openanomaly.domain.series import SeriesFrame

# Univariate, global models that train with MQLoss and forecast from a window of past values.
# Left out: multivariate ones (a window per pseudo-series would mix series up), HINT (a
# reconciliation wrapper), TimeLLM (downloads a language model), DeepAR/DeepNPTS (own losses).
MODELS = [
    "Autoformer",
    "BiTCN",
    "DilatedRNN",
    "DLinear",
    "FEDformer",
    "GRU",
    "Informer",
    "KAN",
    "LSTM",
    "MLP",
    "NBEATS",
    "NBEATSx",
    "NHITS",
    "NLinear",
    "PatchTST",
    "RNN",
    "TCN",
    "TFT",
    "TiDE",
    "TimesNet",
    "VanillaTransformer",
    "xLSTM",
]
# Set by the engine: one-step-ahead forecasts, the quantile loss for the band, no exogenous data.
RESERVED = {
    "h": "the engine forecasts one step ahead (h=1)",
    "loss": "the engine trains with MQLoss at the pipeline's level",
    "valid_loss": "the engine trains with MQLoss at the pipeline's level",
    "futr_exog_list": "exogenous variables are not supported",
    "hist_exog_list": "exogenous variables are not supported",
    "stat_exog_list": "exogenous variables are not supported",
}
DEFAULTS: dict[str, Any] = {
    "accelerator": "cpu",  # a GPU is opt-in: `accelerator: gpu` (or `auto`) in params
    "random_seed": 1,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "enable_checkpointing": False,
    "logger": False,
}
CALIBRATION_SHARE = 0.2
MIN_CALIBRATION = 20  # fewer held-out points than this: a series uses the pooled correction
WINDOWS_PER_CALL = 50_000  # pseudo-series per predict call: bounds memory on long backtests


class NeuralForecastCatalog:
    """Model names of `neuralforecast.models`; the import (torch) is paid only when fitting."""

    engine = "neuralforecast"

    def check(self, name: str, params: Mapping[str, Any]) -> list[CatalogIssue]:
        issues = check_name(self.engine, name, MODELS)  # curated: needs no import
        if package_dir("neuralforecast") is None:
            missing = MissingExtra("engine 'neuralforecast'", "neural", "neuralforecast")
            issues.insert(0, CatalogIssue("engine", str(missing)))
        if issues:
            return issues
        issues = [
            CatalogIssue(f"params.{key}", f"{key} is not a parameter here: {why}")
            for key, why in RESERVED.items()
            if key in params
        ]
        if "input_size" not in params and "season_length" not in params:
            issues.append(
                CatalogIssue(
                    "params.input_size",
                    f"{name} needs input_size (steps of history per forecast), "
                    "or season_length (input_size defaults to one season)",
                )
            )
        return issues


@dataclass
class FittedNetwork:
    """A trained network (NeuralForecast's own saved files, as a tar archive) and the band's
    per-series conformal corrections."""

    model_name: str
    input_size: int
    freq: str
    level: float
    archive: bytes
    correction: dict[str, float] = field(default_factory=dict)
    pooled_correction: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # training min, max
    live: Any = field(default=None, repr=False, compare=False)  # the loaded NeuralForecast

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "live": None}  # the archive is the serialised network


class NeuralForecastEngine(NeuralForecastCatalog):
    def fit(self, frame: SeriesFrame, spec: ModelSpec, step: timedelta) -> FittedNetwork:
        import numpy as np

        nf_module = _import()
        params = {**DEFAULTS, **spec.params}
        seasons = season_steps(params.pop("season_length", None), step)
        input_size = int(params.pop("input_size", max(seasons) if seasons else 0))
        freq = f"{int(step.total_seconds())}s"
        data = _naive(frame.data)
        size = data.groupby("unique_id")["y"].transform("size")
        rank = data.groupby("unique_id").cumcount()
        held_out = (rank >= size * (1 - CALIBRATION_SHARE)).to_numpy()
        counts = data[~held_out].groupby("unique_id").size()
        short = counts.index[counts < input_size + 1]
        skipped = {
            str(u): f"{counts[u]} training points; {spec.name} needs input_size + 1 = "
            f"{input_size + 1}"
            for u in short
        }
        train = data[~held_out & ~data["unique_id"].isin(short)]
        if train.empty:  # nothing to train on: every series waits, with its reason
            return FittedNetwork(
                spec.name,
                input_size,
                freq,
                spec.level,
                b"",
                versions=library_versions(),
                skipped=skipped,
            )
        model_class = getattr(nf_module.models, spec.name)
        loss = nf_module.losses.MQLoss(level=[spec.level])
        with _quiet():
            network = model_class(h=1, input_size=input_size, loss=loss, **params)
            forecaster = nf_module.NeuralForecast(models=[network], freq=freq)
            forecaster.fit(train)
        fitted = FittedNetwork(
            spec.name,
            input_size,
            freq,
            spec.level,
            _archive(forecaster),
            versions=library_versions(),
            skipped=skipped,
            live=forecaster,
        )
        # Conformal step: how far held-out points fall outside the learned quantiles.
        calibration = data[held_out & ~data["unique_id"].isin(short)]
        if not calibration.empty:
            bands = self._quantiles(fitted, data, calibration[["unique_id", "ds"]])
            joined = bands.merge(calibration, on=["unique_id", "ds"])
            y = joined["y"].to_numpy()
            excess = np.maximum(joined["lo"].to_numpy() - y, y - joined["hi"].to_numpy())
            quantile = min(1.0, spec.level / 100 * (1 + 1 / max(len(excess), 1)))
            fitted.pooled_correction = float(np.quantile(excess, quantile))
            for uid, own in joined.assign(excess=excess).groupby("unique_id")["excess"]:
                if len(own) >= MIN_CALIBRATION:
                    fitted.correction[str(uid)] = float(np.quantile(own, quantile))
        fitted.ranges = training_ranges(frame.data)
        return fitted

    def predict(
        self, model: FittedNetwork, context: SeriesFrame, at: Sequence[datetime], level: float
    ) -> pd.DataFrame:
        """`level` is fixed when the network is trained (its quantiles); the fitted level wins."""
        import numpy as np
        import pandas as pd

        data = _naive(context.data)
        wanted = pd.to_datetime(list(at), utc=True).tz_localize(None)
        targets = data.loc[data["ds"].isin(wanted), ["unique_id", "ds"]]
        skipped = {u: r for u, r in model.skipped.items() if u in set(targets["unique_id"])}
        targets = targets[~targets["unique_id"].isin(list(skipped))]
        bands = self._quantiles(model, data, targets, skipped)
        corrections = bands["unique_id"].map(
            lambda u: model.correction.get(str(u), model.pooled_correction)
        )
        lower = bands["lo"].to_numpy() - corrections.to_numpy(dtype=float)
        upper = bands["hi"].to_numpy() + corrections.to_numpy(dtype=float)
        yhat = bands["median"].to_numpy(dtype=float)
        out = pd.DataFrame(
            {
                "unique_id": bands["unique_id"].to_numpy(),
                "ds": pd.to_datetime(bands["ds"].to_numpy()).tz_localize("UTC"),
                "yhat": yhat,
                # A correction below zero narrows the band; it never crosses the median.
                "yhat_lower": np.minimum(lower, yhat),
                "yhat_upper": np.maximum(upper, yhat),
                **ranges_for(bands["unique_id"].to_numpy(), model.ranges),
            }
        )
        out.attrs["skipped"] = skipped
        return out

    def _quantiles(
        self,
        model: FittedNetwork,
        data: pd.DataFrame,
        targets: pd.DataFrame,
        skipped: dict[str, str] | None = None,
    ) -> pd.DataFrame:
        """median, lo, hi for each (unique_id, ds) target from the `input_size` points before
        it, as one pseudo-series per target. Targets without a full window just before them
        (series start, a gap) go to `skipped`."""
        import numpy as np
        import pandas as pd

        step = pd.Timedelta(model.freq)
        ids = data["unique_id"].to_numpy()
        ds = data["ds"].to_numpy()
        ys = data["y"].to_numpy(dtype=np.float64)
        position = pd.Series(np.arange(len(data)), index=pd.MultiIndex.from_arrays([ids, ds]))
        rows = position.reindex(pd.MultiIndex.from_frame(targets)).to_numpy()
        first_row = pd.Series(np.arange(len(data))).groupby(ids).transform("min").to_numpy()
        n = model.input_size
        windows = []
        for row in rows.tolist():
            start = row - n
            if start < first_row[row] or ds[row - 1] != ds[row] - step:
                if skipped is not None:
                    skipped.setdefault(
                        str(ids[row]), f"fewer than input_size={n} points just before {ds[row]}"
                    )
                continue
            windows.append(row)
        empty = pd.DataFrame({"unique_id": [], "ds": [], "median": [], "lo": [], "hi": []})
        if not windows:
            return empty
        forecaster = self._live(model)
        parts = []
        columns: dict[str, str] = {}
        for chunk_start in range(0, len(windows), WINDOWS_PER_CALL):
            chunk = np.asarray(windows[chunk_start : chunk_start + WINDOWS_PER_CALL])
            take = (chunk[:, None] - n + np.arange(n)[None, :]).ravel()
            pseudo = pd.DataFrame(
                {
                    "unique_id": np.repeat(np.arange(len(chunk)), n),
                    "ds": ds[take],
                    "y": ys[take],
                }
            )
            with _quiet():
                out = forecaster.predict(df=pseudo)
            out = out.sort_values("unique_id")
            # Named `<model>-median`, `<model>-lo-<level>`, `<model>-hi-<level>`, the level
            # printed as the library pleases (99 or 99.0).
            columns = columns or {
                kind: next(c for c in out.columns if c.startswith(f"{model.model_name}-{kind}"))
                for kind in ("median", "lo", "hi")
            }
            parts.append(
                pd.DataFrame(
                    {
                        "unique_id": ids[chunk],
                        "ds": ds[chunk],
                        "median": out[columns["median"]].to_numpy(),
                        "lo": out[columns["lo"]].to_numpy(),
                        "hi": out[columns["hi"]].to_numpy(),
                    }
                )
            )
        return pd.concat(parts, ignore_index=True)

    def _live(self, model: FittedNetwork) -> Any:
        if model.live is None:
            nf_module = _import()
            with tempfile.TemporaryDirectory(prefix="openanomaly-nf-") as tmp:
                with tarfile.open(fileobj=io.BytesIO(model.archive)) as tar:
                    tar.extractall(tmp, filter="data")
                with _quiet():
                    model.live = nf_module.NeuralForecast.load(tmp)
        return model.live

    def dumps(self, model: FittedNetwork) -> bytes:
        return dump_model(self.engine, model)

    def loads(self, blob: bytes) -> FittedNetwork:
        return load_model(blob, self.engine, FittedNetwork, library_versions())


def _naive(frame: pd.DataFrame) -> pd.DataFrame:
    data = frame[["unique_id", "ds", "y"]].copy()
    data["unique_id"] = data["unique_id"].astype(str)
    data["ds"] = data["ds"].dt.tz_localize(None)
    return data.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)


def _archive(forecaster: Any) -> bytes:
    """NeuralForecast's own `save` files (checkpoint + configuration) as one tar."""
    with tempfile.TemporaryDirectory(prefix="openanomaly-nf-") as tmp:
        forecaster.save(tmp, overwrite=True, save_dataset=False)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for path in sorted(Path(tmp).iterdir()):
                tar.add(path, arcname=path.name)
        return buffer.getvalue()


class _ModuleSet:
    def __init__(self) -> None:
        import neuralforecast
        import neuralforecast.losses.pytorch as losses
        from neuralforecast import models

        self.NeuralForecast = neuralforecast.NeuralForecast
        self.models = models
        self.losses = losses


def _import() -> _ModuleSet:
    try:
        return _ModuleSet()
    except ModuleNotFoundError as exc:
        raise MissingExtra(
            "engine 'neuralforecast'", "neural", exc.name or "neuralforecast"
        ) from None


@contextmanager
def _quiet() -> Iterator[None]:
    """Lightning logs a banner per fit and predict (seed, devices, deprecations): not ours."""
    names = ("lightning", "lightning.pytorch", "pytorch_lightning", "lightning_fabric")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, lvl in zip(loggers, levels, strict=True):
            lg.setLevel(lvl)


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("neuralforecast", "torch", "numpy")}
