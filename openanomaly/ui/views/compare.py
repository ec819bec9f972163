"""Compare two models on the same pipeline and history: the editor's pipeline as model A, the
same pipeline with another `model:` section as model B, backtested one after the other."""

from __future__ import annotations

import contextlib
from typing import Any

import streamlit as st

from openanomaly.ui.client import ApiClient
from openanomaly.ui.errors import ApiError, DaemonUnreachable, InvalidModelSection
from openanomaly.ui.pipeline_text import outline, with_model
from openanomaly.ui.present import comparison_row, plain
from openanomaly.ui.views import backtest_panel
from openanomaly.ui.views.common import remember, show_table

MODEL_B_KEY = "playground-model-b"
RESULT_KEY = "playground-compare"


def render(api: ApiClient, yaml_text: str, span: tuple[str, str], pipeline: str | None) -> None:
    # Keyed and tracked: an untracked expander is known by its position on the page, which
    # shifts when a backtest's progress bars come and go, and it would close on the next rerun.
    with st.expander("Compare two models", key="playground-compare-open", on_change="rerun"):
        # Kept across pages by the playground (keep_values), whose part this is.
        model_b = st.text_area(
            "Model B (model section)",
            key=MODEL_B_KEY,
            height=150,
            on_change=remember,
            args=(MODEL_B_KEY,),
        )
        st.caption(
            "Model A is the pipeline in the editor; model B is the same pipeline with "
            "this model section. Both run over the From/To range above."
        )
        if st.button("Run both"):
            _run(api, yaml_text, model_b, span, pipeline)
        result = st.session_state.get(RESULT_KEY)
        if result is not None:
            if all(backtest_panel.finished(b) for b in result["backtests"]):
                _show(api, result)
            else:  # polled apart from the page; it reruns the page once both are done
                backtest_panel.follow(api, RESULT_KEY)


def _run(
    api: ApiClient, yaml_text: str, model_b: str, span: tuple[str, str], pipeline: str | None
) -> None:
    if pipeline is None:
        st.error("Fix the pipeline in the editor first: it does not validate.")
        return
    try:
        text_b = with_model(yaml_text, model_b, pipeline)
        labels = (
            f"A: {outline(yaml_text, pipeline).model}",
            f"B: {outline(text_b, pipeline).model}",
        )
    except InvalidModelSection as exc:
        st.error(plain(str(exc)))
        return
    backtest_panel.cancel_unfinished(api, RESULT_KEY)
    started: list[backtest_panel.Backtest] = []
    for text in (yaml_text, text_b):
        backtest = backtest_panel.start(api, text, span, pipeline)
        if backtest is None:  # refused (and said why): A alone compares nothing
            for orphan in started:
                with contextlib.suppress(ApiError, DaemonUnreachable):
                    api.cancel_backtest(str(orphan["id"]))
            return
        started.append(backtest)
    # Kept in the session: the page shows their progress, and then their result, from there.
    st.session_state[RESULT_KEY] = {"labels": labels, "backtests": started}


def _show(api: ApiClient, result: dict[str, Any]) -> None:
    labels, backtests = result["labels"], result["backtests"]
    done = [b for b in backtests if b.get("status") == "done"]
    if len(done) == len(backtests):
        rows = [
            comparison_row(label, b.get("summary") or {})
            for label, b in zip(labels, backtests, strict=True)
        ]
        show_table(rows)
    series = (backtests[0].get("series") or []) if backtests[0].get("status") == "done" else []
    chosen = None
    if series:
        key = f"compare-series-{backtests[0]['id']}"
        chosen = backtest_panel.pick_series("Compare series", series, key=key)
    for column, label, backtest in zip(st.columns(2), labels, backtests, strict=True):
        with column:
            st.markdown(f"**{plain(label)}**")
            if not backtest_panel.outcome_ok(backtest):
                continue
            backtest_panel.show_metrics(backtest.get("summary") or {}, columns=2)
            same = _same_series(backtest, chosen)
            if same is not None:
                backtest_panel.chart(api, backtest, same, key=f"compare-chart-{label[0]}")
            elif chosen is not None:
                st.caption("This model did not score that series.")


def _same_series(backtest: dict[str, Any], chosen: dict[str, Any] | None) -> dict[str, Any] | None:
    if chosen is None:
        return None
    for series in backtest.get("series") or []:
        if series.get("id") == chosen.get("id"):
            return dict(series)
    return None
