"""Prometheus `query_range` answers -> arrays (chunks are joined in `assemble`).

JSON is parsed with orjson; each series' `[[ts, "value"], ...]` becomes two numpy arrays.
Values are strings on the wire: "NaN", "+Inf" and "-Inf" parse as such.

A body holds millions of small lists, and CPython's cyclic garbage collector, triggered by
every 700 container allocations, walks all of them again and again: on a 1,440-point x 1,000
series body it takes two thirds of the parse time. None of these objects can form a cycle, so
collection is paused while a body is parsed and resumed right after.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from openanomaly.adapters.metrics_reader.fastparse import parse_fast
from openanomaly.domain.series import series_id
from openanomaly.errors import TSDBQueryError


@dataclass
class RangeResult:
    """One answer: per-series label sets and samples (timestamps in ms), plus warnings."""

    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    timestamps: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)
    values: dict[str, npt.NDArray[np.float64]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class _GcPause:
    """Pause cyclic GC while any thread parses; the collector is process-wide, so this state
    is too. The last thread out turns it back on, unless it was off before the first came in."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inside = 0
        self._was_enabled = True

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._inside == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._inside += 1
        try:
            yield
        finally:
            with self._lock:
                self._inside -= 1
                if self._inside == 0 and self._was_enabled:
                    gc.enable()


gc_paused = _GcPause()


def parse_range_body(body: bytes) -> RangeResult:
    """Parse a successful query_range body; raise TSDBQueryError on anything else."""
    fast = parse_fast(body)
    if fast is not None:
        answer, stamps, values = fast
        return _result(answer, body, lambda i, _item: (stamps[i], values[i]))
    with gc_paused():
        return _parse(body)


def _parse(body: bytes) -> RangeResult:
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TSDBQueryError(f"the TSDB answered with invalid JSON: {exc}") from None
    return _result(answer, body, lambda _i, item: samples_to_arrays(item.get("values") or []))


Samples = Callable[[int, dict[str, Any]], tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]]


def _result(answer: Any, body: bytes, samples_of: Samples) -> RangeResult:
    if not isinstance(answer, dict) or answer.get("status") != "success":
        message = answer.get("error") if isinstance(answer, dict) else None
        raise TSDBQueryError(str(message or f"unexpected answer: {body[:200]!r}"))
    data = answer.get("data") or {}
    if data.get("resultType") != "matrix":
        raise TSDBQueryError(
            f"query_range returned a {data.get('resultType')!r}, not a range vector (matrix)"
        )
    result = RangeResult(warnings=[str(w) for w in answer.get("warnings") or []])
    for index, item in enumerate(data.get("result") or []):
        labels: dict[str, str] = item.get("metric") or {}
        key = series_id(labels)
        if key in result.labels:
            # Same label set twice in one answer (e.g. label_replace collapsing series):
            # Prometheus refuses with an error, others may not; we cannot tell them apart.
            raise TSDBQueryError(
                f"the query returned the label set {key} more than once; "
                "aggregate or relabel so every series is unique"
            )
        result.labels[key] = labels
        result.timestamps[key], result.values[key] = samples_of(index, item)
    return result


def samples_to_arrays(
    samples: list[list[Any]],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    n = len(samples)
    if n == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    stamps, texts = zip(*samples, strict=True)
    seconds = np.array(stamps, dtype=np.float64)
    # Timestamps are seconds with millisecond precision; round, never truncate 0.999.
    ms = np.rint(seconds * 1000.0).astype(np.int64)
    values = np.array(texts, dtype=np.float64)
    return ms, values
