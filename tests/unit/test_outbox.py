"""The durable outbox: order, restart, bounds and damaged files."""

from __future__ import annotations

from pathlib import Path

import pytest

from openanomaly.adapters.metrics_writer.outbox import Outbox


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make(
    path: Path, clock: Clock | None = None, max_bytes: int = 10**9, max_age: float = 3600
) -> Outbox:
    return Outbox(path, max_bytes=max_bytes, max_age_seconds=max_age, clock=clock or Clock())


def drain(outbox: Outbox) -> list[bytes]:
    bodies = []
    while (entry := outbox.oldest()) is not None:
        bodies.append(entry.body)
        outbox.remove(entry)
    return bodies


def test_oldest_first_and_survives_a_restart(tmp_path: Path) -> None:
    first = make(tmp_path)
    for i in range(5):
        first.append(f"batch-{i}".encode(), samples=10, series=1)
    assert (len(first), first.stats.batches) == (5, 5)
    again = make(tmp_path)  # a new process
    assert drain(again) == [f"batch-{i}".encode() for i in range(5)]
    assert (len(again), again.stats.bytes) == (0, 0)
    again.append(b"next", samples=1, series=1)
    assert again.oldest() is not None
    assert make(tmp_path).oldest().seq == 6  # type: ignore[union-attr]  # numbering continues


def test_age_bound_drops_the_oldest_and_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    outbox = make(tmp_path, clock, max_age=100)
    outbox.append(b"old", samples=7, series=1)
    clock.now += 60
    outbox.append(b"newer", samples=3, series=1)
    clock.now += 50  # "old" is now 110 s old
    outbox.enforce_bounds()
    assert drain(outbox) == [b"newer"]
    assert (outbox.stats.dropped_batches, outbox.stats.dropped_samples) == (1, 7)
    assert "older than outbox_max_age" in caplog.text


def test_size_bound_keeps_the_newest(tmp_path: Path) -> None:
    outbox = make(tmp_path, max_bytes=350)
    for i in range(5):
        outbox.append(bytes([i]) * 100, samples=1, series=1)
    assert outbox.stats.bytes <= 350
    bodies = drain(outbox)
    assert bodies[-1] == bytes([4]) * 100
    assert outbox.stats.dropped_batches == 5 - len(bodies) > 0


def test_damaged_files_are_set_aside_not_sent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = make(tmp_path)
    outbox.append(b"A" * 50, samples=1, series=1)
    outbox.append(b"B" * 50, samples=1, series=1)
    outbox.append(b"C" * 50, samples=1, series=1)
    files = sorted(tmp_path.glob("*.rwb"))
    files[0].write_bytes(files[0].read_bytes()[:-10])  # truncated
    data = bytearray(files[1].read_bytes())
    data[-1] ^= 0xFF  # flipped bits
    files[1].write_bytes(bytes(data))
    (tmp_path / "tmp" / "00000000000000000009.tmp").write_bytes(b"half written")
    reopened = make(tmp_path)
    assert drain(reopened) == [b"C" * 50]
    assert reopened.stats.corrupt_batches == 2
    assert len(list((tmp_path / "corrupt").iterdir())) == 2
    assert not list((tmp_path / "tmp").iterdir())
    assert "damaged" in caplog.text


def test_garbage_header_is_set_aside_at_start(tmp_path: Path) -> None:
    (tmp_path / "00000000000000000001.rwb").write_bytes(b"not an outbox file")
    outbox = make(tmp_path)
    assert len(outbox) == 0
    assert outbox.stats.corrupt_batches == 1
    outbox.append(b"x", samples=1, series=1)
    assert outbox.oldest().seq == 2  # type: ignore[union-attr]  # never reuses a damaged number
