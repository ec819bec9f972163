"""Durable outbox: remote-write batches the TSDB could not take yet, kept on disk in order.

One file per batch, named by a sequence number, holding a small header and the exact request
body (snappy-compressed protobuf), so a restart resends byte-identical requests oldest first.
Files are written to a temp name, fsynced and renamed, so a crash leaves either a whole batch or
none. Bounds (total bytes, age) drop the oldest batches; every drop is counted and logged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_MAGIC = b"OARW1\n"
_SUFFIX = ".rwb"


@dataclass(frozen=True)
class OutboxEntry:
    path: Path
    seq: int
    body: bytes
    samples: int
    series: int
    created: float


@dataclass(frozen=True)
class _Meta:
    size: int
    samples: int
    created: float


@dataclass
class OutboxStats:
    batches: int = 0
    bytes: int = 0
    dropped_batches: int = 0
    dropped_samples: int = 0
    corrupt_batches: int = 0


class Outbox:
    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        max_age_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self.stats = OutboxStats()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "tmp").mkdir(exist_ok=True)
        for leftover in (directory / "tmp").iterdir():  # a crash mid-write: never renamed
            leftover.unlink(missing_ok=True)
        self._meta: dict[int, _Meta] = {}
        damaged = []
        for path in directory.glob(f"*{_SUFFIX}"):
            if not path.stem.isdigit():
                continue
            header = _read_header(path)
            if header is None:
                damaged.append(int(path.stem))
                continue
            size = path.stat().st_size
            self._meta[int(path.stem)] = _Meta(size, int(header["samples"]), header["created"])
        self._next = max([*self._meta, *damaged], default=0) + 1
        for seq in damaged:
            self._set_aside(seq)
        self._refresh_stats()

    def __len__(self) -> int:
        return len(self._meta)

    def _path(self, seq: int) -> Path:
        return self.directory / f"{seq:020d}{_SUFFIX}"

    def _refresh_stats(self) -> None:
        self.stats.batches = len(self._meta)
        self.stats.bytes = sum(m.size for m in self._meta.values())

    def append(self, body: bytes, *, samples: int, series: int) -> None:
        """Persist one batch durably (fsync file and directory) before returning."""
        created = self._clock()
        header = {
            "samples": samples,
            "series": series,
            "created": created,
            "length": len(body),
            "crc32": zlib.crc32(body),
        }
        blob = _MAGIC + json.dumps(header).encode() + b"\n" + body
        with self._lock:
            seq = self._next
            self._next += 1
            tmp = self.directory / "tmp" / f"{seq:020d}.tmp"
            with tmp.open("wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self._path(seq))
            _fsync_dir(self.directory)
            self._meta[seq] = _Meta(len(blob), samples, created)
            self._refresh_stats()
        self.enforce_bounds()

    def oldest(self) -> OutboxEntry | None:
        """The oldest intact batch; corrupt files are set aside (counted, logged) on the way."""
        while True:
            with self._lock:
                if not self._meta:
                    return None
                seq = min(self._meta)
            path = self._path(seq)
            entry = _read(path, seq)
            if entry is not None:
                return entry
            self._set_aside(seq)

    def remove(self, entry: OutboxEntry) -> None:
        with self._lock:
            entry.path.unlink(missing_ok=True)
            self._meta.pop(entry.seq, None)
            self._refresh_stats()

    def drop(self, entry: OutboxEntry, reason: str) -> None:
        """Remove a batch that will never be delivered, counting its samples as dropped."""
        self._discard(entry.seq, entry.samples, reason)

    def enforce_bounds(self) -> None:
        """Drop the oldest batches while the outbox is over its age or size bound."""
        now = self._clock()
        while True:
            with self._lock:
                if not self._meta:
                    return
                seq = min(self._meta)
                meta = self._meta[seq]
                total = sum(m.size for m in self._meta.values())
                count = len(self._meta)
            if now - meta.created > self.max_age_seconds:
                reason = f"older than outbox_max_age ({self.max_age_seconds:.0f}s)"
            elif total > self.max_bytes and count > 1:
                reason = f"outbox over outbox_max_bytes ({self.max_bytes} bytes)"
            else:
                return
            self._discard(seq, meta.samples, reason)

    def _discard(self, seq: int, samples: int, reason: str) -> None:
        with self._lock:
            self._path(seq).unlink(missing_ok=True)
            self._meta.pop(seq, None)
            self._refresh_stats()
        self.stats.dropped_batches += 1
        self.stats.dropped_samples += samples
        log.error("outbox: dropped batch %d (%d samples): %s", seq, samples, reason)

    def _set_aside(self, seq: int) -> None:
        corrupt = self.directory / "corrupt"
        corrupt.mkdir(exist_ok=True)
        path = self._path(seq)
        with self._lock:
            if path.exists():
                os.replace(path, corrupt / path.name)
            self._meta.pop(seq, None)
            self._refresh_stats()
        self.stats.corrupt_batches += 1
        log.error("outbox: batch file %s is damaged; moved to %s", path.name, corrupt)


def _read_header(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return None
    if not head.startswith(_MAGIC) or b"\n" not in head[len(_MAGIC) :]:
        return None
    try:
        header = json.loads(head[len(_MAGIC) : head.index(b"\n", len(_MAGIC))])
        return {"samples": int(header["samples"]), "created": float(header["created"])}
    except (ValueError, KeyError, TypeError):
        return None


def _read(path: Path, seq: int) -> OutboxEntry | None:
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    if not blob.startswith(_MAGIC):
        return None
    header_end = blob.find(b"\n", len(_MAGIC))
    try:
        header = json.loads(blob[len(_MAGIC) : header_end])
        body = blob[header_end + 1 :]
        if len(body) != header["length"] or zlib.crc32(body) != header["crc32"]:
            return None
        return OutboxEntry(
            path, seq, body, int(header["samples"]), int(header["series"]), float(header["created"])
        )
    except (ValueError, KeyError, TypeError):
        return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
