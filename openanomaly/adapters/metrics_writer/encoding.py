"""Remote write 1.0 wire format, written with numpy instead of one protobuf object per sample.

A `WriteRequest` is a list of `TimeSeries`; each is a block of `Label`s followed by `Sample`s.
Label blocks are encoded once per series (`encode_labels`) and reused for every request that
series appears in; samples of all series are encoded in one vectorised pass: each `Sample` is
`0x12 len 0x09 <8-byte double> 0x10 <varint timestamp>`, which for every timestamp between
1971-02 and 2109 has a 6-byte varint, so one request is a fixed-width numpy record array.
The result is byte-for-byte what protobuf writes, except that protobuf omits a value of exactly
0.0 and a timestamp of 0 (proto3 defaults) where we keep them: both decode to the same message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import snappy

_TAG_SERIES = 0x0A  # WriteRequest.timeseries, field 1, length-delimited
_TAG_SAMPLE = 0x12  # TimeSeries.samples, field 2
_TAG_DOUBLE = 0x09  # Sample.value, field 1, 64-bit
_TAG_TIMESTAMP = 0x10  # Sample.timestamp, field 2, varint
_MAX_VARINT = 10


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int (or an int64 as two's complement)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_label(name: str, value: str) -> bytes:
    """One `Label` field of a TimeSeries."""
    name_b, value_b = name.encode(), value.encode()
    if len(name_b) + len(value_b) < 124:  # every length fits one varint byte: the common case
        return b"\x0a%c\x0a%c%s\x12%c%s" % (
            len(name_b) + len(value_b) + 4,
            len(name_b),
            name_b,
            len(value_b),
            value_b,
        )
    body = b"\x0a" + varint(len(name_b)) + name_b + b"\x12" + varint(len(value_b)) + value_b
    return b"\x0a" + varint(len(body)) + body


def encode_labels(labels: Sequence[tuple[str, str]]) -> bytes:
    """The `labels` part of one TimeSeries. Labels must already be sorted and valid."""
    return b"".join([encode_label(name, value) for name, value in labels])


def _varint_length(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def _varint_lengths(u: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
    lengths = np.ones(u.shape, dtype=np.int64)
    for k in range(1, _MAX_VARINT):
        lengths += u >= np.uint64(1 << (7 * k))
    return lengths


# One Sample field, with the varint in an 8-byte slot of which the first `length` bytes count.
_RECORD = np.dtype(
    [("tag", "u1"), ("len", "u1"), ("vtag", "u1"), ("value", "<f8"), ("ttag", "u1"), ("ts", "<u8")]
)


def encode_samples(
    timestamps_ms: npt.NDArray[np.int64], values: npt.NDArray[np.float64]
) -> tuple[bytes, npt.NDArray[np.int64]]:
    """Encoded `Sample` fields for all samples in order, and the byte offset where each starts
    (length n + 1), so a series' samples are `data[offsets[i]:offsets[j]]`. Values keep their
    exact bits (the stale-marker NaN included)."""
    n = len(timestamps_ms)
    if n == 0:
        return b"", np.zeros(1, dtype=np.int64)
    u = np.ascontiguousarray(timestamps_ms, dtype=np.int64).view(np.uint64)
    shortest, longest = _varint_length(int(u.min())), _varint_length(int(u.max()))
    if shortest != longest or longest > 8:
        return _encode_samples_general(u, values)
    # Fast path: every timestamp has the same varint length (true for any real request).
    length = longest
    packed = np.zeros(n, dtype=np.uint64)
    byte = np.empty(n, dtype=np.uint64)  # scratch, reused: this loop is the hot path
    for k in range(length):
        np.right_shift(u, np.uint64(7 * k), out=byte)
        np.bitwise_and(byte, np.uint64(0x7F), out=byte)
        if k < length - 1:
            np.bitwise_or(byte, np.uint64(0x80), out=byte)
        np.left_shift(byte, np.uint64(8 * k), out=byte)
        np.bitwise_or(packed, byte, out=packed)
    records = np.empty(n, dtype=_RECORD)
    records["tag"] = _TAG_SAMPLE
    records["len"] = 10 + length
    records["vtag"] = _TAG_DOUBLE
    records["value"] = values
    records["ttag"] = _TAG_TIMESTAMP
    records["ts"] = packed
    width = 12 + length
    data = records.view(np.uint8).reshape(n, _RECORD.itemsize)[:, :width].tobytes()
    return data, np.arange(n + 1, dtype=np.int64) * width


def _encode_samples_general(
    u: npt.NDArray[np.uint64], values: npt.NDArray[np.float64]
) -> tuple[bytes, npt.NDArray[np.int64]]:
    """Any mix of varint lengths (negative or pre-1971 timestamps): a row per sample at the
    widest size, then only each row's real bytes are kept."""
    n = len(u)
    lengths = _varint_lengths(u)
    widths = 12 + lengths
    width = 12 + _MAX_VARINT
    records = np.zeros((n, width), dtype=np.uint8)
    records[:, 0] = _TAG_SAMPLE
    records[:, 1] = (widths - 2).astype(np.uint8)
    records[:, 2] = _TAG_DOUBLE
    records[:, 3:11] = np.ascontiguousarray(values, dtype="<f8").view(np.uint8).reshape(n, 8)
    records[:, 11] = _TAG_TIMESTAMP
    for k in range(_MAX_VARINT):
        byte = ((u >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        byte |= np.where(lengths > k + 1, 0x80, 0).astype(np.uint8)
        records[:, 12 + k] = byte
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(widths, out=offsets[1:])
    keep = np.arange(width)[None, :] < widths[:, None]  # row-major: samples stay in order
    return records[keep].tobytes(), offsets


@dataclass(frozen=True)
class EncodedSeries:
    """A series ready to send: its encoded label block and its samples."""

    label_block: bytes
    timestamps_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


def encode_write_request(series: Sequence[EncodedSeries]) -> bytes:
    """Uncompressed protobuf `WriteRequest` holding every series (empty ones are left out)."""
    present = [s for s in series if len(s.timestamps_ms)]
    if not present:
        return b""
    counts = np.array([len(s.timestamps_ms) for s in present], dtype=np.int64)
    data, offsets = encode_samples(
        np.concatenate([s.timestamps_ms for s in present]),
        np.concatenate([s.values for s in present]),
    )
    view = memoryview(data)
    bounds = np.zeros(len(present) + 1, dtype=np.int64)
    np.cumsum(counts, out=bounds[1:])
    edges = offsets[bounds].tolist()  # Python ints: indexing numpy scalars per series is slow
    headers: dict[int, bytes] = {}  # series of equal size share a header
    parts: list[bytes | memoryview] = []
    for i, s in enumerate(present):
        start, end = edges[i], edges[i + 1]
        body_len = len(s.label_block) + end - start
        header = headers.get(body_len)
        if header is None:
            header = headers[body_len] = bytes((_TAG_SERIES,)) + varint(body_len)
        parts += (header, s.label_block, view[start:end])
    return b"".join(parts)


def compress(body: bytes) -> bytes:
    """Snappy block format (not framed), as remote write requires."""
    return bytes(snappy.compress(body))
