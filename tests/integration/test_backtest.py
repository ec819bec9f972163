"""Backtest over TSDB data and over the same data in a CSV file gives the same scores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from openanomaly.adapters.metrics_reader.csv_file import CsvReader
from openanomaly.adapters.metrics_reader.prometheus import PrometheusReader
from openanomaly.adapters.metrics_writer.remote_write import RemoteWriteWriter
from openanomaly.adapters.model_engine.statsforecast import StatsForecastEngine
from openanomaly.config.pipeline import Pipeline
from openanomaly.config.settings import RemoteWriteSettings, TSDBSettings
from openanomaly.domain.labels import output_labels
from openanomaly.local_tsdb import LocalTSDB
from openanomaly.ports import OutputSeries
from openanomaly.usecases.backtest import backtest

pytestmark = pytest.mark.integration


def test_csv_and_tsdb_backtests_agree(tsdb: LocalTSDB, tmp_path: Path) -> None:
    metric = f"oa_backtest_{tsdb.binary_name.replace('-', '_')}"
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=1)
    end -= timedelta(minutes=end.minute % 5)
    n = 3 * 288
    stamps = pd.date_range(end=end, periods=n, freq="5min")
    rng = np.random.default_rng(5)
    rows, series = [], []
    for k, name in enumerate(("a", "b")):
        # 6 decimals: within the 12 significant digits VictoriaMetrics keeps
        y = np.round(
            40 + 8 * k + 4 * np.sin(2 * np.pi * np.arange(n) / 12) + rng.normal(0, 1, n), 6
        )
        y[n - 30] += 10
        rows.append(
            pd.DataFrame(
                {"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"), "series": name, "value": y}
            )
        )
        ts_ms = (stamps.asi8 // 1_000_000).astype(np.int64)
        series.append(OutputSeries(output_labels(metric, {"series": name}, {}), ts_ms, y))
    writer = RemoteWriteWriter(TSDBSettings(url=tsdb.url), RemoteWriteSettings(), tmp_path / "ob")
    assert writer.write(series).accepted == 2 * n
    writer.close(5)
    tsdb.flush()
    csv = tmp_path / "data.csv"
    pd.concat(rows).to_csv(csv, index=False)

    pipeline = Pipeline.model_validate(
        {
            "name": "bt",
            "query": metric,
            "step": "5m",
            "train": {"window": "1d", "every": "12h"},
            "infer": {"context": "4h"},
            "model": {"name": "AutoETS", "params": {"season_length": 12}},
        }
    )
    start, stop = end - timedelta(hours=20), end
    engine = StatsForecastEngine()
    from_csv = backtest(pipeline, CsvReader(csv), engine, start, stop)
    reader = PrometheusReader(TSDBSettings(url=tsdb.url))
    try:
        from_tsdb = backtest(pipeline, reader, engine, start, stop)
    finally:
        reader.close()

    def keyed(result: object) -> pd.DataFrame:
        scored = result.scored  # type: ignore[attr-defined]
        names = {uid: labels["series"] for uid, labels in result.labels.items()}  # type: ignore[attr-defined]
        return scored.assign(unique_id=scored["unique_id"].map(names)).set_index(
            ["unique_id", "ds"]
        )

    a, b = keyed(from_csv), keyed(from_tsdb)
    assert from_csv.fits == from_tsdb.fits == 2
    assert len(a) == 2 * 20 * 12 + 2  # both ends inclusive
    pd.testing.assert_frame_equal(a.sort_index(), b.sort_index(), check_exact=False, rtol=1e-9)
    spikes = a.loc[[("a", stamps[n - 30]), ("b", stamps[n - 30])], "score"]
    assert (spikes > 1).all()
