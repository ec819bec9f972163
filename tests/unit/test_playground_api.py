"""The playground's side of the daemon: saving pipeline files, the backtest queue, and the HTTP
endpoints (validate, backtest, save) as the web UI calls them, with data from a CSV file."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from openanomaly.adapters.metrics_reader.csv_file import CsvReader
from openanomaly.adapters.model_engine.catalogs import model_catalog
from openanomaly.adapters.model_engine.statsforecast import StatsForecastEngine
from openanomaly.adapters.pipeline_source.directory import DirectoryPipelineSource
from openanomaly.bootstrap import build, build_dispatch
from openanomaly.config.pipeline import Pipeline
from openanomaly.config.pipeline_loader import parse_pipeline_text
from openanomaly.config.settings import Settings
from openanomaly.daemon.backtests import Backtests, BacktestsBusy, result_json, series_json
from openanomaly.daemon.http import create_api
from openanomaly.daemon.metrics import DaemonMetrics
from openanomaly.daemon.service import Daemon
from openanomaly.errors import PipelineConflict, PipelineRejected, TSDBUnavailable

STEP = timedelta(minutes=5)
END = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SPIKE = END - timedelta(hours=2)
TOKEN = "s3cret-token"
PIPELINE_YAML = """\
name: web
query: demo_requests
step: 5m
train: {window: 1d, every: 12h}
infer: {context: 4h}
model: {name: AutoETS, params: {season_length: 12}}
scoring: {holdoff: 0s}
"""


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two days of two series at 5m: a 1-hour wave plus N(0, 1) noise; +12 on `b` at SPIKE."""
    stamps = pd.date_range(end=END, periods=2 * 288, freq="5min")
    rng = np.random.default_rng(3)
    rows = []
    for k, name in enumerate(("a", "b")):
        y = 40 + 10 * k + 4 * np.sin(2 * np.pi * np.arange(len(stamps)) / 12)
        y += rng.normal(0, 1, len(stamps))
        if name == "b":
            y[stamps.get_loc(pd.Timestamp(SPIKE))] += 12
        rows.append(pd.DataFrame({"timestamp": stamps, "series": name, "value": y}))
    path = tmp_path_factory.mktemp("csv") / "data.csv"
    frame = pd.concat(rows)
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.to_csv(path, index=False)
    return path


def wait_until(check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


# --- saving pipeline files -----------------------------------------------------------------------


def test_save_writes_one_valid_file_atomically_and_refuses_what_it_should(tmp_path: Path) -> None:
    source = DirectoryPipelineSource(tmp_path, model_catalog)
    where = Path(source.save("web", PIPELINE_YAML, overwrite=False))
    assert where == tmp_path / "web.yaml"
    assert where.read_text() == PIPELINE_YAML
    assert where.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["web.yaml"]  # no temp file left behind
    assert [p.pipeline.name for p in source.load().pipelines] == ["web"]

    with pytest.raises(PipelineConflict, match="exists"):
        source.save("web", PIPELINE_YAML, overwrite=False)
    changed = PIPELINE_YAML.replace("every: 12h", "every: 6h")
    source.save("web", changed, overwrite=True)
    assert "every: 6h" in where.read_text()

    with pytest.raises(PipelineRejected) as wrong_name:
        source.save("api", PIPELINE_YAML, overwrite=False)
    assert "defines web" in str(wrong_name.value)
    with pytest.raises(PipelineRejected) as invalid:
        source.save("web", PIPELINE_YAML.replace("step: 5m", "step: 5 minutes"), overwrite=True)
    assert invalid.value.problems[0].where == str(where)
    assert invalid.value.problems[0].field == "step"
    assert "every: 6h" in where.read_text()  # the good file is untouched

    (tmp_path / "other.yml").write_text(PIPELINE_YAML.replace("name: web", "name: api"))
    with pytest.raises(PipelineConflict, match=r"other\.yml:1 already defines 'api'"):
        source.save("api", PIPELINE_YAML.replace("name: web", "name: api"), overwrite=True)


def test_saving_works_where_the_file_system_has_no_hard_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    def no_links(*args: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    source = DirectoryPipelineSource(tmp_path, model_catalog)
    source.save("web", PIPELINE_YAML, overwrite=False)
    assert (tmp_path / "web.yaml").read_text() == PIPELINE_YAML
    with pytest.raises(PipelineConflict, match="exists"):
        source.save("web", PIPELINE_YAML, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web.yaml"]


# --- the backtest queue --------------------------------------------------------------------------


def pipeline() -> Pipeline:
    loaded, problems = parse_pipeline_text(PIPELINE_YAML, "t.yaml", model_catalog)
    assert not problems
    return loaded[0].pipeline


def test_a_backtest_finds_the_spike_and_reports_it_worst_first(csv_data: Path) -> None:
    backtests = Backtests(CsvReader(csv_data), lambda _: StatsForecastEngine())
    try:
        run = backtests.submit(pipeline(), END - timedelta(hours=6), END)
        wait_until(lambda: not run.active)
    finally:
        backtests.close()
    assert run.status == "done", run.error
    assert run.done == run.total > 0
    assert run.result is not None
    data = run.view  # computed once, when it finished
    assert data is not None
    assert data == result_json(run.result, data["summary"]["seconds"])
    summary = data["summary"]
    assert summary["series"] == 2
    assert summary["points"] == 2 * (6 * 12 + 1)
    assert summary["fits"] == run.result.fits >= 1
    assert summary["anomalies"] == len(data["anomalies"]) >= 1
    assert 0 < summary["mae"] < 5
    assert 0.5 < summary["coverage"] <= 1
    top = data["anomalies"][0]
    assert top["labels"] == {"series": "b"}
    assert top["ds"] == SPIKE.isoformat()
    assert top["score"] > 1
    assert data["series"][0]["labels"] == {"series": "b"}  # worst first
    assert data["series"][0]["max_score"] == top["score"]

    points = series_json(run.result, data["series"][0]["id"])
    assert points is not None
    assert len(points["points"]["ds"]) == 6 * 12 + 1
    assert set(points["points"]) == {"ds", "y", "yhat", "yhat_lower", "yhat_upper", "score"}
    assert series_json(run.result, "no-such-series") is None


class BlockingReader:
    """A reader that waits for `release` (to hold a backtest in the running state)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.entered = threading.Event()

    def query_range(self, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        assert self.release.wait(30)
        return self.inner.query_range(*args, **kwargs)

    def close(self) -> None:
        pass


def test_backtests_queue_one_at_a_time_refuse_a_flood_and_cancel(csv_data: Path) -> None:
    reader = BlockingReader(CsvReader(csv_data))
    backtests = Backtests(reader, lambda _: StatsForecastEngine(), max_active=2)
    try:
        first = backtests.submit(pipeline(), END - timedelta(hours=6), END)
        assert reader.entered.wait(10)
        second = backtests.submit(pipeline(), END - timedelta(hours=6), END)
        assert (first.status, second.status) == ("running", "queued")
        with pytest.raises(BacktestsBusy, match="2 backtests are queued or running"):
            backtests.submit(pipeline(), END - timedelta(hours=6), END)
        assert backtests.cancel(second.id) is second
        assert second.status == "cancelled"  # at once: it never started
        backtests.cancel(first.id)
        reader.release.set()
        wait_until(lambda: not first.active)
        assert first.status == "cancelled"  # stopped at its first fit
        assert first.result is None
        assert [r.id for r in backtests.all()] == [second.id, first.id]
    finally:
        reader.release.set()
        backtests.close()


def test_a_backtest_whose_tsdb_is_down_fails_with_the_reason() -> None:
    class DownReader:
        def query_range(self, *args: Any, **kwargs: Any) -> Any:
            raise TSDBUnavailable("connection refused by 127.0.0.1:9")

    backtests = Backtests(DownReader(), lambda _: StatsForecastEngine())  # type: ignore[arg-type]
    try:
        run = backtests.submit(pipeline(), END - timedelta(hours=6), END)
        wait_until(lambda: not run.active)
    finally:
        backtests.close()
    assert run.status == "failed"
    assert run.error == "connection refused by 127.0.0.1:9"


# --- the endpoints -------------------------------------------------------------------------------


def api_client(tmp_path: Path, csv_data: Path, token: str | None) -> Iterator[TestClient]:
    (tmp_path / "pipelines.d").mkdir()
    settings = Settings.model_validate(
        {
            "pipelines_dir": str(tmp_path / "pipelines.d"),
            "storage": {"data_dir": str(tmp_path / "data")},
            "http": {"api_token": token},
        }
    )
    app = dataclasses.replace(build(settings), reader=CsvReader(csv_data))
    dispatch = build_dispatch(app)
    daemon = Daemon(app, dispatch.dispatcher, DaemonMetrics(), runner=dispatch.runner)
    try:
        with TestClient(create_api(daemon)) as client:
            yield client
    finally:
        daemon.backtests.close()
        dispatch.dispatcher.shutdown(1)
        app.close(1)


@pytest.fixture
def client(tmp_path: Path, csv_data: Path) -> Iterator[TestClient]:
    yield from api_client(tmp_path, csv_data, TOKEN)


@pytest.fixture
def open_client(tmp_path: Path, csv_data: Path) -> Iterator[TestClient]:
    yield from api_client(tmp_path, csv_data, None)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_validate_answers_with_the_validators_own_messages(client: TestClient) -> None:
    broken = PIPELINE_YAML.replace("step: 5m", "step: 5 minutes") + "colour: blue\n"
    response = client.post("/api/v1/validate", json={"yaml": broken}, headers=AUTH)
    assert response.status_code == 200
    _, expected = parse_pipeline_text(broken, "playground.yaml", model_catalog)
    assert [p["message"] for p in response.json()["problems"]] == [str(p) for p in expected]
    assert {p["field"] for p in response.json()["problems"]} == {"step", "colour"}
    assert response.json()["pipelines"] == []

    good = client.post("/api/v1/validate", json={"yaml": PIPELINE_YAML}, headers=AUTH).json()
    assert good == {"pipelines": ["web"], "problems": []}
    assert client.post("/api/v1/validate", json={"yaml": PIPELINE_YAML}).status_code == 401


def test_a_backtest_over_the_api_runs_reports_progress_and_finds_the_spike(
    client: TestClient,
) -> None:
    body = {
        "yaml": PIPELINE_YAML,
        "start": (END - timedelta(hours=6)).isoformat(),
        "end": END.isoformat(),
    }
    started = client.post("/api/v1/backtests", json=body, headers=AUTH)
    assert started.status_code == 202, started.text
    run_id = started.json()["id"]
    assert started.json()["status"] in ("queued", "running")

    def finished() -> dict[str, Any] | None:
        data = client.get(f"/api/v1/backtests/{run_id}").json()
        return data if data["status"] not in ("queued", "running") else None

    done = wait_until(finished)
    assert done["status"] == "done", done["error"]
    assert done["progress"]["done"] == done["progress"]["total"] > 0
    assert done["anomalies"][0]["ds"] == SPIKE.isoformat()
    assert done["anomalies"][0]["labels"] == {"series": "b"}
    worst = done["series"][0]["id"]
    points = client.get(f"/api/v1/backtests/{run_id}/series", params={"id": worst}).json()
    assert SPIKE.isoformat() in points["points"]["ds"]
    listed = client.get("/api/v1/backtests").json()["backtests"]
    assert [b["id"] for b in listed] == [run_id]
    assert "anomalies" not in listed[0]
    assert client.get("/api/v1/backtests/nope").status_code == 404


def test_a_backtest_request_with_bad_input_names_the_problem(client: TestClient) -> None:
    def problems(body: dict[str, Any]) -> list[str]:
        response = client.post("/api/v1/backtests", json=body, headers=AUTH)
        assert response.status_code == 422, response.text
        return [p["message"] for p in response.json()["detail"]["problems"]]

    assert problems({"yaml": "name: x\n"}) == ["playground.yaml:1: query: required key is missing"]
    assert problems({"yaml": PIPELINE_YAML, "start": "soon"}) == [
        "start: 'soon' is not a time: use ISO 8601, Unix seconds, or a duration ago (7d)"
    ]
    assert "is not before end" in problems({"yaml": PIPELINE_YAML, "start": "1h", "end": "2h"})[0]
    two = f"pipelines:\n  - {PIPELINE_YAML.replace(chr(10), chr(10) + '    ')}"
    two += f"\n  - {PIPELINE_YAML.replace('name: web', 'name: api').replace(chr(10), chr(10) + '    ')}"
    assert "defines 2 pipelines" in problems({"yaml": two})[0]
    assert "no pipeline named 'zzz'" in problems({"yaml": two, "pipeline": "zzz"})[0]
    assert problems({"yaml": PIPELINE_YAML, "start": "400d"}) == [
        "start: 115,200 steps of 5m is more than the 100,000 a backtest may score; "
        "shorten the range"
    ]
    every_minute = PIPELINE_YAML.replace("every: 12h", "every: 1h")
    assert problems({"yaml": every_minute, "start": "50d"}) == [
        "start: 1,200 refits (train.every 1h) is more than the 1,000 a backtest may do; "
        "shorten the range or refit less often"
    ]


def test_saving_over_the_api_writes_the_file_and_the_daemon_loads_it(
    client: TestClient, tmp_path: Path
) -> None:
    body = {"yaml": PIPELINE_YAML}
    assert client.put("/api/v1/pipelines/web", json=body).status_code == 401
    saved = client.put("/api/v1/pipelines/web", json=body, headers=AUTH)
    assert saved.status_code == 201, saved.text
    assert saved.json() == {
        "file": str(tmp_path / "pipelines.d" / "web.yaml"),
        "pipeline": "web",
        "loaded": True,
    }
    state = client.get("/api/v1/pipelines/web").json()
    assert state["source"] == f"{tmp_path / 'pipelines.d' / 'web.yaml'}:1"
    assert state["last_runs"] == {"train": None, "infer": None}
    assert state["model"] is None

    again = client.put("/api/v1/pipelines/web", json=body, headers=AUTH)
    assert again.status_code == 409
    assert "exists" in again.json()["detail"]
    mismatch = client.put("/api/v1/pipelines/api", json=body, headers=AUTH)
    assert mismatch.status_code == 422
    assert "defines web" in mismatch.json()["detail"]["problems"][0]["reason"]


def test_without_a_token_changes_are_off_and_side_effect_free_calls_stay_open(
    open_client: TestClient,
) -> None:
    assert open_client.get("/api/v1/info").json()["writes_enabled"] is False
    refused = open_client.put("/api/v1/pipelines/web", json={"yaml": PIPELINE_YAML})
    assert refused.status_code == 403
    assert "http.api_token" in refused.json()["detail"]
    assert open_client.post("/api/v1/pipelines/web/train").status_code == 403
    validated = open_client.post("/api/v1/validate", json={"yaml": PIPELINE_YAML})
    assert validated.json()["pipelines"] == ["web"]
    body = {"yaml": PIPELINE_YAML, "start": "2026-11-20T06:00:00Z", "end": "2026-11-20T12:00:00Z"}
    started = open_client.post("/api/v1/backtests", json=body)
    assert started.status_code == 202
    cancelled = open_client.delete(f"/api/v1/backtests/{started.json()['id']}")
    assert cancelled.status_code == 200


def test_results_beyond_the_point_budget_go_least_recently_used_first_but_not_recent_ones(
    csv_data: Path,
) -> None:
    one_run_points = 2 * (6 * 12 + 1)

    def run_one(backtests: Backtests) -> Any:
        run = backtests.submit(pipeline(), END - timedelta(hours=6), END)
        wait_until(lambda: not run.active)
        assert run.status == "done", run.error
        time.sleep(0.01)  # distinct monotonic times
        return run

    room_for_two = Backtests(
        CsvReader(csv_data),
        lambda _: StatsForecastEngine(),
        keep_points=2 * one_run_points + 1,
        recent=0,
    )
    try:
        a, b = run_one(room_for_two), run_one(room_for_two)
        assert room_for_two.get(a.id) is a  # read after b finished: b is now the stalest
        c = run_one(room_for_two)
    finally:
        room_for_two.close()
    assert [r.id for r in room_for_two.all()] == [c.id, a.id]
    assert room_for_two.get(b.id) is None

    protective = Backtests(
        CsvReader(csv_data), lambda _: StatsForecastEngine(), keep_points=one_run_points + 1
    )
    try:
        runs = [run_one(protective) for _ in range(3)]
    finally:
        protective.close()
    # Touched in the last 10 minutes, all stay over the budget: the two runs of a comparison,
    # a result on someone's screen.
    assert [r.id for r in protective.all()] == [r.id for r in reversed(runs)]


def test_text_from_the_api_cannot_import_a_module_no_loaded_pipeline_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking a custom engine imports its module: text from a caller must not get that far."""
    marker = tmp_path / "imported"
    package = tmp_path / "code"
    package.mkdir()
    (package / "oa_side_effect.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Engine: pass\n"
    )
    monkeypatch.syspath_prepend(str(package))
    source = DirectoryPipelineSource(tmp_path / "pipelines.d", model_catalog)
    custom = PIPELINE_YAML + "model: {engine: 'oa_side_effect:Engine', name: X}\n"
    custom = custom.replace("model: {name: AutoETS, params: {season_length: 12}}\n", "")
    parsed = source.parse(custom, "playground.yaml")
    assert not marker.exists()
    assert [(p.field, p.reason.split(";")[0]) for p in parsed.problems] == [
        (
            "model.engine",
            "'oa_side_effect:Engine' is neither a built-in engine (mlforecast, neuralforecast, "
            "statsforecast) nor one a loaded pipeline uses",
        )
    ]
    with pytest.raises(PipelineRejected):
        source.save("web", custom, overwrite=False)
    assert not marker.exists()
    assert not (tmp_path / "pipelines.d" / "web.yaml").exists()


def test_text_from_the_api_may_use_a_custom_engine_a_loaded_pipeline_uses(tmp_path: Path) -> None:
    engine = "tests.fixtures.custom_engine:GoodEngine"
    installed = PIPELINE_YAML.replace(
        "model: {name: AutoETS, params: {season_length: 12}}",
        f"model: {{engine: '{engine}', name: Mine}}",
    )
    source = DirectoryPipelineSource(tmp_path, model_catalog)
    offered = installed.replace("name: web", "name: web2")
    refused = source.parse(offered, "playground.yaml").problems
    assert [p.field for p in refused] == ["model.engine"]  # nothing uses it yet
    (tmp_path / "ops.yaml").write_text(installed)
    assert [p.pipeline.name for p in source.load().pipelines] == ["web"]
    parsed = source.parse(offered, "playground.yaml")
    assert parsed.problems == []
    assert [p.pipeline.model.engine for p in parsed.pipelines] == [engine]


def test_a_backtest_reads_at_most_ten_million_points() -> None:
    from openanomaly.daemon.backtests import MAX_POINTS_READ, series_cap

    short = pipeline()  # step 5m, train.window 1d, infer.context 4h
    assert series_cap(short, END - timedelta(hours=6), END) == short.limits.max_series
    # 60 days + 1 day + 4 hours at 5m = 17,616 steps per series
    steps = (timedelta(days=61, hours=4)) / short.step
    assert series_cap(short, END - timedelta(days=60), END) == int(MAX_POINTS_READ // steps)
    assert series_cap(short, END - timedelta(days=60), END) == 567
