"""`RemoteWriteWriter`: Prometheus remote write 1.0, batched, retried, never losing samples.

- Labels must come sorted, unique, valid and non-empty (see `domain.labels`); each series' label
  block is encoded once and cached.
- Series are spread over `concurrency` lanes by their labels; a lane sends its batches one after
  another, so the samples of one series always arrive in order, while lanes run in parallel.
- 5xx, 429 and connection failures are retried with exponential backoff and full jitter
  (`Retry-After` honoured, up to `retry.max_backoff`); other 4xx are never retried: the server's
  message is logged verbatim and the samples are counted as dropped.
- When retries run out, the batch and the rest of its lane go to the durable outbox, and while
  the outbox holds anything new batches queue behind it, so delivery order is kept. The outbox is
  retried first on every write and by `flush_outbox`, oldest first, across restarts.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from openanomaly.adapters.http_client import build_client, post_with_retries, server_message
from openanomaly.adapters.metrics_writer.encoding import (
    EncodedSeries,
    compress,
    encode_labels,
    encode_write_request,
)
from openanomaly.adapters.metrics_writer.outbox import Outbox
from openanomaly.config.settings import RemoteWriteSettings, TSDBSettings
from openanomaly.domain.labels import LabelTuple, check_label_tuple
from openanomaly.ports import OutputSeries, WriteResult

log = logging.getLogger(__name__)

PROTOCOL_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
"""Prometheus' staleness marker: a NaN with this exact bit pattern."""
_LABEL_CACHE_SIZE = 1_000_000


@dataclass
class Batch:
    body: bytes  # snappy-compressed WriteRequest
    samples: int
    series: int


@dataclass
class WriterStats:
    samples_sent: int = 0
    samples_queued: int = 0
    samples_dropped: int = 0
    requests: int = 0
    retries: int = 0
    rejected_batches: int = 0
    last_error: str = ""


class _Outcome:
    SENT, RETRY_EXHAUSTED, REJECTED = "sent", "retry_exhausted", "rejected"


class RemoteWriteWriter:
    def __init__(
        self,
        tsdb: TSDBSettings,
        settings: RemoteWriteSettings,
        outbox_dir: Path,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = tsdb.effective_write_url
        self.settings = settings
        self._client = build_client(
            tsdb,
            extra_headers=PROTOCOL_HEADERS,
            transport=transport,
            max_connections=settings.concurrency,
        )
        self._sleep = sleep
        self.outbox = Outbox(
            outbox_dir,
            max_bytes=int(settings.outbox_max_bytes),
            max_age_seconds=settings.outbox_max_age.total_seconds(),
            clock=clock,
        )
        self.stats = WriterStats()
        self._labels: OrderedDict[LabelTuple, bytes] = OrderedDict()
        self._write_lock = threading.Lock()  # one write at a time keeps batches in order
        self._pool: ThreadPoolExecutor | None = None

    # --- public API (MetricsWriter) ---------------------------------------------------------

    def write(self, series: Sequence[OutputSeries]) -> WriteResult:
        with self._write_lock:
            lanes = self._plan(series)
            if not any(lanes):
                return WriteResult()
            if len(self.outbox) and not self._drain(first_attempt_only=True):
                queued = sum(self._queue(batch) for lane in lanes for batch in lane)
                return WriteResult(queued=queued)
            return self._send_lanes(lanes)

    def mark_stale(self, series: Sequence[LabelTuple], at_ms: int) -> WriteResult:
        """Stale markers, so queries stop showing output series whose input disappeared."""
        ts = np.array([at_ms], dtype=np.int64)
        value = np.array([STALE_NAN], dtype=np.float64)
        return self.write([OutputSeries(labels, ts, value) for labels in series])

    def flush_outbox(self) -> bool:
        """Deliver the outbox, oldest first, with the full retry budget per batch. True when
        it is empty afterwards."""
        with self._write_lock:
            return self._drain(first_attempt_only=False)

    def close(self, timeout: float = 10.0) -> None:
        """Try to deliver the outbox for up to `timeout` seconds; what is left stays on disk."""
        if len(self.outbox):
            with self._write_lock:
                self._drain(first_attempt_only=False, deadline=time.monotonic() + timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._client.close()

    # --- planning -------------------------------------------------------------------------

    def _label_block(self, labels: LabelTuple) -> bytes:
        """Encoded labels, cached (least recently used out). Only `_plan` calls this, under
        the write lock, so the cache needs no lock of its own."""
        block = self._labels.get(labels)
        if block is not None:
            self._labels.move_to_end(labels)
            return block
        check_label_tuple(labels)
        block = encode_labels(labels)
        self._labels[labels] = block
        if len(self._labels) > _LABEL_CACHE_SIZE:
            self._labels.popitem(last=False)
        return block

    def _plan(self, series: Sequence[OutputSeries]) -> list[list[Batch]]:
        """Series -> lanes of compressed batches of at most max_samples_per_request samples."""
        lanes_count = self.settings.concurrency
        limit = self.settings.max_samples_per_request
        pending: list[list[EncodedSeries]] = [[] for _ in range(lanes_count)]
        sizes = [0] * lanes_count
        lanes: list[list[Batch]] = [[] for _ in range(lanes_count)]

        def close(lane: int) -> None:
            if pending[lane]:
                body = compress(encode_write_request(pending[lane]))
                lanes[lane].append(Batch(body, sizes[lane], len(pending[lane])))
                pending[lane], sizes[lane] = [], 0

        for item in series:
            n = len(item.timestamps_ms)
            if n == 0:
                continue
            if len(item.values) != n:
                raise ValueError(
                    f"series {item.labels}: {n} timestamps but {len(item.values)} values"
                )
            block = self._label_block(tuple(item.labels))
            lane = zlib.crc32(block) % lanes_count
            ts = np.asarray(item.timestamps_ms, dtype=np.int64)
            values = np.asarray(item.values, dtype=np.float64)
            if n > 1 and bool((np.diff(ts) < 0).any()):
                order = np.argsort(ts, kind="stable")
                ts, values = ts[order], values[order]
            start = 0
            while start < n:
                room = limit - sizes[lane]
                take = min(room, n - start)
                pending[lane].append(
                    EncodedSeries(block, ts[start : start + take], values[start : start + take])
                )
                sizes[lane] += take
                start += take
                if sizes[lane] >= limit:
                    close(lane)
        for lane in range(lanes_count):
            close(lane)
        return [lane for lane in lanes if lane]

    # --- sending ---------------------------------------------------------------------------

    def _send_lanes(self, lanes: list[list[Batch]]) -> WriteResult:
        if len(lanes) == 1:
            results = [self._send_lane(lanes[0])]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.settings.concurrency, thread_name_prefix="oa-write"
                )
            results = list(self._pool.map(self._send_lane, lanes))
        return WriteResult(
            accepted=sum(r.accepted for r in results),
            queued=sum(r.queued for r in results),
            dropped=sum(r.dropped for r in results),
            errors=[e for r in results for e in r.errors],
        )

    def _send_lane(self, lane: list[Batch]) -> WriteResult:
        accepted = queued = dropped = 0
        errors: list[str] = []
        for index, batch in enumerate(lane):
            outcome, message = self._send(batch.body, retries=True)
            if outcome == _Outcome.SENT:
                accepted += batch.samples
                self.stats.samples_sent += batch.samples
            elif outcome == _Outcome.REJECTED:
                dropped += batch.samples
                self.stats.samples_dropped += batch.samples
                errors.append(message)
            else:  # the TSDB is unreachable: keep this batch and the rest of the lane, in order
                queued += sum(self._queue(b) for b in lane[index:])
                errors.append(message)
                break
        return WriteResult(accepted=accepted, queued=queued, dropped=dropped, errors=errors)

    def _queue(self, batch: Batch) -> int:
        self.outbox.append(batch.body, samples=batch.samples, series=batch.series)
        self.stats.samples_queued += batch.samples
        return batch.samples

    def _drain(self, *, first_attempt_only: bool, deadline: float | None = None) -> bool:
        retries = not first_attempt_only
        while True:
            entry = self.outbox.oldest()
            if entry is None:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            outcome, message = self._send(entry.body, retries=retries, deadline=deadline)
            if outcome == _Outcome.SENT:
                self.outbox.remove(entry)
                self.stats.samples_sent += entry.samples
                log.info("outbox: delivered batch %d (%d samples)", entry.seq, entry.samples)
                retries = True  # the TSDB is back: the rest may use the full budget
            elif outcome == _Outcome.REJECTED:
                self.outbox.drop(entry, f"refused by the TSDB: {message}")
                self.stats.samples_dropped += entry.samples
            else:
                return False

    def _send(
        self, body: bytes, *, retries: bool, deadline: float | None = None
    ) -> tuple[str, str]:
        """One request with retries; returns (outcome, last error message)."""

        def retried(_attempt: int, _message: str) -> None:
            self.stats.retries += 1

        outcome = post_with_retries(
            self._client,
            self.url,
            self.settings.retry,
            sleep=self._sleep,
            retries=retries,
            deadline=deadline,
            on_retry=retried,
            content=body,
        )
        self.stats.requests += outcome.attempts
        response = outcome.response
        if response is None:
            self.stats.last_error = outcome.message
            log.warning(
                "remote write to %s failed after %d attempt(s): %s",
                self.url,
                outcome.attempts,
                outcome.message,
            )
            return _Outcome.RETRY_EXHAUSTED, outcome.message
        if 200 <= response.status_code < 300:
            return _Outcome.SENT, ""
        message = f"HTTP {response.status_code}: {server_message(response)}"
        self.stats.rejected_batches += 1
        self.stats.last_error = message
        log.error("remote write to %s refused, not retried: %s", self.url, message)
        return _Outcome.REJECTED, message
