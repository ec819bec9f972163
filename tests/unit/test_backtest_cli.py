"""`openanomaly backtest --csv`: offline evaluation of a pipeline, and its input errors."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from openanomaly.adapters.metrics_reader.csv_file import CsvReader
from openanomaly.durations import parse_time
from openanomaly.errors import ConfigError

PIPELINE = (
    "name: bt\nquery: x\nstep: 5m\ntrain: {window: 1d, every: 1d}\ninfer: {context: 4h}\n"
    "model: {name: AutoETS, params: {season_length: 12}}\n"
)


def write_csv(path: Path, n: int = 2 * 288) -> pd.DatetimeIndex:
    t = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    rng = np.random.default_rng(2)
    y = 50 + 5 * np.sin(2 * np.pi * np.arange(n) / 12) + rng.normal(0, 1, n)
    y[n - 20] += 12
    pd.DataFrame({"timestamp": t.asi8 / 1e9, "value": y}).to_csv(path, index=False)
    return t


def test_backtest_a_csv_file_to_csv_and_html(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "bt.yaml").write_text(PIPELINE)
    t = write_csv(tmp_path / "in.csv")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OA_")}
    result = subprocess.run(
        [sys.executable, "-m", "openanomaly", "backtest", "bt", "--pipelines-dir", "p",
         "--csv", "in.csv", "--from", "2026-01-02T00:00:00", "--to", "2026-01-02T23:55:00",
         "--out", "out.csv", "--plot", "plot.html"],
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 series, 288 points scored with 1 fit(s)" in result.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns) == [
        "unique_id",
        "ds",
        "y",
        "yhat",
        "yhat_lower",
        "yhat_upper",
        "score",
    ]
    assert len(out) == 288
    spike = out[out["ds"] == f"{t[-20]:%Y-%m-%dT%H:%M:%SZ}"]
    assert spike["score"].iloc[0] > 1
    assert (out["score"] > 1).mean() < 0.05
    page = (tmp_path / "plot.html").read_text()
    assert page.count("<svg") == 1
    assert "<circle" in page  # the spike is drawn


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        ("time,value\n1,2\n", 1, "header must be 'timestamp,value' or 'timestamp,series,value'"),
        ("timestamp,value\n", 2, "no rows"),
        ("timestamp,value\n1700000000,1\nyesterday,2\n", 3, "'yesterday' is neither Unix"),
        ("timestamp,value\n1700000000,1\n1700000060,lots\n", 3, "'lots' is not a number"),
    ],
)
def test_csv_problems_name_the_line(tmp_path: Path, text: str, where: int, reason: str) -> None:
    path = tmp_path / "x.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        CsvReader(path)
    problem = caught.value.problems[0]
    assert (problem.where, problem.line) == (str(path), where)
    assert reason in problem.reason


def test_csv_long_format_gives_one_series_per_name(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("timestamp,series,value\n2026-01-01T00:00:00Z,a,1\n2026-01-01T00:00:00Z,b,2\n"
                    "2026-01-01T00:01:00+01:00,a,NaN\n")  # fmt: skip
    frame = CsvReader(path).query_range(
        "",
        datetime(2025, 12, 31, tzinfo=UTC),
        datetime(2026, 1, 2, tzinfo=UTC),
        timedelta(minutes=1),
    )
    assert sorted(frame.labels.values(), key=str) == [{"series": "a"}, {"series": "b"}]
    assert len(frame.data) == 3
    assert frame.data["ds"].min() == pd.Timestamp("2025-12-31T23:01:00Z")  # the offset applied


def test_parse_time() -> None:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert parse_time("7d", "--from", now) == now - timedelta(days=7)
    assert parse_time("2026-02-01T00:00:00", "--from", now) == datetime(2026, 2, 1, tzinfo=UTC)
    assert parse_time("0s", "--from", now) == now
    assert parse_time("1700000000", "--from", now) == datetime.fromtimestamp(1700000000, UTC)
    with pytest.raises(ConfigError, match="'soon' is not a time"):
        parse_time("soon", "--to", now)
