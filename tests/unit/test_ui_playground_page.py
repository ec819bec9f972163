"""The Playground page run by Streamlit's AppTest against a fake daemon (httpx.MockTransport):
what it keeps across a page change, what it saves, what it says about tokens, and that a
running backtest does not hold up the rest of the page."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import require_module

require_module("streamlit", "the ui extra: uv sync --extra ui")

from streamlit.testing.v1 import AppTest  # noqa: E402

from openanomaly.ui.client import ApiClient  # noqa: E402
from openanomaly.ui.pipeline_text import TEMPLATE  # noqa: E402
from openanomaly.ui.views import common, playground  # noqa: E402

TIMEOUT = 60.0
MINE = "name: mine\nquery: up\nstep: 5m\n"
SEVERAL = (
    "pipelines:\n"
    "  - {name: a, query: up}\n"
    "  - name: b\n"
    "    query: sum(rate(x[5m]))\n"
    "    model: {engine: statsforecast, name: Naive}\n"
)


class FakeDaemon:
    """Answers the endpoints the Playground uses, as docs/api.md describes them."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.ui_token: str | None = "s3cret"  # the token the UI holds
        self.writes_enabled = True
        self.validate_status = 200
        self.save_answer: dict[str, Any] = {"loaded": True}
        self.backtest: dict[str, Any] = {"status": "running", "progress": {"done": 0, "total": 0}}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        method, path = request.method, request.url.path
        body = json.loads(request.content) if request.content else {}
        if (method, path) == ("GET", "/api/v1/pipelines"):
            return httpx.Response(200, json={"pipelines": [], "problems": []})
        if (method, path) == ("GET", "/api/v1/info"):
            return httpx.Response(200, json={"version": "x", "writes_enabled": self.writes_enabled})
        if (method, path) == ("POST", "/api/v1/validate"):
            if self.validate_status != 200:
                detail = "missing or wrong bearer token"
                return httpx.Response(self.validate_status, json={"detail": detail})
            data = yaml.safe_load(body["yaml"])
            items = data.get("pipelines", [data])
            return httpx.Response(
                200, json={"pipelines": [p["name"] for p in items], "problems": []}
            )
        if method == "PUT" and path.startswith("/api/v1/pipelines/"):
            name = path.rsplit("/", 1)[1]
            answer = {"file": f"/p/{name}.yaml", "pipeline": name, **self.save_answer}
            return httpx.Response(201, json=answer)
        if (method, path) == ("POST", "/api/v1/backtests"):
            return httpx.Response(202, json={"id": "b1", "status": "queued"})
        if (method, path) == ("GET", "/api/v1/backtests/b1"):
            return httpx.Response(200, json={"id": "b1", **self.backtest})
        if (method, path) == ("DELETE", "/api/v1/backtests/b1"):
            return httpx.Response(200, json={"id": "b1", **self.backtest})
        return httpx.Response(404, json={"detail": f"no {method} {path} here"})

    def saved(self) -> list[tuple[str, dict[str, Any]]]:
        return [(r.url.path, json.loads(r.content)) for r in self.requests if r.method == "PUT"]


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> FakeDaemon:
    fake = FakeDaemon()

    def context() -> SimpleNamespace:
        http = httpx.Client(transport=httpx.MockTransport(fake))
        return SimpleNamespace(api=ApiClient("http://daemon:8495", fake.ui_token, http))

    monkeypatch.setattr(playground, "ui_context", context)
    return fake


def _app() -> None:
    """Playground, or "another page" while `elsewhere` is set: the Playground's widgets are
    then not drawn, and Streamlit drops their state, as on a real page change."""
    import streamlit as st

    from openanomaly.ui.views import playground

    if st.session_state.get("elsewhere"):
        st.write("another page")
    else:
        playground.render()


def open_page() -> AppTest:
    app = AppTest.from_function(_app, default_timeout=TIMEOUT)
    app.run()
    assert not app.exception, app.exception
    return app


def button(app: AppTest, label: str) -> Any:
    found = [b for b in app.button if b.label == label]
    assert len(found) == 1, [b.label for b in app.button]
    return found[0]


def texts(elements: Any) -> list[str]:
    """The elements' texts as the browser shows them (without `plain`'s Markdown escapes)."""
    return [re.sub(r"\\(.)", r"\1", str(e.value)) for e in elements]


def test_keep_values_restores_what_streamlit_dropped() -> None:
    state: dict[str, Any] = {}
    common.keep_values(state, {"w": "default"})
    assert state == {"w": "default", "w.saved": "default"}
    state["w"] = "typed"  # the user's edit, on this page
    common.keep_values(state, {"w": "default"})
    assert state["w.saved"] == "typed"
    del state["w"]  # another page ran: Streamlit dropped the widget's state
    common.keep_values(state, {"w": "default"})
    assert state == {"w": "typed", "w.saved": "typed"}
    common.keep_choice(state, "pick", ["a", "b"])
    state["pick"] = "b"  # picked; the page reruns
    common.keep_choice(state, "pick", ["a", "b"])
    del state["pick"]
    common.keep_choice(state, "pick", ["a", "b"])
    assert state["pick"] == "b"
    del state["pick"]
    common.keep_choice(state, "pick", ["a", "c"])  # b is gone: the first option
    assert (state["pick"], state["pick.saved"]) == ("a", "a")


def test_edits_survive_a_visit_to_another_page(daemon: FakeDaemon) -> None:
    app = open_page()
    assert app.text_area(key=playground.YAML_KEY).value == TEMPLATE
    app.text_area(key=playground.YAML_KEY).input(MINE)
    app.text_input(key=playground.FROM_KEY).input("6h")
    app.text_area(key="playground-model-b").input("model: {engine: statsforecast, name: Naive}")
    app.run()
    app.session_state["elsewhere"] = True
    app.run()
    assert texts(app.markdown) == ["another page"]
    app.session_state["elsewhere"] = False
    app.run()
    assert not app.exception, app.exception
    assert app.text_area(key=playground.YAML_KEY).value == MINE
    assert app.text_input(key=playground.FROM_KEY).value == "6h"
    assert app.text_input(key=playground.TO_KEY).value == "0s"
    assert str(app.text_area(key="playground-model-b").value).endswith("name: Naive}")


def test_save_says_when_the_daemon_has_not_loaded_the_file(daemon: FakeDaemon) -> None:
    daemon.save_answer = {"loaded": False, "reason": "another file defines mine"}
    app = open_page()
    app.text_area(key=playground.YAML_KEY).input(MINE).run()
    button(app, "Save to pipelines.d").click().run()
    assert not app.success
    assert texts(app.warning) == [
        "Saved /p/mine.yaml, but the daemon has not loaded pipeline mine: another file defines mine"
    ]
    assert daemon.saved() == [("/api/v1/pipelines/mine", {"yaml": MINE, "overwrite": False})]
    daemon.save_answer = {"loaded": True}
    button(app, "Save to pipelines.d").click().run()
    assert texts(app.success) == ["Saved /p/mine.yaml; the daemon loaded pipeline mine."]


def test_only_the_chosen_pipeline_of_several_is_saved(daemon: FakeDaemon) -> None:
    app = open_page()
    app.text_area(key=playground.YAML_KEY).input(SEVERAL).run()
    picker = app.selectbox(key=playground.TARGET_KEY)
    assert picker.label == "Pipeline to backtest, compare and save"
    picker.select("b").run()
    assert any("Only pipeline b is saved" in c for c in texts(app.caption))
    button(app, "Save to pipelines.d").click().run()
    ((path, body),) = daemon.saved()
    assert path == "/api/v1/pipelines/b"
    assert yaml.safe_load(body["yaml"]) == {
        "name": "b",
        "query": "sum(rate(x[5m]))",
        "model": {"engine": "statsforecast", "name": "Naive"},
    }
    # The choice is kept across pages too.
    app.session_state["elsewhere"] = True
    app.run()
    app.session_state["elsewhere"] = False
    app.run()
    assert app.selectbox(key=playground.TARGET_KEY).value == "b"


@pytest.mark.parametrize(
    ("ui_token", "writes_enabled", "said"),
    [
        (None, False, playground.WRITES_OFF),
        ("s3cret", False, "The UI has an API token but the daemon has none"),
        (None, True, "The daemon has an http.api_token but the UI has none"),
    ],
)
def test_save_is_off_up_front_when_a_token_is_missing(
    daemon: FakeDaemon, ui_token: str | None, writes_enabled: bool, said: str
) -> None:
    daemon.ui_token = ui_token
    daemon.writes_enabled = writes_enabled
    app = open_page()
    assert button(app, "Save to pipelines.d").disabled
    assert any(c.startswith(said) for c in texts(app.caption)), texts(app.caption)


def test_save_is_on_when_both_sides_have_the_token(daemon: FakeDaemon) -> None:
    app = open_page()
    assert not button(app, "Save to pipelines.d").disabled
    assert not any("api_token" in c for c in texts(app.caption))


def test_a_refused_token_on_validate_is_said_as_such(daemon: FakeDaemon) -> None:
    daemon.validate_status = 401
    app = open_page()
    assert not app.exception, app.exception
    (error,) = texts(app.error)
    assert error.startswith("Cannot validate the pipeline: the daemon refused the UI's token")
    assert "playground.yaml" not in error
    button(app, "Validate").click().run()
    assert not any("playground.yaml" in e for e in texts(app.error))


def test_a_running_backtest_does_not_hold_up_the_page(daemon: FakeDaemon) -> None:
    app = open_page()
    button(app, "Run backtest").click().run()
    assert not app.exception, app.exception
    # The polling is a fragment: Compare, Save and the alert rule render at once.
    assert button(app, "Save to pipelines.d")
    assert button(app, "Run both")
    assert [s.value for s in app.subheader][-2:] == ["Save", "Alert rule"]
    bars = app.get("progress")
    assert [bar.proto.text for bar in bars] == ["Reading the TSDB…"]
    # Done: the page reruns and shows the result instead of the bar.
    daemon.backtest = {
        "status": "done",
        "summary": {"series": 0, "points": 0, "anomalies": 0, "coverage": None},
        "series": [],
        "anomalies": [],
    }
    app.run()
    assert not app.exception, app.exception
    assert not app.get("progress")
    assert "No point scored over 1 in this range." in texts(app.info)


def test_a_new_backtest_cancels_the_one_it_replaces(daemon: FakeDaemon) -> None:
    app = open_page()
    button(app, "Run backtest").click().run()
    assert not [r for r in daemon.requests if r.method == "DELETE"]
    button(app, "Run backtest").click().run()
    assert not app.exception, app.exception
    cancelled = [r.url.path for r in daemon.requests if r.method == "DELETE"]
    assert cancelled == ["/api/v1/backtests/b1"]  # the first, still running, for nobody now
