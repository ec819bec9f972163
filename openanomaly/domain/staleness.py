"""Which output series disappeared, so their stale markers can be written.

Prometheus marks a scraped series stale when a scrape no longer has it; without a marker, a
query keeps showing the last value for the lookback window (5 minutes by default), i.e. a score
of a host that is gone. The tracker remembers each pipeline's output series between cycles.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from openanomaly.domain.labels import LabelTuple


class SeriesTracker:
    def __init__(self) -> None:
        self._seen: dict[str, set[LabelTuple]] = {}
        self._lock = threading.Lock()

    def update(self, pipeline: str, current: Iterable[LabelTuple]) -> list[LabelTuple]:
        """Record the series written this cycle; return the ones written last cycle but not
        this one (sorted, for stable output)."""
        now = set(current)
        with self._lock:
            before = self._seen.get(pipeline, set())
            self._seen[pipeline] = now
        return sorted(before - now)

    def remove(self, pipeline: str) -> list[LabelTuple]:
        """The pipeline is gone: every series it wrote is now stale."""
        with self._lock:
            return sorted(self._seen.pop(pipeline, set()))
