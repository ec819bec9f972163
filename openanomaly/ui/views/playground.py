"""Playground: write or change a pipeline, validate it, backtest it on real history, compare
two models, save it to pipelines.d and copy its alert rule."""

from __future__ import annotations

from typing import Any

import streamlit as st

from openanomaly.ui.client import ApiClient, problem_from_json
from openanomaly.ui.context import ui_context
from openanomaly.ui.errors import ApiError, DaemonUnreachable, InvalidModelSection
from openanomaly.ui.pipeline_text import TEMPLATE, outline, state_yaml
from openanomaly.ui.present import plain
from openanomaly.ui.rules import alert_rule
from openanomaly.ui.views import backtest_panel, compare
from openanomaly.ui.views.common import daemon_or_stop, read_or_stop, show_api_error, show_problems

FILENAME = "playground.yaml"
YAML_KEY = "playground-yaml"
START_KEY = "playground-start-from"
CHECKED_KEY = "playground-checked"
RESULT_KEY = "playground-backtest"
LOAD_ERROR_KEY = "playground-load-error"
START_TEMPLATE = "Template"


def render() -> None:
    context = ui_context()
    api = context.api
    st.header("Playground")
    names = sorted(s["name"] for s in read_or_stop(api.pipelines).get("pipelines", []))
    st.session_state.setdefault(YAML_KEY, TEMPLATE)
    st.selectbox(
        "Start from",
        [START_TEMPLATE, *names],
        key=START_KEY,
        on_change=_load_start,
        args=(api,),
    )
    load_error = st.session_state.pop(LOAD_ERROR_KEY, None)
    if load_error:
        st.error(plain(load_error))
    text = st.text_area("Pipeline YAML", key=YAML_KEY, height=440)
    checked = _check(api, text)
    valid_names: list[str] = checked["pipelines"] if not checked["problems"] else []
    if st.button("Validate"):
        if valid_names:
            st.success(plain(f"Valid: {', '.join(valid_names)}"))
        else:
            show_problems(problem_from_json(p) for p in checked["problems"])
    target = valid_names[0] if len(valid_names) == 1 else None
    if len(valid_names) > 1:
        target = st.selectbox("Pipeline to backtest, compare and save", valid_names)
    _backtest(api, text, target)
    compare.render(api, text, _span(), target)
    _save(api, text, target)
    _rule(text, target)


def _load_start(api: ApiClient) -> None:
    """ "Start from" changed: put the template or that pipeline's YAML in the editor."""
    choice = st.session_state[START_KEY]
    if choice == START_TEMPLATE:
        st.session_state[YAML_KEY] = TEMPLATE
        return
    try:
        state = api.pipeline(choice)
    except (ApiError, DaemonUnreachable) as exc:  # shown by the page, which renders next
        st.session_state[LOAD_ERROR_KEY] = f"Cannot load {choice}: {exc}"
        return
    st.session_state[YAML_KEY] = state_yaml(state["pipeline"])


def _check(api: ApiClient, text: str) -> dict[str, Any]:
    """The daemon's validation of `text`, asked once per distinct text: the page reruns on
    every click, and the alert rule and Save need to know whether the text is valid."""
    cached = st.session_state.get(CHECKED_KEY)
    if cached is not None and cached[0] == text:
        result: dict[str, Any] = cached[1]
        return result
    try:
        result = daemon_or_stop(api.validate, text, FILENAME)
    except ApiError as exc:
        problems = [{"file": FILENAME, "line": 0, "field": "", "reason": exc.message}]
        result = {"pipelines": [], "problems": problems}
    st.session_state[CHECKED_KEY] = (text, result)
    return result


def _span() -> tuple[str, str]:
    """From and To as typed (the daemon parses them, as `openanomaly backtest` does)."""
    start: str = st.session_state.get("playground-from", "2d")
    end: str = st.session_state.get("playground-to", "0s")
    return start, end


def _backtest(api: ApiClient, text: str, target: str | None) -> None:
    st.subheader("Backtest")
    left, right = st.columns(2)
    left.text_input("From", value="2d", key="playground-from")
    right.text_input("To", value="0s", key="playground-to")
    st.caption("From and To: ISO 8601 (UTC), Unix seconds, or a duration before now (2d, 6h).")
    if st.button("Run backtest", type="primary"):
        started = backtest_panel.start(api, text, _span(), target)
        if started is not None:
            st.session_state[RESULT_KEY] = started
    result = st.session_state.get(RESULT_KEY)
    if result is not None:
        if not backtest_panel.finished(result):  # just started, or a click cut the polling short
            result = st.session_state[RESULT_KEY] = backtest_panel.follow(api, [result])[0]
        backtest_panel.show_result(api, result)


def _save(api: ApiClient, text: str, target: str | None) -> None:
    st.subheader("Save")
    overwrite = st.checkbox("Overwrite")
    left, right = st.columns(2)
    if left.button("Save to pipelines.d"):
        if target is None:
            st.error("Only a valid pipeline can be saved: press Validate to see its problems.")
        else:
            try:
                saved = daemon_or_stop(api.save_pipeline, target, text, overwrite=overwrite)
            except ApiError as exc:
                show_api_error(exc, "save the pipeline")
            else:
                st.success(
                    plain(f"Saved {saved['file']}; the daemon loaded pipeline {saved['pipeline']}.")
                )
    # Made when clicked (a callable): a file made on every rerun is replaced by the next
    # rerun, and a click that lands in between gets a 404. No rerun after it either.
    right.download_button(
        "Download YAML",
        lambda: text,
        file_name=f"{target or 'pipeline'}.yaml",
        mime="application/yaml",
        on_click="ignore",
    )
    if not api.can_write:
        st.caption("Saving needs http.api_token (the same in the daemon's and the UI's settings).")


def _rule(text: str, target: str | None) -> None:
    st.subheader("Alert rule")
    if target is None:
        st.caption("The alert rule for the pipeline shows here once it is valid.")
        return
    try:
        facts = outline(text, target)
    except InvalidModelSection as exc:
        st.caption(plain(str(exc)))
        return
    st.code(alert_rule(facts.name, facts.prefix, facts.step), language="yaml")
