"""Reader and writer against real VictoriaMetrics and real Prometheus."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from openanomaly.adapters.metrics_reader.prometheus import PrometheusReader, TooManySeries
from openanomaly.adapters.metrics_writer.remote_write import RemoteWriteWriter
from openanomaly.config.settings import RemoteWriteSettings, TSDBSettings
from openanomaly.domain.labels import output_labels
from openanomaly.domain.series import SeriesFrame, series_id
from openanomaly.errors import TSDBQueryError
from openanomaly.local_tsdb import LocalTSDB, http_post
from openanomaly.ports import OutputSeries

pytestmark = pytest.mark.integration
STEP_MS = 60_000


def minute_aligned(offset: timedelta) -> int:
    """A timestamp (ms) on a minute boundary, `offset` before now."""
    now_ms = int((datetime.now(UTC) - offset).timestamp() * 1000)
    return now_ms // STEP_MS * STEP_MS


def utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class IO:
    def __init__(self, tsdb: LocalTSDB, tmp_path: Path, **tsdb_settings: object) -> None:
        self.tsdb = tsdb
        settings = TSDBSettings.model_validate({"url": tsdb.url, **tsdb_settings})
        self.writer = RemoteWriteWriter(settings, RemoteWriteSettings(), tmp_path / "outbox")
        self.reader = PrometheusReader(settings)

    def close(self) -> None:
        self.writer.close(timeout=5)
        self.reader.close()


@pytest.fixture
def io(tsdb: LocalTSDB, tmp_path: Path) -> Iterator[IO]:
    client = IO(tsdb, tmp_path)
    yield client
    client.close()


def as_dict(frame: SeriesFrame) -> dict[str, tuple[list[int], list[float]]]:
    out = {}
    for key, group in frame.data.groupby("unique_id", sort=True):
        ms = (group["ds"].astype("int64") // 1_000_000).tolist()
        out[str(key)] = (ms, group["y"].tolist())
    return out


def test_round_trip_is_exact(io: IO, tsdb: LocalTSDB) -> None:
    start = minute_aligned(timedelta(days=2))
    n_series, n_points = 150, 240
    ts = start + np.arange(n_points, dtype=np.int64) * STEP_MS
    rng = np.random.default_rng(7)
    written = {}
    series = []
    for i in range(n_series):
        # VictoriaMetrics keeps 12 significant digits: write values that survive that.
        values = np.round(rng.normal(100, 15, n_points), 6)
        values[11], values[12] = np.inf, -np.inf  # NaN: see test_nan_values
        labels = output_labels(
            "rt_exact", {"instance": f"host-{i}", "job": "node"}, {"pipeline": "rt"}
        )
        series.append(OutputSeries(labels, ts, values))
        written[series_id(dict(labels))] = values
    result = io.writer.write(series)
    assert (result.accepted, result.queued, result.dropped) == (n_series * n_points, 0, 0)
    tsdb.flush()

    frame = io.reader.query_range(
        'rt_exact{pipeline="rt"}', utc(ts[0]), utc(ts[-1]), timedelta(minutes=1)
    )
    got = as_dict(frame)
    assert set(got) == set(written)
    assert frame.labels[next(iter(written))]["job"] == "node"
    for key, values in written.items():
        got_ts, got_values = got[key]
        assert got_ts == ts.tolist()
        assert got_values == values.tolist()


def test_nan_values(io: IO, tsdb: LocalTSDB) -> None:
    """Prometheus stores NaN and returns it; VictoriaMetrics drops NaN at ingestion, so the
    point is a gap. (A plain selector would let the TSDB carry the previous point into a gap;
    a lookback shorter than the step does not.)"""
    start = minute_aligned(timedelta(hours=4))
    ts = start + np.arange(5, dtype=np.int64) * STEP_MS
    values = np.array([1.0, np.nan, 3.0, np.nan, 5.0])
    io.writer.write([OutputSeries(output_labels("rt_nan", {}, {"pipeline": "rt"}), ts, values)])
    tsdb.flush()
    frame = io.reader.query_range(
        "last_over_time(rt_nan[59s])", utc(start), utc(int(ts[-1])), timedelta(minutes=1)
    )
    ((got_ts, got_values),) = as_dict(frame).values()
    if tsdb.binary_name == "prometheus":
        assert got_ts == ts.tolist()
        np.testing.assert_array_equal(got_values, values)
    else:
        assert got_ts == ts[[0, 2, 4]].tolist()
        assert got_values == [1.0, 3.0, 5.0]


def test_long_range_is_split_and_stitched(io: IO, tsdb: LocalTSDB) -> None:
    n_points = 12_500  # over Prometheus' 11,000 points per request
    start = minute_aligned(timedelta(days=10))
    ts = start + np.arange(n_points, dtype=np.int64) * STEP_MS
    values = np.arange(n_points, dtype=np.float64)
    labels = [output_labels("rt_long", {"k": str(k)}, {"pipeline": "rt"}) for k in range(2)]
    assert (
        io.writer.write(
            [OutputSeries(lab, ts, values + k) for k, lab in enumerate(labels)]
        ).accepted
        == 2 * n_points
    )
    tsdb.flush()

    form = {"query": "rt_long", "start": str(ts[0] / 1000), "end": str(ts[-1] / 1000), "step": "60"}
    body = "&".join(f"{k}={v}" for k, v in form.items()).encode()
    status, answer = http_post(
        tsdb.url + "/api/v1/query_range", body, "application/x-www-form-urlencoded"
    )
    if tsdb.binary_name == "prometheus":  # one request cannot do it
        assert status == 400
        assert b"exceeded maximum resolution of 11,000 points" in answer

    before = io.reader.bytes_read
    frame = io.reader.query_range("rt_long", utc(ts[0]), utc(ts[-1]), timedelta(minutes=1))
    assert io.reader.bytes_read > before
    got = as_dict(frame)
    assert len(got) == 2
    for k, (got_ts, got_values) in enumerate(sorted(got.values())):
        assert got_ts == ts.tolist()  # every point once: no duplicate, no gap at chunk edges
        assert got_values == (values + k).tolist()


def test_bad_promql_returns_the_servers_message(io: IO, tsdb: LocalTSDB) -> None:
    end = minute_aligned(timedelta(hours=1))
    start = end - 10 * STEP_MS  # one request (VictoriaMetrics quotes the range it was asked)
    body = f"query=sum(rate(x[5m]&start={start / 1000:.3f}&end={end / 1000:.3f}&step=60.000"
    status, direct = http_post(
        tsdb.url + "/api/v1/query_range", body.encode(), "application/x-www-form-urlencoded"
    )
    assert status in (400, 422)
    with pytest.raises(TSDBQueryError) as caught:
        io.reader.query_range("sum(rate(x[5m]", utc(start), utc(end), timedelta(minutes=1))
    assert json.loads(direct)["error"] in str(caught.value)  # verbatim


def test_more_series_than_the_limit_is_refused(io: IO, tsdb: LocalTSDB) -> None:
    ts = np.array([minute_aligned(timedelta(hours=3))], dtype=np.int64)
    io.writer.write(
        [
            OutputSeries(
                output_labels("rt_many", {"i": str(i)}, {"pipeline": "rt"}), ts, np.ones(1)
            )
            for i in range(5)
        ]
    )
    tsdb.flush()
    when = utc(int(ts[0]))
    frame = io.reader.query_range("rt_many", when, when, timedelta(minutes=1), max_series=5)
    assert frame.series_count == 5
    with pytest.raises(TooManySeries, match=r"returned 5 series, more than limits\.max_series=4"):
        io.reader.query_range("rt_many", when, when, timedelta(minutes=1), max_series=4)


def test_query_delay_hides_nothing_the_reader_asks_for(io: IO, tsdb: LocalTSDB) -> None:
    """Gaps stay gaps: a missing minute is absent from the frame, not zero or interpolated."""
    start = minute_aligned(timedelta(hours=5))
    ts = start + np.array([0, 1, 3, 4], dtype=np.int64) * STEP_MS
    labels = output_labels("rt_gap", {}, {"pipeline": "rt"})
    io.writer.write([OutputSeries(labels, ts, np.array([1.0, 2.0, 4.0, 5.0]))])
    tsdb.flush()
    # A lookback shorter than the step keeps the TSDB from carrying a point into the gap.
    frame = io.reader.query_range(
        "last_over_time(rt_gap[59s])", utc(start), utc(int(ts[-1])), timedelta(minutes=1)
    )
    ((got_ts, got_values),) = as_dict(frame).values()
    assert got_ts == ts.tolist()
    assert got_values == [1.0, 2.0, 4.0, 5.0]


def test_counts_after_outage_are_exact(tsdb_factory: object, tmp_path: Path) -> None:
    """The TSDB is down during a write and comes back: every sample arrives exactly once."""
    for kind in ("victoria_metrics", "prometheus"):
        db: LocalTSDB = tsdb_factory(kind)  # type: ignore[operator]
        settings = TSDBSettings.model_validate(
            {
                "url": db.url,
                "timeout": "2s",
                "retry": {"max_attempts": 2, "initial_backoff": "10ms"},
            }
        )
        writer = RemoteWriteWriter(
            settings, RemoteWriteSettings(max_samples_per_request=500), tmp_path / kind
        )
        start = minute_aligned(timedelta(hours=6))
        ts = start + np.arange(120, dtype=np.int64) * STEP_MS
        batch = [
            OutputSeries(
                output_labels("rt_outage", {"i": str(i)}, {"pipeline": "rt"}),
                ts,
                np.full(120, float(i)),
            )
            for i in range(20)
        ]
        db.stop()
        result = writer.write(batch)
        assert (result.accepted, result.queued) == (0, 2400)
        assert len(writer.outbox) >= 5
        db.start()
        assert writer.flush_outbox()
        assert len(writer.outbox) == 0
        db.flush()
        at = (int(ts[-1]) + 1000) / 1000
        data = db.query("sum(count_over_time(rt_outage[3h]))", at=at)
        assert float(data["result"][0]["value"][1]) == 2400.0
        writer.close(timeout=1)


def test_outbox_survives_sigkill(tsdb_factory: object, tmp_path: Path) -> None:
    """A process killed with SIGKILL while batches sit in its outbox: the next process delivers
    them, each sample exactly once."""
    db: LocalTSDB = tsdb_factory("prometheus")  # type: ignore[operator]
    db.stop()
    start = minute_aligned(timedelta(hours=8))
    outbox = tmp_path / "outbox"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.outbox_writer", db.url, str(outbox), str(start)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("queued 3000 batches "), line
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    db.start()
    settings = TSDBSettings.model_validate({"url": db.url})
    writer = RemoteWriteWriter(settings, RemoteWriteSettings(), outbox)
    assert len(writer.outbox) == int(line.split()[-1]) >= 10
    assert writer.flush_outbox()
    writer.close(timeout=1)
    db.flush()
    at = (start + 100 * STEP_MS) / 1000
    data = db.query("sum(count_over_time(rt_killed[3h]))", at=at)
    assert float(data["result"][0]["value"][1]) == 3000.0
