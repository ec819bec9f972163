"""Pipeline: one pipeline's series next to their forecast, band and score, its anomalies, its
recent runs and its state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from openanomaly.durations import parse_duration
from openanomaly.ui.charts import anomaly_figure
from openanomaly.ui.context import UiContext, ui_context
from openanomaly.ui.errors import ApiError, InvalidLabelFilter, TsdbError
from openanomaly.ui.matchers import parse_label_filter
from openanomaly.ui.pipeline_text import state_yaml
from openanomaly.ui.present import (
    NONE,
    anomaly_rows,
    failures,
    labels_text,
    parse_api_time,
    pipeline_status,
    plain,
)
from openanomaly.ui.tsdb import PipelineFacts, SeriesView, view_anomalies
from openanomaly.ui.views.common import daemon_or_stop, read_or_stop, show_table, tsdb_text
from openanomaly.ui.views.overview import NO_PIPELINES

RANGES = ("1h", "6h", "24h", "3d", "7d")
MAX_CHARTS = 10  # the worst series; more charts than this is a page nobody reads
RUN_COLUMNS = ["kind", "status", "scheduled", "started", "finished", "series_scored", "error"]


def render() -> None:
    context = ui_context()
    answer = read_or_stop(context.api.pipelines)
    states = {state["name"]: state for state in answer.get("pipelines", [])}
    if not states:
        st.header("Pipeline")
        st.info(NO_PIPELINES)
        return
    names = sorted(states)
    wanted = st.query_params.get("pipeline")
    name = st.selectbox("Pipeline", names, index=names.index(wanted) if wanted in names else 0)
    st.query_params["pipeline"] = name  # a link to this page shows this pipeline
    state = states[name]
    left, right = st.columns([3, 1])
    filter_text = left.text_input(
        "Label filter", placeholder='PromQL label matchers, e.g. instance=~"web.*", job!="test"'
    )
    range_text = right.selectbox("Range", RANGES, index=RANGES.index("24h"))
    st.header(name)
    _status(state)
    _series(context, state, filter_text, parse_duration(range_text))
    _runs(context, name)
    _state(state)


def _status(state: dict[str, Any]) -> None:
    name = state["name"]
    st.caption(f"Status: {pipeline_status(state)} · defined in {state.get('source', NONE)}")
    for kind, error in failures(state):
        st.error(plain(f"{name}: last {kind} failed: {error}"))
    if state.get("model") is None:
        when = parse_api_time((state.get("next_run") or {}).get("train"))
        first = (
            f"its first training is due at {when:%Y-%m-%d %H:%M} UTC"
            if when
            else ("no training is scheduled yet")
        )
        st.info(
            f"{name} has never been trained yet; {first}. Use Train now on the Models and "
            "runs page to train it at once. Until then there is no forecast, band or score."
        )


def _series(context: UiContext, state: dict[str, Any], filter_text: str, span: timedelta) -> None:
    try:
        label_filter = parse_label_filter(filter_text)
    except InvalidLabelFilter as exc:
        st.error(f"Label filter: {plain(str(exc))}")
        return
    facts = PipelineFacts.from_json(state["pipeline"])
    end = datetime.now(UTC)
    try:
        with st.spinner("Reading the TSDB..."):
            views = context.tsdb.pipeline_series(facts, end - span, end, label_filter)
    except TsdbError as exc:
        st.error(tsdb_text(exc))
        return
    if not views:
        st.info(
            "The pipeline's query returned no series in this range"
            + (" that match the label filter." if label_filter.matchers else ".")
        )
        return
    if not any(view.has_outputs for view in views):
        outputs = f"{facts.prefix}_score, _yhat, _yhat_lower and _yhat_upper"
        st.info(
            f"No output series ({outputs}) of {facts.name} in this range yet: they appear "
            "once a trained model has scored new points. The charts show the actual values."
        )
    _charts(views)
    st.subheader("Anomalies")
    rows = anomaly_rows(view_anomalies(views), limit=50)
    if rows:
        show_table(rows)
    else:
        st.info("No point scored over 1 in this range.")


def _charts(views: list[SeriesView]) -> None:
    shown = views[:MAX_CHARTS]
    st.caption(f"{len(views)} series, highest score first.")
    for index, view in enumerate(shown):
        title = labels_text(view.labels)
        st.plotly_chart(anomaly_figure(view.points, title), key=f"series-{index}")
    if len(views) > len(shown):
        st.caption(
            f"{len(views) - len(shown)} more series are hidden (only the {MAX_CHARTS} with the "
            "highest score are drawn); narrow them down with the label filter."
        )


def _runs(context: UiContext, name: str) -> None:
    st.subheader("Recent runs")
    # Imported here: the navigation imports this module.
    from openanomaly.ui.navigation import models_runs_page

    st.page_link(
        models_runs_page(), label=f"All models and runs of {name}", query_params={"pipeline": name}
    )
    try:
        runs = daemon_or_stop(context.api.runs, name, limit=20)
    except ApiError as exc:
        st.error(f"Cannot read the runs (HTTP {exc.status}): {plain(exc.message)}")
        return
    if not runs:
        st.caption("No runs yet.")
        return
    frame = pd.DataFrame(runs)
    st.dataframe(frame.reindex(columns=RUN_COLUMNS), hide_index=True)


def _state(state: dict[str, Any]) -> None:
    st.subheader("State")
    next_run = state.get("next_run") or {}
    facts = {
        "Model version": state.get("model"),
        "Model trained for another configuration": state.get("model_stale"),
        "Model created": state.get("model_created"),
        "Series in the model": state.get("series_count"),
        "Last scored point": state.get("watermark"),
        "Next train": next_run.get("train"),
        "Next infer": next_run.get("infer"),
        "Configuration hash": (state.get("config_hash") or "")[:12],
    }
    show_table([{"": key, "Value": NONE if v is None else str(v)} for key, v in facts.items()])
    if isinstance(state.get("pipeline"), dict):
        with st.expander("Pipeline YAML"):
            st.code(state_yaml(state["pipeline"]), language="yaml")
