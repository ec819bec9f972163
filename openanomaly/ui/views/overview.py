"""Overview: every pipeline's health at a glance, and the files that failed to load."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from openanomaly.ui.client import problem_from_json
from openanomaly.ui.context import UiContext, ui_context
from openanomaly.ui.errors import TsdbError, TsdbUnavailable
from openanomaly.ui.present import OVERVIEW_COLUMNS, failures, overview_row, plain, problem_line
from openanomaly.ui.tsdb import PipelineFacts
from openanomaly.ui.views.common import read_or_stop, show_table, tsdb_text

NO_PIPELINES = (
    "No pipelines loaded. Put a pipeline file in pipelines.d/ or write one in the Playground."
)


def render() -> None:
    context = ui_context()
    st.header("Pipelines")
    answer = read_or_stop(context.api.pipelines)
    for problem in answer.get("problems", []):
        st.warning(plain(problem_line(problem_from_json(problem))))
    states: list[dict[str, Any]] = answer.get("pipelines", [])
    if not states:
        st.info(NO_PIPELINES)
        return
    now = datetime.now(UTC)
    counts = _anomaly_counts(context, states, now)
    rows = [overview_row(state, counts.get(state["name"]), now) for state in states]
    show_table(rows, OVERVIEW_COLUMNS)
    for state in states:
        for kind, error in failures(state):
            st.error(plain(f"{state['name']}: last {kind} failed: {error}"))
    st.caption(
        "Anomalies (24 h): points that scored over 1 in the last 24 hours, read from the "
        "TSDB. Open a pipeline on the Pipeline page for its charts."
    )


def _anomaly_counts(
    context: UiContext, states: Sequence[Mapping[str, Any]], now: datetime
) -> dict[str, int]:
    """Anomalies per pipeline; a pipeline without a count shows "?" (and one warning says why:
    once the TSDB is unreachable there is no point asking it again for every pipeline)."""
    counts: dict[str, int] = {}
    for state in states:
        try:
            facts = PipelineFacts.from_json(state["pipeline"])
        except (KeyError, TypeError, ValueError):  # an older daemon without `pipeline`
            continue
        try:
            counts[facts.name] = context.tsdb.anomalies_24h(facts, now)
        except TsdbUnavailable as exc:
            st.warning(tsdb_text(exc))
            break
        except TsdbError as exc:
            st.warning(f"{plain(facts.name)}: {tsdb_text(exc)}")
    return counts
