"""The web UI's plain-Python parts: charts, alert rules, the API client, the TSDB joining, the
label filter, what the tables show, and `openanomaly ui` itself (without a browser)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from openanomaly.adapters.metrics_reader.assemble import assemble
from openanomaly.config.pipeline import NAME_PATTERN
from openanomaly.domain.labels import escape_label_value, output_series_labels
from openanomaly.domain.series import SeriesFrame, series_id
from openanomaly.errors import Problem, TSDBQueryError, TSDBUnavailable
from openanomaly.ui.client import ApiClient
from openanomaly.ui.errors import (
    ApiError,
    DaemonUnreachable,
    InvalidLabelFilter,
    TsdbQueryRefused,
    TsdbUnavailable,
)
from openanomaly.ui.launch import api_url_from_listen, parse_script_args, script_args
from openanomaly.ui.matchers import LabelFilter, parse_label_filter
from openanomaly.ui.present import (
    problem_line,
)
from openanomaly.ui.rules import alert_rule
from openanomaly.ui.tsdb import PipelineFacts, TsdbReads, join_series, view_anomalies
from tests.conftest import require_executable, require_module

ROOT = Path(__file__).resolve().parents[2]
T0 = pd.Timestamp("2026-03-01 12:00", tz="UTC")


def anomaly_figure(frame: pd.DataFrame, title: str) -> Any:
    """The chart needs plotly (the `ui` extra): skipped without it, failed under CI."""
    require_module("plotly", "the ui extra: uv sync --extra ui")
    from openanomaly.ui.charts import anomaly_figure as draw

    return draw(frame, title)


def points(scores: list[float], y: list[float] | None = None) -> pd.DataFrame:
    n = len(scores)
    return pd.DataFrame(
        {
            "ds": pd.date_range(T0, periods=n, freq="5min"),
            "y": y if y is not None else [10.0 + i for i in range(n)],
            "yhat": [10.0] * n,
            "yhat_lower": [8.0] * n,
            "yhat_upper": [12.0] * n,
            "score": scores,
        }
    )


# --- charts ---------------------------------------------------------------------------------


def test_the_chart_draws_band_forecast_actual_anomalies_and_score_on_a_second_axis() -> None:
    figure = anomaly_figure(points([0.1, 0.5, 2.0]), "cpu")
    traces = {trace.name: trace for trace in figure.data}
    assert set(traces) >= {"band (lower)", "band", "forecast", "actual", "score"}
    assert traces["band"].fill == "tonexty"  # filled down to the lower edge drawn before it
    names = [t.name for t in figure.data]
    assert names.index("band (lower)") == names.index("band") - 1
    assert traces["score"].yaxis == "y2"
    assert traces["actual"].yaxis == "y"
    assert traces["score"].line.dash == "dot"
    assert figure.layout.yaxis2.overlaying == "y"
    lines = [s for s in figure.layout.shapes if s.yref == "y2"]
    assert [(s.y0, s.y1) for s in lines] == [(1, 1)]
    assert figure.layout.title.text == "cpu"


def test_anomaly_markers_sit_on_the_actual_values_scoring_over_1_only() -> None:
    frame = points([0.5, 1.0, 1.5, math.nan, 3.0, 2.0], y=[1, 2, 3, 4, 5, math.nan])
    figure = anomaly_figure(frame, "x")
    markers = next(t for t in figure.data if t.name.startswith("anomaly"))
    assert markers.mode == "markers"
    # 1.0 is the band edge, not an anomaly; NaN is unknown; the last one has no value to mark.
    assert list(markers.y) == [3.0, 5.0]
    assert list(markers.customdata) == [1.5, 3.0]
    assert markers.marker.color == "#d62728"


def test_nan_stays_a_gap_and_times_are_drawn_in_utc() -> None:
    frame = points([0.2, math.nan], y=[math.nan, 4.0])
    frame["ds"] = frame["ds"].dt.tz_convert("Europe/Berlin")
    figure = anomaly_figure(frame, "x")
    actual = next(t for t in figure.data if t.name == "actual")
    assert math.isnan(actual.y[0])
    assert actual.y[1] == 4.0
    assert pd.Timestamp(actual.x[0]) == pd.Timestamp("2026-03-01 12:00")  # naive UTC


def test_empty_and_partial_frames_still_draw() -> None:
    empty = anomaly_figure(pd.DataFrame({"ds": []}), "nothing")
    assert any("No data" in a.text for a in empty.layout.annotations)
    assert all(len(t.x) == 0 for t in empty.data)
    actual_only = anomaly_figure(pd.DataFrame({"ds": [T0], "y": [1.0]}), "y only")
    forecast = next(t for t in actual_only.data if t.name == "forecast")
    assert math.isnan(forecast.y[0])
    assert not actual_only.layout.annotations


# --- alert rules ----------------------------------------------------------------------------


def _only_rule(text: str) -> dict[str, Any]:
    groups = yaml.safe_load(text)["groups"]
    assert len(groups) == 1
    assert len(groups[0]["rules"]) == 1
    rule: dict[str, Any] = groups[0]["rules"][0]
    return rule


def test_the_alert_rule_is_the_deploy_rule_narrowed_to_the_pipeline() -> None:
    text = alert_rule("node-cpu", "anomaly")
    rule = _only_rule(text)
    assert rule["expr"] == 'last_over_time(anomaly_score{pipeline="node-cpu"}[10m]) >= 1'
    assert rule["for"] == "5m"
    deploy = yaml.safe_load((ROOT / "deploy/rules/openanomaly.rules.yml").read_text())
    shipped = next(
        r for g in deploy["groups"] for r in g["rules"] if r.get("alert") == "AnomalyDetected"
    )
    assert rule["alert"] == shipped["alert"]
    assert rule["labels"] == shipped["labels"]
    assert rule["for"] == shipped["for"]
    assert rule["annotations"]["summary"] == shipped["annotations"]["summary"]
    assert shipped["expr"].replace("anomaly_score", "X") == rule["expr"].replace(
        'anomaly_score{pipeline="node-cpu"}', "X"
    )
    assert "{{ $value" in rule["annotations"]["description"]
    assert yaml.safe_load(text)["groups"][0]["name"] == "openanomaly-node-cpu"


def test_the_alert_rule_uses_the_prefix_and_any_name_a_pipeline_can_have() -> None:
    # NAME_PATTERN ([a-z0-9_-]+) allows names YAML or PromQL could misread if pasted bare.
    for name in ("0-9_x", "-", "1e3", "null"):
        assert re.fullmatch(NAME_PATTERN, name)
        text = alert_rule(name, "http_anomaly")
        rule = _only_rule(text)
        assert rule["expr"] == f'last_over_time(http_anomaly_score{{pipeline="{name}"}}[10m]) >= 1'
        assert yaml.safe_load(text)["groups"][0]["name"] == f"openanomaly-{name}"


def test_coarse_steps_widen_the_window_and_the_hold() -> None:
    rule = _only_rule(alert_rule("slow", "anomaly", timedelta(minutes=15)))
    assert rule["expr"].endswith("[30m]) >= 1")
    assert rule["for"] == "30m"
    assert "at least 30m" in rule["annotations"]["description"]
    fine = _only_rule(alert_rule("fast", "anomaly", timedelta(minutes=1)))
    assert (fine["for"], fine["expr"].endswith("[10m]) >= 1")) == ("5m", True)


def test_promtool_accepts_the_alert_rule(tmp_path: Path) -> None:
    promtool = require_executable("promtool", "prometheus")
    path = tmp_path / "rule.yml"
    path.write_text(alert_rule("odd-name_1", "anomaly", timedelta(minutes=10)))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rules found" in result.stdout


# --- API client -----------------------------------------------------------------------------


class Recorder:
    def __init__(self, answer: httpx.Response | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer or httpx.Response(200, json={"ok": True, "runs": [], "models": []})


def client(recorder: Recorder, token: str | None = "s3cret") -> ApiClient:
    http = httpx.Client(transport=httpx.MockTransport(recorder))
    return ApiClient("http://daemon:8495/", token, http)


def test_each_method_calls_its_endpoint() -> None:
    recorder = Recorder()
    api = client(recorder)
    api.info()
    api.pipelines()
    api.pipeline("a/b")
    api.models("cpu")
    api.runs("cpu", kind="train", failed=True, limit=5)
    api.trigger("cpu", "train")
    api.validate("name: x", "playground.yaml")
    api.save_pipeline("cpu", "name: cpu", overwrite=True)
    api.start_backtest("name: x", "2d", "0s", pipeline="x")
    api.backtest("7")
    api.backtest_series("7", '{instance="a"}')
    api.cancel_backtest("7")
    seen = [(r.method, r.url.raw_path.decode()) for r in recorder.requests]
    assert seen == [
        ("GET", "/api/v1/info"),
        ("GET", "/api/v1/pipelines"),
        ("GET", "/api/v1/pipelines/a%2Fb"),  # a name never reaches another endpoint
        ("GET", "/api/v1/models?pipeline=cpu"),
        ("GET", "/api/v1/runs?failed=true&limit=5&pipeline=cpu&kind=train"),
        ("POST", "/api/v1/pipelines/cpu/train"),
        ("POST", "/api/v1/validate"),
        ("PUT", "/api/v1/pipelines/cpu"),
        ("POST", "/api/v1/backtests"),
        ("GET", "/api/v1/backtests/7"),
        ("GET", "/api/v1/backtests/7/series?id=%7Binstance%3D%22a%22%7D"),
        ("DELETE", "/api/v1/backtests/7"),
    ]
    bodies = {r.url.path: json.loads(r.content) for r in recorder.requests if r.content}
    assert bodies["/api/v1/validate"] == {"yaml": "name: x", "filename": "playground.yaml"}
    assert bodies["/api/v1/pipelines/cpu"] == {"yaml": "name: cpu", "overwrite": True}
    assert bodies["/api/v1/backtests"] == {
        "yaml": "name: x",
        "pipeline": "x",
        "start": "2d",
        "end": "0s",
    }
    assert all(r.headers["Authorization"] == "Bearer s3cret" for r in recorder.requests)


def test_without_a_token_no_authorization_header_is_sent() -> None:
    recorder = Recorder()
    api = client(recorder, token=None)
    api.pipelines()
    assert "Authorization" not in recorder.requests[0].headers
    assert not api.can_write
    with pytest.raises(ValueError, match="train or infer"):
        api.trigger("cpu", "delete")


def test_a_422_carries_the_located_problems() -> None:
    problems = [
        {"file": "playground.yaml", "line": 3, "field": "step", "reason": "'5' has no unit"},
        {"file": "playground.yaml", "line": 0, "field": "", "reason": "no pipeline"},
    ]
    api = client(Recorder(httpx.Response(422, json={"detail": {"problems": problems}})))
    with pytest.raises(ApiError) as caught:
        api.start_backtest("x", "2d", "0s")
    assert caught.value.status == 422
    assert caught.value.problems == [
        Problem("playground.yaml", 3, "step", "'5' has no unit"),
        Problem("playground.yaml", 0, "", "no pipeline"),
    ]
    assert problem_line(caught.value.problems[0]) == "playground.yaml:3: step: '5' has no unit"


@pytest.mark.parametrize(
    ("response", "status", "message"),
    [
        (
            httpx.Response(404, json={"detail": "no pipeline named 'x'"}),
            404,
            "no pipeline named 'x'",
        ),
        (httpx.Response(403, json={"detail": "set http.api_token"}), 403, "set http.api_token"),
        (
            httpx.Response(422, json={"detail": [{"loc": ["body", "yaml"], "msg": "missing"}]}),
            422,
            "body.yaml: missing",
        ),
        (httpx.Response(502, text="<html>bad gateway</html>"), 502, "<html>bad gateway</html>"),
        (httpx.Response(200, text="hello"), 200, "not a JSON object"),
    ],
)
def test_http_errors_become_api_errors(response: httpx.Response, status: int, message: str) -> None:
    with pytest.raises(ApiError) as caught:
        client(Recorder(response)).pipelines()
    assert caught.value.status == status
    assert message in caught.value.message
    assert caught.value.problems == []


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "Connection refused"),
        (httpx.ReadTimeout("timed out"), "no answer in time"),
    ],
)
def test_transport_failures_become_daemon_unreachable(error: Exception, reason: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise error

    api = ApiClient("http://daemon:8495", None, httpx.Client(transport=httpx.MockTransport(fail)))
    with pytest.raises(DaemonUnreachable) as caught:
        api.pipelines()
    assert caught.value.url == "http://daemon:8495"
    assert reason in caught.value.reason
    assert str(caught.value).startswith(
        "Cannot reach the OpenAnomaly daemon at http://daemon:8495: "
    )


def test_a_real_refused_connection_is_daemon_unreachable() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(DaemonUnreachable):
        ApiClient(f"http://127.0.0.1:{port}", None).info()


# --- TSDB: joining inputs and outputs -------------------------------------------------------

FACTS = PipelineFacts("cpu", "q", timedelta(minutes=1), "anomaly", {"team": "a"}, "MSTL")
TIMES = pd.date_range(T0, periods=3, freq="1min")


def frame(series: dict[str, tuple[dict[str, str], list[float]]]) -> SeriesFrame:
    rows = [
        (series_id(labels), ts, value)
        for labels, values in series.values()
        for ts, value in zip(TIMES, values, strict=True)
    ]
    return SeriesFrame(
        pd.DataFrame(rows, columns=["unique_id", "ds", "y"]),
        {series_id(labels): labels for labels, _ in series.values()},
    )


def outputs_of(inputs: list[dict[str, str]], model: str, score: list[float]) -> SeriesFrame:
    """What the writer writes for these inputs (labels built by the writer's own function)."""
    own = {"pipeline": "cpu", "model": model, "team": "a"}
    series = {}
    for labels in inputs:
        for kind, written in output_series_labels("anomaly", labels, own).items():
            values = score if kind == "score" else {"yhat": [5.0] * 3}.get(kind, [4.0] * 3)
            series[f"{series_id(labels)}{kind}"] = (dict(written), values)
    return frame(series)


def test_outputs_join_their_input_series_even_after_a_model_change() -> None:
    a = {"__name__": "node_load1", "instance": "a", "model": "theirs"}  # a clashing label
    b = {"__name__": "node_load1", "instance": "b"}
    actual = frame({"a": (a, [1.0, 2.0, 3.0]), "b": (b, [7.0, 7.0, 7.0])})
    outputs = outputs_of([a], "AutoETS", [0.5, 2.5, math.nan])  # written by an older model
    views = join_series(actual, outputs, FACTS, LabelFilter())
    assert [v.labels for v in views] == [a, b]  # worst first; b has no score at all
    first = views[0].points
    assert list(first.columns) == ["ds", "y", "yhat", "yhat_lower", "yhat_upper", "score"]
    assert first["y"].tolist() == [1.0, 2.0, 3.0]
    assert first["yhat"].tolist() == [5.0] * 3
    assert views[0].max_score == 2.5
    assert views[0].has_outputs
    assert not views[1].has_outputs
    assert math.isnan(views[1].max_score)
    [anomaly] = view_anomalies(views)
    assert (anomaly["labels"], anomaly["y"], anomaly["score"]) == (a, 2.0, 2.5)
    assert anomaly["ds"] == "2026-03-01T12:01:00+00:00"


def test_outputs_without_input_still_show_and_the_filter_applies_to_both() -> None:
    a = {"__name__": "up", "instance": "a"}
    gone = {"__name__": "up", "instance": "gone"}
    actual = frame({"a": (a, [1.0, 1.0, 1.0])})
    outputs = outputs_of([a, gone], "MSTL", [0.1, 0.1, 0.1])
    everything = join_series(actual, outputs, FACTS, LabelFilter())
    orphan = next(v for v in everything if v.labels.get("instance") == "gone")
    assert orphan.labels == {"instance": "gone", "metric": "up"}  # the writer's labels, ours off
    assert orphan.points["y"].isna().all()
    assert orphan.has_outputs
    only_a = join_series(actual, outputs, FACTS, parse_label_filter('instance="a"'))
    assert [v.labels for v in only_a] == [a]
    by_metric = join_series(actual, outputs, FACTS, parse_label_filter('metric="up"'))
    assert len(by_metric) == 2  # the input's name is filtered as `metric`, as in the outputs
    by_model = join_series(actual, outputs, FACTS, parse_label_filter('model="MSTL"'))
    assert [v.labels for v in by_model] == [a, {"instance": "gone", "metric": "up"}]
    assert join_series(actual, outputs, FACTS, parse_label_filter('model="Other"')) == []


def test_nothing_read_is_no_series() -> None:
    empty = assemble([])[0]
    assert join_series(empty, empty, FACTS, LabelFilter()) == []


class FakeReader:
    def __init__(self, result: SeriesFrame | Exception) -> None:
        self.result = result
        self.calls: list[tuple[str, datetime, datetime, timedelta, int | None]] = []

    def query_range(
        self,
        query: str,
        start: datetime,
        end: datetime,
        step: timedelta,
        *,
        max_series: int | None = None,
    ) -> SeriesFrame:
        self.calls.append((query, start, end, step, max_series))
        if isinstance(self.result, Exception):
            raise self.result
        return self.result

    def close(self) -> None:
        pass


def test_the_anomaly_count_is_one_point_of_a_subquery() -> None:
    counted = frame({"sum": ({}, [3.0, 3.0, 4.0])})
    reader = FakeReader(counted)
    now = datetime(2026, 3, 1, 12, 3, tzinfo=UTC)
    assert TsdbReads(reader, "http://tsdb").anomalies_24h(FACTS, now) == 4
    query, start, end, step, _ = reader.calls[0]
    selector = 'anomaly_score{pipeline="cpu", team="a"}'
    assert query == (  # each written point once: the sample's own step only (see tsdb.py)
        f"sum(count_over_time(({selector} > 1 and timestamp({selector}) > time() - 60)"
        "[23h59m59s999ms:1m]))"
    )
    assert end == now
    assert start == now - step
    assert TsdbReads(FakeReader(assemble([])[0]), "http://tsdb").anomalies_24h(FACTS, now) == 0


def test_the_output_query_carries_our_labels_and_the_filter() -> None:
    query = FACTS.output_query("yhat", parse_label_filter('instance=~"a.*"'))
    selector = 'anomaly_yhat{pipeline="cpu", team="a", instance=~"a.*"}'
    assert query == f"{selector} and timestamp({selector}) > time() - 60"


@pytest.mark.parametrize(
    ("error", "translated", "reason"),
    [
        (
            TSDBUnavailable(
                "http://tsdb/api/v1/query_range did not answer after 2 attempt(s): refused"
            ),
            TsdbUnavailable,
            "did not answer after 2 attempt(s): refused",
        ),
        (
            TSDBQueryError("http://tsdb/api/v1/query_range refused the query (HTTP 400): bad"),
            TsdbQueryRefused,
            "refused the query (HTTP 400): bad",
        ),
    ],
)
def test_reader_errors_become_ui_errors_naming_the_tsdb(
    error: Exception, translated: type[Exception], reason: str
) -> None:
    reads = TsdbReads(FakeReader(error), "http://tsdb")
    with pytest.raises(translated) as caught:
        reads.pipeline_series(FACTS, T0, T0 + timedelta(hours=1), LabelFilter())
    assert caught.value.url == "http://tsdb"  # type: ignore[attr-defined]
    assert caught.value.reason == reason  # type: ignore[attr-defined]


def test_pipeline_facts_come_from_the_apis_pipeline_json() -> None:
    from openanomaly.config.pipeline import Pipeline

    pipeline = Pipeline.model_validate(
        {"name": "p", "query": "up", "step": "5m", "output": {"prefix": "x", "labels": {"t": "1"}}}
    )
    facts = PipelineFacts.from_json(pipeline.model_dump(mode="json"))
    assert facts == PipelineFacts("p", "up", timedelta(minutes=5), "x", {"t": "1"}, "MSTL", 10_000)


# --- label filter ---------------------------------------------------------------------------


def test_label_filters_parse_match_and_render_safely() -> None:
    parsed = parse_label_filter('{instance=~"web-.*", job != \'node\', path="a\\"b"}')
    assert [(m.name, m.op, m.value) for m in parsed.matchers] == [
        ("instance", "=~", "web-.*"),
        ("job", "!=", "node"),
        ("path", "=", 'a"b'),
    ]
    assert parsed.matches({"instance": "web-1", "job": "x", "path": 'a"b'})
    assert not parsed.matches({"instance": "xweb-1", "job": "x", "path": 'a"b'})  # anchored
    assert parse_label_filter('zone=""').matches({})  # absent is empty, as in PromQL
    assert parse_label_filter("  ") == LabelFilter()
    sneaky = parse_label_filter('a="x\\"} or vector(1) #"')
    assert sneaky.promql() == 'a="x\\"} or vector(1) #"'
    assert len(sneaky.matchers) == 1


def test_label_values_are_quoted_by_the_shared_promql_escape() -> None:
    value = 'C:\\dir "x"\nnext'
    assert escape_label_value(value) == 'C:\\\\dir \\"x\\"\\nnext'
    parsed = parse_label_filter("path=`" + value + "`")  # backquotes: taken as is
    assert parsed.matchers[0].value == value
    rendered = parsed.promql()
    assert rendered == f'path="{escape_label_value(value)}"'
    # What we render reads back as the same value: quoting round-trips.
    assert parse_label_filter(rendered).matchers[0].value == value
    assert parse_label_filter(rendered).matches({"path": value})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("instance", "cannot read"),
        ('instance=~"("', "invalid regular expression"),
        ('__name__="up"', "metric="),
        ('a="x" b="y"', "cannot read"),
        ("a=x", "cannot read"),
    ],
)
def test_bad_label_filters_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidLabelFilter, match=reason):
        parse_label_filter(text)


# --- launching ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("127.0.0.1:8495", "http://127.0.0.1:8495"),
        ("0.0.0.0:9000", "http://127.0.0.1:9000"),
        ("[::]:8495", "http://127.0.0.1:8495"),
        ("[::1]:8495", "http://[::1]:8495"),
        ("oa.internal:80", "http://oa.internal:80"),
    ],
)
def test_the_api_url_follows_http_listen(listen: str, url: str) -> None:
    assert api_url_from_listen(listen) == url


def test_settings_options_reach_the_script_intact() -> None:
    options = {"config": Path("/etc/oa.yaml"), "set_": ["tsdb.timeout=1m"], "tsdb_url": None}
    argv = script_args(options, "http://127.0.0.1:8495")
    assert parse_script_args(argv) == (options, "http://127.0.0.1:8495")
    assert parse_script_args([]) == ({}, None)  # `streamlit run app.py` alone


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no stray openanomaly.yaml
    for name in [n for n in __import__("os").environ if n.startswith("OA_")]:
        monkeypatch.delenv(name)
    return tmp_path


@pytest.mark.parametrize("missing", ["streamlit", "plotly"])
def test_ui_without_the_extra_says_how_to_install_it(
    missing: str,
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from openanomaly.cli import main

    for name in [n for n in sys.modules if n == missing or n.startswith(missing + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` raises ImportError
    monkeypatch.setattr(sys, "argv", ["openanomaly", "ui", "--port", "8599"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "openanomaly: the web UI needs the `ui` extra: uv sync --extra ui "
        "(or pip install 'openanomaly[ui]')"
    )


def test_ui_starts_streamlit_on_the_app_with_the_settings_as_script_args(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_module("streamlit", "the ui extra: uv sync --extra ui")
    from streamlit.web import bootstrap

    from openanomaly.cli import main

    started: dict[str, Any] = {}
    monkeypatch.setattr(bootstrap, "load_config_options", lambda flags: None)
    monkeypatch.setattr(
        bootstrap,
        "run",
        lambda script, is_hello, args, flags: started.update(script=script, args=args, flags=flags),
    )
    monkeypatch.setenv("OA_HTTP__API_TOKEN", "t0ken")
    argv = ["openanomaly", "ui", "--port", "8600", "--set", "http.listen=0.0.0.0:9999"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 0
    assert Path(started["script"]) == ROOT / "openanomaly" / "ui" / "app.py"
    assert started["flags"]["server.port"] == 8600
    assert started["flags"]["server.address"] == "127.0.0.1"
    assert started["flags"]["server.headless"] is True
    assert started["flags"]["browser.gatherUsageStats"] is False
    options, api_url = parse_script_args(started["args"])
    assert api_url == "http://127.0.0.1:9999"
    assert options["set_"] == ["http.listen=0.0.0.0:9999"]
    assert "t0ken" not in " ".join(started["args"])  # the script reads it from the env itself


def test_ui_refuses_invalid_settings_before_starting(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    require_module("streamlit", "the ui extra: uv sync --extra ui")
    from streamlit.web import bootstrap

    from openanomaly.cli import main

    monkeypatch.setattr(bootstrap, "run", lambda *a: pytest.fail("started with bad settings"))
    monkeypatch.setattr(sys, "argv", ["openanomaly", "ui", "--set", "http.listen=nope"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 1
    assert "http.listen" in capsys.readouterr().out


def test_charts_handle_numpy_inputs() -> None:
    frame = points([0.0, 1.2])
    frame["score"] = frame["score"].to_numpy(dtype=np.float32)
    markers = next(t for t in anomaly_figure(frame, "f32").data if t.name.startswith("anomaly"))
    assert len(markers.y) == 1
