"""Models and runs: the registry's model versions and recent runs, and a train or infer run
started by hand."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from openanomaly.ui.client import ApiClient
from openanomaly.ui.context import ui_context
from openanomaly.ui.errors import ApiError
from openanomaly.ui.present import (
    ALL,
    RUN_KINDS,
    RUN_STATUSES,
    models_summary,
    plain,
    runs_query,
    runs_shown,
    runs_summary,
)
from openanomaly.ui.views.common import (
    daemon_or_stop,
    read_or_stop,
    show_api_error,
    write_refusal,
)

WRITES_OFF = "Set http.api_token to trigger runs from here."
MODEL_COLUMNS = [
    "pipeline",
    "version",
    "status",
    "engine",
    "series_count",
    "created",
    "train_start",
    "train_end",
    "fit_seconds",
]
RUN_COLUMNS = [
    "pipeline",
    "kind",
    "status",
    "scheduled",
    "started",
    "finished",
    "series_in",
    "series_scored",
    "series_skipped",
    "samples_written",
    "error",
]


def render() -> None:
    api = ui_context().api
    st.header("Models and runs")
    names = sorted(s["name"] for s in read_or_stop(api.pipelines).get("pipelines", []))
    left, middle, right = st.columns(3)
    options = [ALL, *names]
    wanted = st.query_params.get("pipeline")  # from the Pipeline page's link
    picked = left.selectbox(
        "Pipeline", options, index=options.index(wanted) if wanted in names else 0
    )
    kind = middle.selectbox("Kind", RUN_KINDS)
    status = right.selectbox("Status", RUN_STATUSES)
    pipeline = None if picked == ALL else picked
    _run_now(api, pipeline)

    st.subheader("Models")
    models = read_or_stop(api.models, pipeline)
    if models:
        st.dataframe(pd.DataFrame(models).reindex(columns=MODEL_COLUMNS), hide_index=True)
        st.caption(plain(models_summary(models)))
    else:
        st.caption("No models yet: a pipeline gets one at its first successful train.")

    st.subheader("Runs")
    # Kind and failed (failed or interrupted) are filtered by the daemon; ok and running here,
    # from the newest runs it returns.
    runs = runs_shown(read_or_stop(api.runs, pipeline, **runs_query(kind, status)), status)
    if runs:
        st.dataframe(pd.DataFrame(runs).reindex(columns=RUN_COLUMNS), hide_index=True)
        st.caption(plain(runs_summary(runs)))
    else:
        st.caption("No runs match these filters.")
    if status == "failed":
        st.caption(
            "Failed includes interrupted runs: the daemon stopped (shutdown or crash) before "
            "they ended."
        )


def _run_now(api: ApiClient, pipeline: str | None) -> None:
    left, right, _ = st.columns([1, 1, 4])
    refused = write_refusal(api, WRITES_OFF)
    disabled = pipeline is None or refused is not None
    clicked = {
        "train": left.button("Train now", disabled=disabled),
        "infer": right.button("Infer now", disabled=disabled),
    }
    if refused is not None:
        st.caption(plain(refused))
    elif pipeline is None:
        st.caption("Pick a pipeline to train or score it now.")
    for kind, pressed in clicked.items():
        if pressed and pipeline is not None:
            try:
                answer = daemon_or_stop(api.trigger, pipeline, kind)
            except ApiError as exc:
                show_api_error(exc, f"start a {kind} run")
            else:
                answered = plain(json.dumps(answer))
                st.success(
                    f"Scheduled: {kind} of {plain(pipeline)} (the daemon answered {answered}). "
                    "It shows in Runs below once it starts."
                )
