"""Train and infer use cases end to end against real TSDBs, a real SQLite registry and real
artifacts on disk, with the clock set by the test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from openanomaly.bootstrap import App, build
from openanomaly.config.pipeline import Pipeline
from openanomaly.config.settings import Settings
from openanomaly.domain.labels import output_labels
from openanomaly.local_tsdb import LocalTSDB
from openanomaly.ports import OutputSeries
from openanomaly.usecases.common import ModelCache
from openanomaly.usecases.infer import infer
from openanomaly.usecases.train import train

pytestmark = pytest.mark.integration

STEP = timedelta(minutes=5)
HOSTS = ("a", "b", "c")


def seed(app: App, metric: str, end: datetime, spikes: list[datetime]) -> None:
    """3 days of an hourly wave plus noise per host, +12 sigma at `spikes` on host b."""
    rng = np.random.default_rng(7)
    n = int(timedelta(days=3) / STEP)
    stamps = [end - STEP * (n - 1 - i) for i in range(n)]
    ts_ms = np.array([int(t.timestamp() * 1000) for t in stamps], dtype=np.int64)
    series = []
    for k, host in enumerate(HOSTS):
        values = 50 + 10 * k + 5 * np.sin(2 * np.pi * np.arange(n) / 12) + rng.normal(0, 1, n)
        if host == "b":
            for spike in spikes:
                values[stamps.index(spike)] += 12.0
        labels = output_labels(metric, {"host": host}, {})
        series.append(OutputSeries(labels, ts_ms, values))
    result = app.writer.write(series)
    assert result.accepted == 3 * n


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def app_and_clock(tsdb: LocalTSDB, tmp_path: Path) -> Iterator[tuple[App, Clock]]:
    settings = Settings.model_validate(
        {
            "tsdb": {"url": tsdb.url, "query_delay": "0s"},
            "storage": {"data_dir": str(tmp_path / "data")},
            "pipelines_dir": str(tmp_path),
        }
    )
    clock = Clock(datetime(2026, 1, 1, tzinfo=UTC))
    app = build(settings, clock=clock)
    yield app, clock
    app.close(timeout=5)


def pipeline(metric: str) -> Pipeline:
    return Pipeline.model_validate(
        {
            "name": metric.replace("_", "-"),
            "query": metric,
            "step": "5m",
            "train": {"window": "2d"},
            "infer": {"every": "5m", "context": "6h", "max_catchup": "3h"},
            "model": {"name": "AutoETS", "params": {"season_length": 12}},
            # three spikes within the hour, each to score over 1: no hold-off here
            "scoring": {"holdoff": "0s"},
        }
    )


def score_samples(app: App, name: str, start: datetime, end: datetime) -> dict[str, list[float]]:
    frame = app.reader.query_range(f'anomaly_score{{pipeline="{name}"}}', start, end, STEP)
    out: dict[str, list[float]] = {}
    for uid, labels in frame.labels.items():
        rows = frame.data[frame.data["unique_id"] == uid]
        out[labels["host"]] = list(zip(rows["ds"], rows["y"], strict=True))  # type: ignore[arg-type]
    return out


def test_train_then_infer_scores_injected_spikes(
    app_and_clock: tuple[App, Clock], tsdb: LocalTSDB
) -> None:
    app, clock = app_and_clock
    metric = f"oa_usecase_{tsdb.binary_name.replace('-', '_')}"
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    end -= timedelta(minutes=end.minute % 5)
    spikes = [end - timedelta(minutes=m) for m in (100, 55, 20)]
    seed(app, metric, end, spikes)
    tsdb.flush()
    p = pipeline(metric)
    ports = app.ports()

    clock.now = end - timedelta(hours=3)  # train on history before the window to score
    run = train(p, ports)
    assert run.status == "ok", run.error
    assert run.series_scored == 3
    record = app.registry.active_model(p.name)
    assert record is not None
    assert record.version == 1
    assert record.train_end == end - timedelta(hours=3)

    clock.now = end
    models = ModelCache()
    outcome = infer(p, ports, models)
    assert outcome.run.status == "ok", outcome.run.error
    assert outcome.run.series_scored == 3
    # 3 hours at 5m (36 points) x 3 series x 4 outputs
    assert outcome.run.samples_written == 36 * 3 * 4
    assert app.registry.watermark(p.name) == end
    tsdb.flush()

    got = score_samples(app, p.name, end - timedelta(hours=3), end)
    assert set(got) == set(HOSTS)
    flagged, normal = [], []
    for host, points in got.items():
        for ds, value in points:
            is_spike = host == "b" and ds.to_pydatetime() in spikes
            (flagged if is_spike else normal).append(value)
    assert len(flagged) == len(spikes)
    assert min(flagged) > 1
    assert np.mean(np.array(normal) <= 1) >= 0.97

    # Nothing new: no samples, watermark unchanged.
    again = infer(p, ports, models)
    assert again.run.status == "ok"
    assert again.run.samples_written == 0

    # Re-scoring the same window writes the same values (deterministic, deduplicated).
    app.registry.set_watermark(p.name, end - timedelta(hours=1))
    rerun = infer(p, ports, models)
    assert rerun.run.samples_written == 12 * 3 * 4
    tsdb.flush()
    assert score_samples(app, p.name, end - timedelta(hours=3), end) == got


def test_a_corrupt_artifact_asks_for_a_retrain(
    app_and_clock: tuple[App, Clock], tsdb: LocalTSDB
) -> None:
    app, clock = app_and_clock
    metric = f"oa_corrupt_{tsdb.binary_name.replace('-', '_')}"
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=10)
    end -= timedelta(minutes=end.minute % 5)
    seed(app, metric, end, [])
    tsdb.flush()
    p = pipeline(metric)
    clock.now = end - timedelta(hours=1)
    assert train(p, app.ports()).status == "ok"
    record = app.registry.active_model(p.name)
    assert record is not None
    path = Path(record.artifact.uri.removeprefix("file://"))
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    clock.now = end
    outcome = infer(p, app.ports(), ModelCache())
    assert outcome.needs_retrain
    assert outcome.run.status == "failed"
    assert "sha256" in (outcome.run.error or "") or "corrupt" in (outcome.run.error or "")
    assert app.registry.watermark(p.name) is None
    failed = app.registry.runs(p.name, failed_only=True)
    assert [r.kind for r in failed] == ["infer"]


def test_a_window_without_data_scores_nothing_and_refused_writes_fail_the_run(
    app_and_clock: tuple[App, Clock], tsdb: LocalTSDB, tmp_path: Path
) -> None:
    app, clock = app_and_clock
    metric = f"oa_empty_{tsdb.binary_name.replace('-', '_')}"
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(hours=2)
    end -= timedelta(minutes=end.minute % 5)
    seed(app, metric, end, [])
    tsdb.flush()
    p = pipeline(metric)
    clock.now = end
    assert train(p, app.ports()).status == "ok"
    app.registry.set_watermark(p.name, end)
    clock.now = end + timedelta(minutes=90)  # the source went quiet after `end`
    quiet = infer(p, app.ports(), ModelCache())
    assert quiet.run.status == "ok", quiet.run.error
    # At most the one step the TSDB's lookback still fills after the last sample.
    assert quiet.run.samples_written <= 3 * 4
    assert app.registry.watermark(p.name) == end + timedelta(minutes=90)

    # A write the TSDB refuses for good (here: a wrong write URL) fails the run and keeps
    # the watermark, so the points are scored again once the setting is fixed.
    settings = app.settings.model_copy(
        update={"tsdb": app.settings.tsdb.model_copy(update={"write_url": f"{tsdb.url}/nowhere"})}
    )
    refused = build(settings, clock=clock)
    try:
        app.registry.set_watermark(p.name, end - timedelta(minutes=30))
        clock.now = end
        outcome = infer(p, refused.ports(), ModelCache())
        assert outcome.run.status == "failed"
        assert "refused" in (outcome.run.error or "")
        assert refused.registry.watermark(p.name) == end - timedelta(minutes=30)
    finally:
        refused.close(timeout=5)
