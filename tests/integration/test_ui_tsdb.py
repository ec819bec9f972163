"""The UI's TSDB reads (openanomaly/ui/tsdb.py) against real Prometheus and VictoriaMetrics:
every point the daemon wrote shows once and counts once, whatever the TSDB's lookback carries
forward (the newest point, a point before a gap), and only the pipeline's own output series
count (`pipeline` and `output.labels`).

The output series are written as the daemon writes them (RemoteWriteWriter, the writer's
labels), with known scores at known minutes; what the reads give back is compared with what was
written, point by point.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from openanomaly.adapters.metrics_reader.prometheus import PrometheusReader
from openanomaly.adapters.metrics_writer.remote_write import RemoteWriteWriter
from openanomaly.config.settings import RemoteWriteSettings, TSDBSettings
from openanomaly.domain.labels import output_labels, output_series_labels
from openanomaly.local_tsdb import LocalTSDB
from openanomaly.ports import OutputSeries
from openanomaly.ui import tsdb as ui_tsdb
from openanomaly.ui.errors import TsdbUnavailable
from openanomaly.ui.matchers import LabelFilter, parse_label_filter
from openanomaly.ui.tsdb import PipelineFacts, TsdbReads, ui_reader_settings, view_anomalies
from tests.daemon_harness import minute_floor, utc_now

pytestmark = pytest.mark.integration

STEP = timedelta(minutes=1)
MODEL = "AutoETS"
PIPELINE = "ui-reads"
SHOWN = timedelta(hours=3)  # the range the Pipeline page reads here
NEWEST = timedelta(minutes=3)  # the newest written point is this old: the lookback carries it
GAP = (timedelta(minutes=80), timedelta(minutes=71))  # no points in (80, 71) minutes ago


@dataclass
class Written:
    """What the test wrote: per host, the output points (minute -> score)."""

    metric: str
    facts: PipelineFacts
    now: datetime
    scores: dict[str, dict[datetime, float]]

    def anomalies(self, since: datetime) -> set[tuple[str, datetime]]:
        return {
            (host, at)
            for host, points in self.scores.items()
            for at, score in points.items()
            if score > 1 and since <= at <= self.now
        }


def _ms(times: list[datetime]) -> np.ndarray:
    return np.array([int(t.timestamp() * 1000) for t in times], dtype=np.int64)


def write_outputs(tsdb: LocalTSDB, workdir: Path) -> Written:
    """Per host (a, b) an input series for the last 3 hours, and the pipeline's four output
    series: a point every minute of those 3 hours but the gap and the last 3 minutes, and a few
    points a day ago (around the edge of the 24-hour window). Scores are 0.5 but:
    host b over 1 at the newest point, at the last point before the gap, exactly 24 h ago
    (outside the window) and 24 h - 1 m ago (inside); host a over 1 two hours ago and exactly
    1 (not over 1) an hour ago. Beside them, output series that are not the pipeline's: its
    name with other `output.labels`, and another pipeline; both score over 1."""
    kind = tsdb.binary_name.replace("-", "_")
    metric = f"oa_ui_reads_input_{kind}"
    facts = PipelineFacts(
        name=PIPELINE,
        query=metric,
        step=STEP,
        prefix=f"oa_ui_reads_{kind}",
        output_labels={"team": "x"},
        model_name=MODEL,
    )
    now = minute_floor(utc_now())
    recent = [
        now - SHOWN + STEP * i
        for i in range(int((SHOWN - NEWEST) / STEP) + 1)
        if not (now - GAP[0] < now - SHOWN + STEP * i < now - GAP[1])
    ]
    day_ago = [
        now - timedelta(hours=25),
        now - timedelta(hours=24),
        now - timedelta(hours=24) + STEP,
    ]
    times = day_ago + recent
    scores: dict[str, dict[datetime, float]] = {h: dict.fromkeys(times, 0.5) for h in ("a", "b")}
    for at, score in [
        (now - NEWEST, 4.0),
        (now - GAP[0], 2.5),
        (now - timedelta(hours=24), 3.0),
        (now - timedelta(hours=24) + STEP, 3.5),
        (now - timedelta(hours=25), 5.0),
    ]:
        scores["b"][at] = score
    scores["a"][now - timedelta(hours=2)] = 1.5
    scores["a"][now - timedelta(hours=1)] = 1.0

    series: list[OutputSeries] = []
    inputs = [now - SHOWN + STEP * i for i in range(int(SHOWN / STEP) + 1)]
    for k, (host, points) in enumerate(scores.items()):
        input_labels = {"__name__": metric, "host": host}
        values = 40.0 + 10 * k + np.arange(len(inputs), dtype=np.float64) % 7
        series.append(OutputSeries(output_labels(metric, {"host": host}, {}), _ms(inputs), values))
        stamps = sorted(points)
        score = np.array([points[t] for t in stamps])
        yhat = 40.0 + 10 * k + np.arange(len(stamps), dtype=np.float64) % 5
        by_kind = output_series_labels(facts.prefix, input_labels, facts.own_labels())
        for name, values in (
            ("score", score),
            ("yhat", yhat),
            ("yhat_lower", yhat - 2),
            ("yhat_upper", yhat + 2),
        ):
            series.append(OutputSeries(by_kind[name], _ms(stamps), values))
    # Not the pipeline's: other output labels, another pipeline (both anomalous, recent).
    input_b = {"__name__": metric, "host": "b"}
    for own in (
        {"pipeline": PIPELINE, "model": MODEL, "team": "y"},
        {"pipeline": "another", "model": MODEL, "team": "x"},
    ):
        labels = output_labels(f"{facts.prefix}_score", input_b, own)
        series.append(OutputSeries(labels, _ms([now - timedelta(minutes=10)]), np.array([9.0])))

    writer = RemoteWriteWriter(TSDBSettings(url=tsdb.url), RemoteWriteSettings(), workdir / "ob")
    try:
        result = writer.write(series)
    finally:
        writer.close(5)
    assert result.accepted == sum(len(s.values) for s in series), result
    tsdb.flush()
    return Written(metric, facts, now, scores)


@pytest.fixture
def reads(tsdb: LocalTSDB) -> Iterator[TsdbReads]:
    reader = PrometheusReader(ui_reader_settings(TSDBSettings(url=tsdb.url)))
    try:
        yield TsdbReads(reader, tsdb.url)
    finally:
        reader.close()


def test_each_anomaly_of_the_last_24_hours_counts_once(
    tsdb: LocalTSDB, reads: TsdbReads, tmp_path: Path
) -> None:
    written = write_outputs(tsdb, tmp_path)
    # (now - 24h, now]: the point exactly 24 h old is out, the one a minute younger in
    expected = written.anomalies(written.now - timedelta(hours=24) + timedelta(milliseconds=1))
    assert len(expected) == 4, expected  # b: newest, before the gap, 24h - 1m ago; a: 2h ago
    # The UI asks at any moment of the minute: the count is the same.
    for offset in (timedelta(0), timedelta(seconds=59)):
        assert reads.anomalies_24h(written.facts, written.now + offset) == len(expected)

    # The data does tell the queries apart: counting what the lookback carries, and the
    # series of other output labels and pipelines, gives more.
    naive = (
        f'sum(count_over_time(({written.facts.prefix}_score{{pipeline="{PIPELINE}"}} > 1)[24h:1m]))'
    )
    answer = tsdb.query(naive, at=written.now.timestamp())
    assert float(answer["result"][0]["value"][1]) > len(expected), answer


def test_the_charts_show_each_written_point_once(
    tsdb: LocalTSDB, reads: TsdbReads, tmp_path: Path
) -> None:
    written = write_outputs(tsdb, tmp_path)
    start = written.now - SHOWN
    views = reads.pipeline_series(written.facts, start, written.now, LabelFilter())
    assert sorted(v.labels["host"] for v in views) == ["a", "b"]
    assert views[0].labels == {"__name__": written.metric, "host": "b"}  # the worst first
    for view in views:
        host = view.labels["host"]
        points = view.points.set_index("ds")
        in_range = {t: s for t, s in written.scores[host].items() if t >= start}
        # Every minute of the range has its actual value; outputs only where they were
        # written: not in the gap, not in the minutes after the newest point.
        assert len(points) == int(SHOWN / STEP) + 1
        assert points["y"].notna().all()
        for column in ("score", "yhat", "yhat_lower", "yhat_upper"):
            shown = points.index[points[column].notna()]
            assert [t.to_pydatetime() for t in shown] == sorted(in_range), (host, column)
        scores = points["score"].dropna()
        assert {t.to_pydatetime(): float(s) for t, s in scores.items()} == in_range
        assert (points["yhat_upper"] - points["yhat_lower"]).dropna().eq(4).all()

    expected = written.anomalies(start)
    listed = view_anomalies(views)
    found = {(a["labels"]["host"], pd.Timestamp(a["ds"]).to_pydatetime()) for a in listed}
    assert len(listed) == len(found) == len(expected) == 3
    assert found == expected

    # The label filter goes into the output queries too.
    only_b = reads.pipeline_series(
        written.facts, start, written.now, parse_label_filter('host="b"')
    )
    assert [v.labels["host"] for v in only_b] == ["b"]
    assert {
        (a["labels"]["host"], pd.Timestamp(a["ds"]).to_pydatetime()) for a in view_anomalies(only_b)
    } == {x for x in expected if x[0] == "b"}


# --- an unresponsive TSDB -------------------------------------------------------------------


def test_the_ui_caps_the_tsdb_timeout() -> None:
    assert ui_reader_settings(TSDBSettings()).timeout == timedelta(seconds=10)
    short = TSDBSettings(timeout=timedelta(seconds=3))
    assert ui_reader_settings(short).timeout == timedelta(seconds=3)
    assert ui_reader_settings(short).retry.max_attempts == 2


@contextmanager
def silent_server() -> Iterator[str]:
    """A port that takes connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_silent_tsdb_is_named_after_the_capped_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cap reaches the reader: with it at 0.5 s, a TSDB that never answers (and settings
    that would wait 30 s twice) is "unreachable" after two attempts of 0.5 s."""
    monkeypatch.setattr(ui_tsdb, "UI_TIMEOUT", timedelta(milliseconds=500))
    with silent_server() as url:
        reader = PrometheusReader(ui_reader_settings(TSDBSettings(url=url)))
        reads = TsdbReads(reader, url)
        facts = PipelineFacts(PIPELINE, "up", STEP)
        began = time.monotonic()
        try:
            with pytest.raises(TsdbUnavailable) as caught:
                reads.anomalies_24h(facts, utc_now())
        finally:
            reader.close()
        took = time.monotonic() - began
    assert caught.value.url == url
    assert "2 attempt(s)" in caught.value.reason
    assert 1.0 <= took < 5, took
