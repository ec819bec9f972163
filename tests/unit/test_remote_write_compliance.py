"""Remote write 1.0 sender compliance, after the case list of prometheus/compliance
(remotewrite/sender, RW 1.0 era), against a real HTTP receiver that decodes what we send."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from openanomaly import __version__
from openanomaly.adapters.metrics_writer.remote_write import STALE_NAN, RemoteWriteWriter
from openanomaly.config.settings import RemoteWriteSettings, TSDBSettings
from openanomaly.domain.labels import output_labels
from openanomaly.ports import OutputSeries
from tests.receiver import Receiver, remote_write_receiver

T0 = 1_700_000_000_000
STALE_BITS = 0x7FF0000000000002


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with remote_write_receiver() as r:
        yield r


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_writer(
    receiver: Receiver, tmp_path: Path, sleeps: Sleeps | None = None, **rw: object
) -> RemoteWriteWriter:
    tsdb = TSDBSettings(url=receiver.url, headers={"X-Scope-OrgID": "team-a"}, timeout="5s")  # type: ignore[arg-type]
    settings = RemoteWriteSettings.model_validate(
        {"retry": {"max_attempts": 3, "initial_backoff": "10ms", "max_backoff": "1s"}, **rw}
    )
    return RemoteWriteWriter(
        tsdb, settings, tmp_path / "outbox", sleep=sleeps if sleeps is not None else Sleeps()
    )


def series(name: str, n: int = 3, **labels: str) -> OutputSeries:
    ts = T0 + np.arange(n, dtype=np.int64) * 15_000
    return OutputSeries(
        output_labels(name, labels, {"pipeline": "p"}), ts, np.arange(n, dtype=np.float64)
    )


def test_headers(receiver: Receiver, tmp_path: Path) -> None:
    make_writer(receiver, tmp_path).write([series("m")])
    headers = {k.lower(): v for k, v in receiver.requests[0].headers.items()}
    assert headers["content-encoding"] == "snappy"
    assert headers["content-type"] == "application/x-protobuf"
    assert headers["user-agent"] == f"openanomaly/{__version__}"
    assert headers["x-prometheus-remote-write-version"] == "0.1.0"
    assert headers["x-scope-orgid"] == "team-a"  # user headers are sent too


def test_user_headers_cannot_override_protocol_headers() -> None:
    with pytest.raises(ValueError, match="set by OpenAnomaly"):
        TSDBSettings(headers={"Content-Encoding": "gzip"})


def test_sorted_labels_and_name_label(receiver: Receiver, tmp_path: Path) -> None:
    make_writer(receiver, tmp_path).write([series("m", zeta="z", alpha="a", job="j")])
    labels = receiver.requests[0].series[0][0]
    names = [name for name, _ in labels]
    assert names == sorted(names)
    assert dict(labels)["__name__"] == "m"


def test_repeated_and_empty_labels_are_never_sent(receiver: Receiver, tmp_path: Path) -> None:
    built = output_labels(
        "m", {"pipeline": "theirs", "empty": "", "__name__": "up"}, {"pipeline": "p"}
    )
    assert dict(built) == {
        "__name__": "m",
        "exported_pipeline": "theirs",
        "metric": "up",
        "pipeline": "p",
    }
    writer = make_writer(receiver, tmp_path)
    writer.write([OutputSeries(built, np.array([T0]), np.array([1.0]))])
    sent = receiver.requests[0].series[0][0]
    assert len({name for name, _ in sent}) == len(sent)
    assert all(value for _, value in sent)
    for bad, reason in (
        ((("__name__", "m"), ("a", "1"), ("a", "2")), "not sorted or repeated"),
        ((("__name__", "m"), ("b", "1"), ("a", "2")), "not sorted or repeated"),
        ((("__name__", "m"), ("a", "")), "empty value"),
        ((("1a", "x"), ("__name__", "m")), "invalid label name"),
        ((("__name__", "9m"),), "invalid metric name"),
        ((("a", "x"),), "no metric name"),
    ):
        with pytest.raises(ValueError, match=reason):
            writer.write([OutputSeries(bad, np.array([T0]), np.array([1.0]))])
    assert len(receiver.requests) == 1


def test_samples_in_timestamp_order(receiver: Receiver, tmp_path: Path) -> None:
    ts = np.array([T0 + 30_000, T0, T0 + 15_000], dtype=np.int64)
    labels = output_labels("m", {}, {"pipeline": "p"})
    make_writer(receiver, tmp_path).write([OutputSeries(labels, ts, np.array([3.0, 1.0, 2.0]))])
    samples = receiver.requests[0].series[0][1]
    assert [(t, v) for t, v, _ in samples] == [(T0, 1.0), (T0 + 15_000, 2.0), (T0 + 30_000, 3.0)]


def test_batches_are_bounded_and_per_series_order_survives_concurrency(
    receiver: Receiver, tmp_path: Path
) -> None:
    writer = make_writer(receiver, tmp_path, max_samples_per_request=100, concurrency=4)
    data = [series("m", n=250, i=str(i)) for i in range(40)]
    result = writer.write(data)
    assert result.accepted == 40 * 250
    assert all(sum(len(s) for _, s in r.series) <= 100 for r in receiver.requests)
    assert len(receiver.requests) >= 100
    got = receiver.samples()
    assert len(got) == 40
    for samples in got.values():
        assert [t for t, _, _ in samples] == [T0 + k * 15_000 for k in range(250)]


def test_retries_500_and_resends(receiver: Receiver, tmp_path: Path) -> None:
    receiver.script = [(500, {}, b"boom"), (503, {}, b"busy")]
    sleeps = Sleeps()
    result = make_writer(receiver, tmp_path, sleeps).write([series("m")])
    assert result.accepted == 3
    assert receiver.attempts == 3
    assert len(sleeps) == 2
    assert len(receiver.requests) == 1


def test_400_is_not_retried_and_is_counted(
    receiver: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = [(400, {}, b"out of order sample")]
    writer = make_writer(receiver, tmp_path)
    result = writer.write([series("m")])
    assert (result.accepted, result.dropped) == (0, 3)
    assert receiver.attempts == 1
    assert writer.stats.samples_dropped == 3
    assert "HTTP 400: out of order sample" in caplog.text  # the server's words, verbatim
    assert len(writer.outbox) == 0


def test_429_honours_retry_after(receiver: Receiver, tmp_path: Path) -> None:
    receiver.script = [(429, {"Retry-After": "1"}, b"slow down")]
    sleeps = Sleeps()
    result = make_writer(receiver, tmp_path, sleeps).write([series("m")])
    assert result.accepted == 3
    assert receiver.attempts == 2
    assert sleeps[0] >= 1.0  # at least what the server asked, though the backoff was 10 ms


def test_retry_after_is_capped_by_max_backoff(receiver: Receiver, tmp_path: Path) -> None:
    receiver.script = [(503, {"Retry-After": "3600"}, b"")]
    sleeps = Sleeps()
    make_writer(receiver, tmp_path, sleeps).write([series("m")])
    assert sleeps == [1.0]


def test_staleness_marker_bits(receiver: Receiver, tmp_path: Path) -> None:
    labels = output_labels("m", {"instance": "gone"}, {"pipeline": "p"})
    make_writer(receiver, tmp_path).mark_stale([labels], T0)
    ((sent_labels, samples),) = receiver.requests[0].series
    assert sent_labels == labels
    assert samples[0][0] == T0
    assert samples[0][2] == STALE_BITS
    assert math.isnan(STALE_NAN)


def test_nan_and_infinities_keep_their_bits(receiver: Receiver, tmp_path: Path) -> None:
    labels = output_labels("m", {}, {"pipeline": "p"})
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 5e-324])
    ts = T0 + np.arange(6, dtype=np.int64)
    make_writer(receiver, tmp_path).write([OutputSeries(labels, ts, values)])
    bits = [b for _, _, b in receiver.requests[0].series[0][1]]
    assert bits == [int(x) for x in values.view(np.uint64)]


def test_unreachable_receiver_fills_the_outbox_in_order(receiver: Receiver, tmp_path: Path) -> None:
    receiver.script = [(503, {}, b"")] * 3  # the whole retry budget of the first batch
    writer = make_writer(receiver, tmp_path, max_samples_per_request=2, concurrency=1)
    first = writer.write([series("m", n=6)])
    assert (first.accepted, first.queued) == (0, 6)
    assert len(writer.outbox) == 3
    second = writer.write([series("m", n=2)])  # outbox drains first, then the new samples
    assert second.accepted == 2
    assert len(writer.outbox) == 0
    timestamps = [t for t, _, _ in next(iter(receiver.samples().values()))]
    assert timestamps == [T0 + k * 15_000 for k in range(6)] + [T0, T0 + 15_000]
