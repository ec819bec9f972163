"""The numpy remote-write encoder against protobuf's own decoder and encoder."""

from __future__ import annotations

import numpy as np
import pytest

from openanomaly.adapters.metrics_writer.encoding import (
    EncodedSeries,
    encode_labels,
    encode_samples,
    encode_write_request,
    varint,
)
from openanomaly.adapters.metrics_writer.prompb import messages

WriteRequest = messages()["WriteRequest"]


def reference(series: list[tuple[list[tuple[str, str]], np.ndarray, np.ndarray]]) -> bytes:
    request = WriteRequest()
    for labels, ts, values in series:
        item = request.timeseries.add()
        for name, value in labels:
            item.labels.add(name=name, value=value)
        for t, v in zip(ts.tolist(), values.tolist(), strict=True):
            item.samples.add(value=v, timestamp=t)
    return bytes(request.SerializeToString())


@pytest.mark.parametrize(
    "timestamps",
    [
        [1_700_000_000_000, 1_700_000_060_000],  # today: 6-byte varints (fast path)
        [1, 127, 128, 16_383, 16_384],  # mixed lengths (general path)
        [-1, -1_000, 2**62, 2**63 - 1],  # negative int64 and the largest: 10-byte varints
        [2**35 - 1, 2**35],  # 1971-02: the 5/6-byte boundary
    ],
)
def test_matches_protobuf_byte_for_byte(timestamps: list[int]) -> None:
    ts = np.array(timestamps, dtype=np.int64)
    values = np.linspace(-1.5, 2.5, len(ts))  # no 0.0 (nor timestamp 0): protobuf omits those
    labels = [("__name__", "m"), ("long", "x" * 300), ("ü", "ö")]
    ours = encode_write_request([EncodedSeries(encode_labels(labels), ts, values)])
    assert ours == reference([(labels, ts, values)])


def test_zero_values_are_kept_and_decode_the_same() -> None:
    ts = np.array([1, 2], dtype=np.int64)
    values = np.array([0.0, -0.0])
    ours = encode_write_request([EncodedSeries(encode_labels([("__name__", "m")]), ts, values)])
    decoded = WriteRequest()
    decoded.ParseFromString(ours)
    got = np.array([s.value for s in decoded.timeseries[0].samples])
    assert got.view(np.uint64).tolist() == values.view(np.uint64).tolist()


def test_many_series_random_round_trip() -> None:
    rng = np.random.default_rng(3)
    series = []
    for i in range(50):
        n = int(rng.integers(0, 40))
        ts = np.sort(rng.integers(-(2**40), 2**45, n)).astype(np.int64)
        values = rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n)
        series.append(([("__name__", "m"), ("i", str(i))], ts, values))
    ours = encode_write_request([EncodedSeries(encode_labels(lab), t, v) for lab, t, v in series])
    decoded = WriteRequest()
    decoded.ParseFromString(ours)
    present = [s for s in series if len(s[1])]
    assert len(decoded.timeseries) == len(present)  # empty series are not sent
    for (labels, ts, values), got in zip(present, decoded.timeseries, strict=True):
        assert [(x.name, x.value) for x in got.labels] == labels
        assert [x.timestamp for x in got.samples] == ts.tolist()
        assert [x.value for x in got.samples] == values.tolist()


def test_sample_offsets_index_each_sample() -> None:
    ts = np.array([5, 300, 2**40], dtype=np.int64)
    data, offsets = encode_samples(ts, np.ones(3))
    assert offsets.tolist() == [0, 13, 14 + 13, 14 + 13 + 18]  # 1-, 2- and 6-byte varints
    assert len(data) == offsets[-1]


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, b"\x00"), (1, b"\x01"), (300, b"\xac\x02"), (-1, b"\xff" * 9 + b"\x01")],
)
def test_varint(value: int, encoded: bytes) -> None:
    assert varint(value) == encoded
