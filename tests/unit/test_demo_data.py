"""The demo's synthetic metrics: deterministic, counters that only grow, incidents inside the
backtested part of the history and visible in the data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from openanomaly.demo.run import demo_pipelines
from openanomaly.demo.synthetic import SCRAPE, generate, incidents_for

END = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
START = END - timedelta(days=5)


def test_the_data_is_deterministic_and_counters_only_grow() -> None:
    incidents = incidents_for(START, END)
    first, again = generate(START, END, incidents), generate(START, END, incidents)
    assert [s.labels for s in first] == [s.labels for s in again]
    assert all(np.array_equal(a.values, b.values) for a, b in zip(first, again, strict=True))
    points = int((END - START) / SCRAPE) + 1
    for series in first:
        assert len(series.values) == len(series.timestamps_ms) == points
        if series.name.endswith("_total"):
            assert (np.diff(series.values) >= 0).all(), series.labels
        else:
            assert ((series.values >= 0) & (series.values <= 1)).all(), series.labels


def test_incidents_fall_where_the_demo_backtests_and_change_the_data() -> None:
    incidents = incidents_for(START, END)
    window = max(p.train.window for p in demo_pipelines())
    with_them = {
        (s.name, tuple(sorted(s.labels.items()))): s for s in generate(START, END, incidents)
    }
    without = {(s.name, tuple(sorted(s.labels.items()))): s for s in generate(START, END, [])}
    for incident in incidents:
        assert START + window < incident.start < incident.end < END
        key = "service" if incident.family == "http" else "instance"
        changed = [
            k
            for k, s in with_them.items()
            if (key, incident.series) in k[1] and not np.array_equal(s.values, without[k].values)
        ]
        assert changed, f"{incident.kind} left no trace in the data"
