"""`PrometheusReader`: `query_range` over the Prometheus HTTP API (Prometheus, VictoriaMetrics,
Thanos, Mimir, Cortex), split into chunks the servers accept and stitched back together."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx

from openanomaly.adapters.http_client import build_client, post_with_retries, server_message
from openanomaly.adapters.metrics_reader.assemble import FlatChunk, assemble, flatten
from openanomaly.adapters.metrics_reader.parse import (
    parse_range_body,
)
from openanomaly.config.settings import TSDBSettings
from openanomaly.domain.series import SeriesFrame
from openanomaly.durations import format_duration
from openanomaly.errors import TSDBQueryError, TSDBUnavailable

log = logging.getLogger(__name__)
PROBE_POINTS = 16


class TooManySeries(TSDBQueryError):
    """The query returned more series than the pipeline's `limits.max_series`."""


def plan_chunks(start_ms: int, end_ms: int, step_ms: int, max_points: int) -> list[tuple[int, int]]:
    """Split [start, end] (aligned to step) into ranges of at most `max_points` points each;
    consecutive ranges neither overlap nor leave a gap (next start = previous end + step)."""
    if end_ms < start_ms:
        return []
    span = (max_points - 1) * step_ms
    chunks = []
    chunk_start = start_ms
    while chunk_start <= end_ms:
        chunk_end = min(chunk_start + span, end_ms)
        chunks.append((chunk_start, chunk_end))
        chunk_start = chunk_end + step_ms
    return chunks


def align(start: datetime, end: datetime, step: timedelta) -> tuple[int, int, int]:
    """Start rounded up and end rounded down to multiples of step since the epoch, in ms.

    VictoriaMetrics aligns to the step by itself and Prometheus does not; aligning here makes
    both return the same timestamps, and makes chunk boundaries land on real points."""
    step_ms = round(step.total_seconds() * 1000)
    if step_ms <= 0:
        raise ValueError("step must be positive")
    start_ms = round(start.timestamp() * 1000)
    end_ms = round(end.timestamp() * 1000)
    return -(-start_ms // step_ms) * step_ms, end_ms // step_ms * step_ms, step_ms


class PrometheusReader:
    def __init__(
        self,
        settings: TSDBSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.url = f"{settings.url}/api/v1/query_range"
        self._client = build_client(
            settings, transport=transport, max_connections=settings.read_concurrency
        )
        self._sleep = sleep
        self._parse_lock = threading.Lock()
        self.bytes_read = 0  # response bytes, for the incremental-read benchmark and metrics

    def close(self) -> None:
        self._client.close()

    def query_range(
        self,
        query: str,
        start: datetime,
        end: datetime,
        step: timedelta,
        *,
        max_series: int | None = None,
    ) -> SeriesFrame:
        start_ms, end_ms, step_ms = align(start, end, step)
        if end_ms < start_ms:
            return assemble([])[0]
        limit = self.settings.max_points_per_request
        # A short chunk at the *end* of the range tells how many series the query returns
        # (the newest data has them all; the start of a range often has none yet); the rest
        # is split so that no answer holds more than max_samples_per_request samples.
        probe_start = max(start_ms, end_ms - (min(limit, PROBE_POINTS) - 1) * step_ms)
        last = self._fetch(query, probe_start, end_ms, step_ms, max_series)
        per_chunk = self.settings.max_samples_per_request // max(1, len(last.labels))
        chunks = plan_chunks(
            start_ms, probe_start - step_ms, step_ms, max(1, min(limit, per_chunk))
        )
        if len(chunks) <= 1 or self.settings.read_concurrency == 1:
            rest = [self._fetch(query, s, e, step_ms, max_series) for s, e in chunks]
        else:
            workers = min(self.settings.read_concurrency, len(chunks))
            with ThreadPoolExecutor(workers, thread_name_prefix="oa-read") as pool:
                futures = [
                    pool.submit(self._fetch, query, s, e, step_ms, max_series) for s, e in chunks
                ]
                rest = [f.result() for f in futures]
        results = [*rest, last]
        del rest, last  # `assemble` empties `results` as it goes
        frame, warnings = assemble(results)
        for warning in dict.fromkeys(warnings):
            log.warning("TSDB warning for query %r: %s", query, warning)
        _check_series_limit(len(frame.labels), max_series)
        return frame

    def _fetch(
        self, query: str, start_ms: int, end_ms: int, step_ms: int, max_series: int | None
    ) -> FlatChunk:
        form = {
            "query": query,
            "start": f"{start_ms / 1000:.3f}",
            "end": f"{end_ms / 1000:.3f}",
            "step": f"{step_ms / 1000:.3f}",
            # The server stops evaluating when we stop waiting.
            "timeout": format_duration(self.settings.timeout),
        }
        body = self._post(form)
        # Responses download concurrently but are parsed one at a time: parsing needs ~18x
        # the body in temporaries, and on a 2-core host parallel parses gain little.
        with self._parse_lock:
            result = parse_range_body(body)
        del body
        _check_series_limit(len(result.labels), max_series)
        return flatten(result)

    def _post(self, form: dict[str, str]) -> bytes:
        outcome = post_with_retries(
            self._client,
            self.url,
            self.settings.retry,
            sleep=self._sleep,
            on_retry=lambda n, why: log.info(
                "query_range attempt %d failed (%s); retrying", n, why
            ),
            data=form,
        )
        response = outcome.response
        if response is None:
            raise TSDBUnavailable(
                f"{self.url} did not answer after {outcome.attempts} attempt(s): {outcome.message}"
            )
        if response.status_code != 200:
            raise TSDBQueryError(
                f"{self.url} refused the query (HTTP {response.status_code}): "
                f"{server_message(response)}"
            )
        self.bytes_read += len(response.content)
        return response.content


def _check_series_limit(count: int, max_series: int | None) -> None:
    if max_series is not None and count > max_series:
        raise TooManySeries(
            f"the query returned {count} series, more than limits.max_series={max_series}; "
            "narrow the query (or raise the limit)"
        )
