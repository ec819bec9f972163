"""The web UI's pure presentation: what the tables, messages and filters show, and the
playground's pipeline text (what it validates, compares and saves)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from openanomaly.adapters.model_engine.catalogs import model_catalog
from openanomaly.adapters.pipeline_source.directory import load_pipeline_paths
from openanomaly.errors import Problem
from openanomaly.ui.errors import InvalidModelSection
from openanomaly.ui.pipeline_text import (
    MODEL_B_DEFAULT,
    TEMPLATE,
    outline,
    pipeline_file,
    with_model,
)
from openanomaly.ui.present import (
    ALL,
    ANOMALY_COLUMNS,
    OVERVIEW_COLUMNS,
    READING_TSDB,
    RUN_STATUSES,
    WRITES_OFF_DAEMON_ONLY,
    WRITES_OFF_UI_ONLY,
    age,
    anomaly_rows,
    overview_row,
    parse_api_time,
    pipeline_status,
    progress,
    runs_query,
    runs_shown,
    save_outcome,
    writes_refused,
)

# --- what the tables show -------------------------------------------------------------------

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def state(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "cpu",
        "model": 3,
        "model_stale": False,
        "model_created": "2026-03-01T09:00:00+00:00",
        "series_count": 12,
        "next_run": {"train": None, "infer": "2026-03-01T12:00:40+00:00"},
        "last_runs": {
            "train": {"status": "ok", "finished": "2026-03-01T09:00:00+00:00"},
            "infer": {"status": "ok", "finished": "2026-03-01T11:59:00+00:00"},
        },
    }
    return base | changes


def test_overview_rows_have_the_promised_columns_and_texts() -> None:
    row = overview_row(state(), 5, NOW)
    assert tuple(row) == OVERVIEW_COLUMNS
    assert row == {
        "Pipeline": "cpu",
        "Status": "ok",
        "Last train": "ok, 3h ago",
        "Last infer": "ok, 1m ago",
        "Series": "12",
        "Anomalies (24 h)": "5",
        "Model age": "3h",
        "Next infer": "in 40s",
    }
    assert overview_row(state(), None, NOW)["Anomalies (24 h)"] == "?"


def test_pipeline_status() -> None:
    failed = {"status": "failed", "error": "boom"}
    assert pipeline_status(state()) == "ok"
    assert (
        pipeline_status(state(model=None, last_runs={"train": None, "infer": None}))
        == "never trained"
    )
    assert (
        pipeline_status(state(model=None, last_runs={"train": {"status": "running"}})) == "training"
    )
    assert pipeline_status(state(last_runs={"train": None, "infer": failed})) == "failing"
    assert pipeline_status(state(model_stale=True)) == "stale model"
    assert pipeline_status({"name": "old-daemon", "model": None}) == "never trained"
    interrupted = {"status": "interrupted", "error": "the daemon stopped before it ended"}
    assert pipeline_status(state(last_runs={"train": interrupted, "infer": None})) == "interrupted"
    assert pipeline_status(state(last_runs={"train": interrupted, "infer": failed})) == "failing"
    assert overview_row(state(last_runs={"train": interrupted}), 0, NOW)["Last train"] == (
        "interrupted"
    )


def test_anomaly_rows_are_formatted_and_ranked() -> None:
    anomalies = [
        {
            "labels": {"b": "2", "a": "1"},
            "ds": "2026-03-01T10:05:00Z",
            "y": 9.5,
            "yhat": 3.25,
            "yhat_lower": 1.0,
            "yhat_upper": 5.5,
            "score": 2.345,
        },
        {
            "labels": {},
            "ds": "2026-03-01T11:00:00+00:00",
            "y": None,
            "yhat": 1,
            "yhat_lower": 0,
            "yhat_upper": 2,
            "score": 7,
        },
    ]
    rows = anomaly_rows(anomalies, limit=50)
    assert tuple(rows[0]) == ANOMALY_COLUMNS
    assert rows[1] == {
        "Series": '{a="1", b="2"}',
        "Time (UTC)": "2026-03-01 10:05",
        "Value": "9.5",
        "Forecast": "3.25",
        "Band": "1 – 5.5",
        "Score": "2.35",
    }
    assert (rows[0]["Score"], rows[0]["Value"]) == ("7.00", "—")
    assert len(anomaly_rows(anomalies * 40, limit=50)) == 50


def test_ages_and_progress() -> None:
    assert [age(timedelta(seconds=s)) for s in (0, 45, 725, 11_520, 190_000)] == [
        "0s",
        "45s",
        "12m 5s",
        "3h 12m",
        "2d 4h",
    ]
    assert progress({"status": "running", "progress": {"done": 3, "total": 12}}) == (
        0.25,
        "Fitting models: 3/12",
    )
    # No total yet: the daemon is still reading the series, not fitting 0 of 0 models.
    assert progress({"status": "running", "progress": {"done": 0, "total": 0}}) == (
        0.0,
        "Reading the TSDB…",
    )
    assert progress({"status": "running"}) == (0.0, READING_TSDB)
    assert progress({"status": "queued"})[1].startswith("Queued")


# --- playground text ------------------------------------------------------------------------


def problems_of(text: str, tmp_path: Path) -> tuple[list[str], list[Problem]]:
    path = tmp_path / "playground.yaml"
    path.write_text(text)
    loaded = load_pipeline_paths([path], model_catalog)
    return [p.pipeline.name for p in loaded.pipelines], list(loaded.problems)


def test_the_template_and_model_b_are_valid_pipelines(tmp_path: Path) -> None:
    assert problems_of(TEMPLATE, tmp_path) == (["my-pipeline"], [])
    swapped = with_model(TEMPLATE, MODEL_B_DEFAULT)
    assert yaml.safe_load(swapped)["model"] == {
        "engine": "statsforecast",
        "name": "AutoETS",
        "params": {"season_length": "1d"},
    }
    assert yaml.safe_load(swapped)["query"] == yaml.safe_load(TEMPLATE)["query"]
    assert problems_of(swapped, tmp_path) == (["my-pipeline"], [])
    facts = outline(TEMPLATE, "my-pipeline")
    assert (facts.prefix, facts.step, facts.model) == (
        "anomaly",
        timedelta(hours=1),
        "statsforecast MSTL",
    )


def test_model_b_goes_into_the_chosen_pipeline_of_a_list() -> None:
    text = "pipelines:\n  - {name: a, query: up}\n  - {name: b, query: up, output: {prefix: bb}}\n"
    swapped = yaml.safe_load(with_model(text, "engine: statsforecast\nname: Naive\n", "b"))
    assert swapped == {
        "name": "b",
        "query": "up",
        "output": {"prefix": "bb"},
        "model": {"engine": "statsforecast", "name": "Naive"},
    }
    assert outline(text, "b").prefix == "bb"
    with pytest.raises(InvalidModelSection, match="several pipelines"):
        with_model(text, MODEL_B_DEFAULT)
    with pytest.raises(InvalidModelSection, match="not YAML"):
        with_model(TEMPLATE, "model: [")
    with pytest.raises(InvalidModelSection, match="model:"):
        with_model(TEMPLATE, "- 1")


def test_pipeline_file_saves_the_chosen_pipeline_alone(tmp_path: Path) -> None:
    assert pipeline_file(TEMPLATE, "my-pipeline") == TEMPLATE  # one pipeline: as typed
    one = "pipelines:\n  - {name: a, query: up}  # kept\n"
    assert pipeline_file(one, "a") == one
    several = (
        "pipelines:\n"
        "  - {name: a, query: up, step: 5m}\n"
        "  - name: b\n"
        "    query: sum(rate(x[5m]))\n"
        "    model: {engine: statsforecast, name: Naive}\n"
    )
    saved = pipeline_file(several, "b")
    assert saved == (
        "name: b\nquery: sum(rate(x[5m]))\nmodel:\n  engine: statsforecast\n  name: Naive\n"
    )
    assert problems_of(saved, tmp_path) == (["b"], [])  # a file the daemon can save as b.yaml
    assert problems_of(pipeline_file(several, "a"), tmp_path) == (["a"], [])
    with pytest.raises(InvalidModelSection, match="no pipeline named 'c'"):
        pipeline_file(several, "c")


# --- saving and changes ----------------------------------------------------------------------


def test_a_save_the_daemon_could_not_load_is_said_as_such() -> None:
    loaded = {"file": "/p/cpu.yaml", "pipeline": "cpu", "loaded": True}
    assert save_outcome(loaded, "cpu") == (
        True,
        "Saved /p/cpu.yaml; the daemon loaded pipeline cpu.",
    )
    assert save_outcome({"file": "/p/cpu.yaml", "pipeline": "cpu"}, "cpu")[0]  # older daemon
    pending = {"file": "/p/cpu.yaml", "pipeline": "cpu", "loaded": False, "reason": "busy"}
    assert save_outcome(pending, "cpu") == (
        False,
        "Saved /p/cpu.yaml, but the daemon has not loaded pipeline cpu: busy",
    )
    assert save_outcome({"file": "f", "loaded": False}, "cpu")[1].endswith(
        "pipeline cpu: no reason given"
    )


@pytest.mark.parametrize(
    ("ui_token", "writes_enabled", "said"),
    [
        (True, True, None),
        (False, False, "neither"),
        (True, False, WRITES_OFF_UI_ONLY),
        (False, True, WRITES_OFF_DAEMON_ONLY),
        (True, None, None),  # the daemon did not say: a wrong token shows on the click
        (False, None, "neither"),
    ],
)
def test_changes_are_off_when_either_side_lacks_the_token(
    ui_token: bool, writes_enabled: bool | None, said: str | None
) -> None:
    assert writes_refused(ui_token, writes_enabled, "neither") == said


def test_the_token_texts_say_which_side_lacks_it() -> None:
    assert WRITES_OFF_UI_ONLY.startswith("The UI has an API token but the daemon has none")
    assert WRITES_OFF_DAEMON_ONLY.startswith("The daemon has an http.api_token but the UI has none")


# --- runs -------------------------------------------------------------------------------------


def test_runs_are_filtered_by_the_daemon_where_it_can() -> None:
    assert RUN_STATUSES == (ALL, "ok", "failed", "running")
    assert runs_query(ALL, ALL) == {"kind": None, "failed": False, "limit": 1000}
    assert runs_query("train", "failed") == {"kind": "train", "failed": True, "limit": 1000}
    assert runs_query("infer", "ok") == {"kind": "infer", "failed": False, "limit": 1000}
    runs = [
        {"id": 1, "status": "ok"},
        {"id": 2, "status": "running"},
        {"id": 3, "status": "failed"},
        {"id": 4, "status": "interrupted"},
    ]
    assert [r["id"] for r in runs_shown(runs, "ok")] == [1]
    assert [r["id"] for r in runs_shown(runs, "running")] == [2]
    # "failed" came from the daemon as failed or interrupted: nothing is dropped or renamed.
    assert [(r["id"], r["status"]) for r in runs_shown(runs[2:], "failed")] == [
        (3, "failed"),
        (4, "interrupted"),
    ]
    assert runs_shown(runs, ALL) == runs


def test_api_times_are_utc() -> None:
    assert parse_api_time("2026-03-01T10:05:00") == datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
    assert parse_api_time("2026-03-01T11:05:00+01:00") == datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
    assert parse_api_time(None) is None
    assert parse_api_time("soon") is None


def test_models_and_runs_summaries_say_what_the_grids_hold() -> None:
    from openanomaly.ui.present import models_summary, runs_summary

    models = [
        {"pipeline": "web", "version": 2, "status": "active", "series_count": 3},
        {"pipeline": "web", "version": 1, "status": "retired", "series_count": 3},
        {"pipeline": "cpu", "version": 4, "status": "active", "series_count": 12},
    ]
    assert (
        models_summary(models) == "3 model versions; active: cpu v4 (12 series), web v2 (3 series)"
    )
    assert models_summary(models[1:2]) == "1 model version; active: none"
    runs = [{"status": s} for s in ("ok", "running", "ok", "interrupted", "failed", "ok")]
    assert runs_summary(runs) == "6 runs: 3 ok, 1 failed, 1 interrupted, 1 running"
    assert runs_summary(runs[:1]) == "1 run: 1 ok"
