from __future__ import annotations

import pytest

from openanomaly.domain.labels import (
    check_label_tuple,
    output_labels,
    output_series_labels,
    sanitize_label_name,
    sanitize_metric_name,
)
from openanomaly.domain.staleness import SeriesTracker

OWN = {"pipeline": "cpu", "model": "AutoETS"}


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"instance": "a", "job": "node"}, {"instance": "a", "job": "node"}),
        ({"__name__": "up", "job": "node"}, {"metric": "up", "job": "node"}),
        ({"pipeline": "theirs"}, {"exported_pipeline": "theirs"}),
        # an input label is renamed only when it must be; names are claimed in sorted order
        (
            {"model": "m", "exported_model": "x"},
            {"exported_model": "x", "exported_exported_model": "m"},
        ),
        ({"__name__": "up", "metric": "mine"}, {"metric": "up", "exported_metric": "mine"}),
        ({"metric": "mine", "__name__": "up"}, {"metric": "up", "exported_metric": "mine"}),
        ({"empty": "", "kept": "v"}, {"kept": "v"}),
        ({"bad-name": "v", "1st": "w"}, {"bad_name": "v", "_1st": "w"}),
    ],
)
def test_output_labels(inputs: dict[str, str], expected: dict[str, str]) -> None:
    labels = output_labels("anomaly_score", inputs, OWN)
    assert dict(labels) == {"__name__": "anomaly_score", **OWN, **expected}
    assert [n for n, _ in labels] == sorted(n for n, _ in labels)
    check_label_tuple(labels)


def test_four_output_series_per_input() -> None:
    out = output_series_labels("anomaly", {"instance": "a"}, OWN)
    assert {dict(v)["__name__"] for v in out.values()} == {
        "anomaly_score",
        "anomaly_yhat",
        "anomaly_yhat_lower",
        "anomaly_yhat_upper",
    }


@pytest.mark.parametrize(
    ("raw", "label", "metric"),
    [
        ("ok_name", "ok_name", "ok_name"),
        ("a:b", "a_b", "a:b"),
        ("9x", "_9x", "_9x"),
        ("", "_", "_"),
        ("é", "_", "_"),
    ],
)
def test_sanitizers(raw: str, label: str, metric: str) -> None:
    assert sanitize_label_name(raw) == label
    assert sanitize_metric_name(raw) == metric


def test_tracker_reports_series_that_disappear() -> None:
    tracker = SeriesTracker()
    a = output_labels("anomaly_score", {"i": "a"}, OWN)
    b = output_labels("anomaly_score", {"i": "b"}, OWN)
    assert tracker.update("cpu", [a, b]) == []
    assert tracker.update("cpu", [a]) == [b]
    assert tracker.update("cpu", [a]) == []
    assert tracker.update("other", [b]) == []  # pipelines are tracked apart
    assert tracker.remove("cpu") == [a]
    assert tracker.remove("cpu") == []
