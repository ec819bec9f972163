"""`openanomaly train|infer|models|runs` against a real VictoriaMetrics and SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from openanomaly.adapters.metrics_writer.remote_write import RemoteWriteWriter
from openanomaly.config.settings import RemoteWriteSettings, TSDBSettings
from openanomaly.domain.labels import output_labels
from openanomaly.local_tsdb import LocalTSDB
from openanomaly.ports import OutputSeries

pytestmark = pytest.mark.integration


def oa(tmp_path: Path, tsdb: LocalTSDB, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OA_")}
    common = ["--tsdb-url", tsdb.url, "--data-dir", "data", "--pipelines-dir", "p"]
    return subprocess.run(
        [sys.executable, "-m", "openanomaly", *args, *common, "--set", "tsdb.query_delay=0s"],
        cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_one_shot_train_infer_then_models_and_runs(
    victoria_metrics: LocalTSDB, tmp_path: Path
) -> None:
    metric = "oa_cli_jobs"
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    n = 2 * 1440
    ts = np.array([int((end - timedelta(minutes=n - 1 - i)).timestamp() * 1000) for i in range(n)])
    y = 10 + np.sin(np.arange(n) * 2 * np.pi / 12) + np.random.default_rng(0).normal(0, 0.2, n)
    writer = RemoteWriteWriter(
        TSDBSettings(url=victoria_metrics.url), RemoteWriteSettings(), tmp_path / "ob"
    )
    writer.write([OutputSeries(output_labels(metric, {"job": "x"}, {}), ts, y)])
    writer.close(5)
    victoria_metrics.flush()
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "jobs.yaml").write_text(
        f"name: jobs\nquery: {metric}\nstep: 1m\ntrain: {{window: 1d}}\n"
        "infer: {context: 2h, max_catchup: 30m}\nmodel: {params: {season_length: 12}}\n"
    )

    missing = oa(tmp_path, victoria_metrics, "infer", "jobs")
    assert missing.returncode == 1  # no model yet: the run fails and says why
    assert "no trained model yet" in missing.stdout

    trained = oa(tmp_path, victoria_metrics, "train", "jobs", "--json")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)[0]["status"] == "ok"

    scored = oa(tmp_path, victoria_metrics, "infer", "jobs", "--json")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)[0]["samples_written"] == 30 * 4

    models = json.loads(oa(tmp_path, victoria_metrics, "models", "--json").stdout)
    assert [(m["pipeline"], m["version"], m["status"]) for m in models] == [("jobs", 1, "active")]
    runs = json.loads(oa(tmp_path, victoria_metrics, "runs", "jobs", "--json").stdout)
    assert [(r["kind"], r["status"]) for r in runs] == [
        ("infer", "ok"),
        ("train", "ok"),
        ("infer", "failed"),
    ]
    failed = json.loads(oa(tmp_path, victoria_metrics, "runs", "--failed", "--json").stdout)
    assert [r["kind"] for r in failed] == ["infer"]
    table = oa(tmp_path, victoria_metrics, "runs")
    assert table.stdout.splitlines()[0].split()[:3] == ["PIPELINE", "KIND", "STATUS"]

    unknown = oa(tmp_path, victoria_metrics, "train", "nope")
    assert unknown.returncode == 1
    assert "no valid pipeline named 'nope' (valid: jobs)" in unknown.stdout
