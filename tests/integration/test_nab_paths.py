"""The NAB benchmark's two paths (`benchmarks/nab/run.py`) on real NAB files: the CSV file
backtested offline, and the same file remote-written into a real VictoriaMetrics and read back
through query_range, give the same scores row for row. The files are irregularly sampled, with
gaps and, for speed_t4013, a repeated timestamp: the cases where a reader could differ."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from openanomaly.local_tsdb import LocalVictoriaMetrics
from tests.conftest import require_binary

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("only", ["speed_7578", "exchange-2_cpc"])
def test_csv_and_victoriametrics_paths_agree(tmp_path: Path, only: str) -> None:
    require_binary(LocalVictoriaMetrics)
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "nab" / "run.py"), "--only", only,
         "--path", "both", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["max_abs_score_difference"] < 1e-6
    csv, tsdb = summary["paths"]["csv"], summary["paths"]["tsdb"]
    for profile, figures in csv["profiles"].items():
        other = tsdb["profiles"][profile]
        # the threshold is a score value: equal up to the float noise VictoriaMetrics adds
        assert figures["threshold"] == pytest.approx(other["threshold"], rel=1e-9)
        assert {**figures, "threshold": 0} == {**other, "threshold": 0}
    results = list((tmp_path / "csv").rglob("*.csv"))
    assert len(results) == 1
    table = pd.read_csv(results[0])
    assert list(table.columns) == ["timestamp", "value", "anomaly_score", "label"]
    assert table["anomaly_score"].between(0, 1).all()
    assert (table["anomaly_score"] > 0).sum() > len(table) // 2  # scored, not left at 0
