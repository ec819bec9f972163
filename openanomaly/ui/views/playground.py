"""Playground: write or change a pipeline, validate it, backtest it on real history, compare
two models, save it to pipelines.d and copy its alert rule."""

from __future__ import annotations

from typing import Any

import streamlit as st

from openanomaly.ui.client import ApiClient, problem_from_json
from openanomaly.ui.context import ui_context
from openanomaly.ui.errors import ApiError, DaemonUnreachable, InvalidModelSection
from openanomaly.ui.pipeline_text import (
    MODEL_B_DEFAULT,
    TEMPLATE,
    outline,
    pipeline_file,
    state_yaml,
)
from openanomaly.ui.present import plain, save_outcome
from openanomaly.ui.rules import alert_rule
from openanomaly.ui.views import backtest_panel, compare
from openanomaly.ui.views.common import (
    SAVED,
    daemon_or_stop,
    keep_choice,
    keep_values,
    read_or_stop,
    remember,
    show_api_error,
    show_problems,
    write_refusal,
)

FILENAME = "playground.yaml"
YAML_KEY = "playground-yaml"
START_KEY = "playground-start-from"
TARGET_KEY = "playground-target"
FROM_KEY = "playground-from"
TO_KEY = "playground-to"
CHECKED_KEY = "playground-checked"
RESULT_KEY = "playground-backtest"
LOAD_ERROR_KEY = "playground-load-error"
START_TEMPLATE = "Template"
# The page's inputs and their first values; they outlive a visit to another page.
KEPT = {
    YAML_KEY: TEMPLATE,
    FROM_KEY: "2d",
    TO_KEY: "0s",
    compare.MODEL_B_KEY: MODEL_B_DEFAULT,
}
WRITES_OFF = "Saving needs http.api_token (the same in the daemon's and the UI's settings)."


def render() -> None:
    context = ui_context()
    api = context.api
    st.header("Playground")
    names = sorted(s["name"] for s in read_or_stop(api.pipelines).get("pipelines", []))
    keep_values(st.session_state, KEPT)
    keep_choice(st.session_state, START_KEY, [START_TEMPLATE, *names])
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
    text = st.text_area(
        "Pipeline YAML", key=YAML_KEY, height=440, on_change=remember, args=(YAML_KEY,)
    )
    checked = _check(api, text)
    valid_names: list[str] = checked["pipelines"] if not checked["problems"] else []
    if st.button("Validate"):
        if valid_names:
            st.success(plain(f"Valid: {', '.join(valid_names)}"))
        else:
            show_problems(problem_from_json(p) for p in checked["problems"])
    target = valid_names[0] if len(valid_names) == 1 else None
    if len(valid_names) > 1:
        keep_choice(st.session_state, TARGET_KEY, valid_names)
        target = st.selectbox(
            "Pipeline to backtest, compare and save",
            valid_names,
            key=TARGET_KEY,
            on_change=remember,
            args=(TARGET_KEY,),
        )
    _backtest(api, text, target)
    compare.render(api, text, _span(), target)
    _save(api, text, target, several=len(valid_names) > 1)
    _rule(text, target)


def _load_start(api: ApiClient) -> None:
    """ "Start from" changed: put the template or that pipeline's YAML in the editor."""
    remember(START_KEY)
    choice = st.session_state[START_KEY]
    if choice == START_TEMPLATE:
        yaml_text = TEMPLATE
    else:
        try:
            yaml_text = state_yaml(api.pipeline(choice)["pipeline"])
        except (ApiError, DaemonUnreachable) as exc:  # shown by the page, which renders next
            st.session_state[LOAD_ERROR_KEY] = f"Cannot load {choice}: {exc}"
            return
    st.session_state[YAML_KEY] = st.session_state[YAML_KEY + SAVED] = yaml_text


def _check(api: ApiClient, text: str) -> dict[str, Any]:
    """The daemon's validation of `text`, asked once per distinct text: the page reruns on
    every click, and the alert rule and Save need to know whether the text is valid. A
    refused request (a token the daemon does not take) is said as such, not as a problem of
    the text, and is asked again on the next run."""
    cached = st.session_state.get(CHECKED_KEY)
    if cached is not None and cached[0] == text:
        result: dict[str, Any] = cached[1]
        return result
    try:
        result = daemon_or_stop(api.validate, text, FILENAME)
    except ApiError as exc:
        if exc.status in (401, 403) and not exc.problems:
            show_api_error(exc, "validate the pipeline")
            return {"pipelines": [], "problems": []}
        problems = [{"file": FILENAME, "line": 0, "field": "", "reason": exc.message}]
        result = {"pipelines": [], "problems": problems}
    st.session_state[CHECKED_KEY] = (text, result)
    return result


def _span() -> tuple[str, str]:
    """From and To as typed (the daemon parses them, as `openanomaly backtest` does)."""
    start: str = st.session_state.get(FROM_KEY, KEPT[FROM_KEY])
    end: str = st.session_state.get(TO_KEY, KEPT[TO_KEY])
    return start, end


def _backtest(api: ApiClient, text: str, target: str | None) -> None:
    st.subheader("Backtest")
    left, right = st.columns(2)
    left.text_input("From", key=FROM_KEY, on_change=remember, args=(FROM_KEY,))
    right.text_input("To", key=TO_KEY, on_change=remember, args=(TO_KEY,))
    st.caption("From and To: ISO 8601 (UTC), Unix seconds, or a duration before now (2d, 6h).")
    if st.button("Run backtest", type="primary"):
        backtest_panel.cancel_unfinished(api, RESULT_KEY)
        started = backtest_panel.start(api, text, _span(), target)
        if started is not None:
            st.session_state[RESULT_KEY] = {"backtests": [started]}
    result = st.session_state.get(RESULT_KEY)
    if result is None:
        return
    backtest = result["backtests"][0]
    if backtest_panel.finished(backtest):
        backtest_panel.show_result(api, backtest)
    else:  # polled apart from the page; it reruns the page once the result is in
        backtest_panel.follow(api, RESULT_KEY)


def _save(api: ApiClient, text: str, target: str | None, *, several: bool) -> None:
    st.subheader("Save")
    refused = write_refusal(api, WRITES_OFF)
    overwrite = st.checkbox("Overwrite")
    left, right = st.columns(2)
    if left.button("Save to pipelines.d", disabled=refused is not None):
        if target is None:
            st.error("Only a valid pipeline can be saved: press Validate to see its problems.")
        else:
            _save_pipeline(api, text, target, overwrite)
    # Made when clicked (a callable): a file made on every rerun is replaced by the next
    # rerun, and a click that lands in between gets a 404. No rerun after it either.
    right.download_button(
        "Download YAML",
        lambda: text,
        file_name=f"{target or 'pipeline'}.yaml",
        mime="application/yaml",
        on_click="ignore",
    )
    if refused is not None:
        st.caption(plain(refused))
    if several and target is not None:
        st.caption(
            plain(
                f"Only pipeline {target} is saved, as a file of its own ({target}.yaml); "
                "Download YAML gives the whole text."
            )
        )


def _save_pipeline(api: ApiClient, text: str, target: str, overwrite: bool) -> None:
    """Save `target` alone: the daemon takes a file that defines exactly that pipeline."""
    try:
        file_text = pipeline_file(text, target)
        saved = daemon_or_stop(api.save_pipeline, target, file_text, overwrite=overwrite)
    except InvalidModelSection as exc:
        st.error(plain(f"Cannot save the pipeline: {exc}"))
    except ApiError as exc:
        show_api_error(exc, "save the pipeline")
    else:
        loaded, message = save_outcome(saved, target)
        if loaded:
            st.success(plain(message))
        else:
            st.warning(plain(message))


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
