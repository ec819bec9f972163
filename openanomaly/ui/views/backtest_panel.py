"""Backtests from the Playground: start one on the daemon, follow it, show what it found.

The daemon runs backtests in the background (POST /api/v1/backtests). The page keeps the
backtest in the session as soon as it is queued and polls it in a fragment, so the rest of the
page renders at once and a click never waits for it; once done, the page reruns and shows the
kept result, and later reruns (picking another series) never run it again.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pandas as pd
import streamlit as st

from openanomaly.ui.charts import anomaly_figure
from openanomaly.ui.client import ApiClient
from openanomaly.ui.errors import ApiError, DaemonUnreachable
from openanomaly.ui.present import (
    anomaly_rows,
    backtest_metrics,
    labels_text,
    plain,
    series_choice,
)
from openanomaly.ui.present import progress as progress_of
from openanomaly.ui.views.common import daemon_or_stop, show_api_error, show_table

POLL_SECONDS = 0.5
FINISHED = ("done", "failed", "cancelled")
Backtest = dict[str, Any]


def start(
    api: ApiClient, yaml_text: str, span: tuple[str, str], pipeline: str | None
) -> Backtest | None:
    """Queue a backtest; on refusal (invalid YAML or times, too many queued) say why."""
    try:
        started: Backtest = daemon_or_stop(api.start_backtest, yaml_text, *span, pipeline)
    except ApiError as exc:
        show_api_error(exc, "start the backtest")
        return None
    return started


def cancel_unfinished(api: ApiClient, key: str) -> None:
    """Cancel the backtests a new one replaces in `st.session_state[key]`: left running, they
    would hold the daemon's one backtest thread (and its queue of 4) for nobody."""
    kept = st.session_state.get(key) or {}
    for backtest in kept.get("backtests", []):
        if not finished(backtest):
            with contextlib.suppress(ApiError, DaemonUnreachable):
                api.cancel_backtest(str(backtest["id"]))


def finished(backtest: Backtest) -> bool:
    return backtest.get("status") in FINISHED


@st.fragment(run_every=POLL_SECONDS)
def follow(api: ApiClient, key: str) -> None:
    """Progress bars of the backtests kept in `st.session_state[key]["backtests"]`, polled in
    a fragment (only this part reruns, twice a second) so the rest of the page renders and
    works meanwhile. Once every one has finished, the whole page reruns to show the result."""
    kept = st.session_state.get(key)
    if not kept:
        return
    current = [b if finished(b) else daemon_or_stop(_reread, api, b) for b in kept["backtests"]]
    st.session_state[key] = {**kept, "backtests": current}
    if all(finished(b) for b in current):
        st.rerun(scope="app")
    for backtest in current:
        fraction, text = progress_of(backtest)
        st.progress(fraction, text=text)


def _reread(api: ApiClient, backtest: Backtest) -> Backtest:
    try:
        return api.backtest(str(backtest["id"]))
    except ApiError as exc:  # e.g. the daemon restarted and forgot it
        return {**backtest, "status": "failed", "error": f"HTTP {exc.status}: {exc.message}"}


def outcome_ok(backtest: Backtest) -> bool:
    """True when done; otherwise says why not."""
    status = backtest.get("status")
    if status == "done":
        return True
    if status == "cancelled":
        st.warning("The backtest was cancelled.")
    else:
        st.error(plain(f"The backtest failed: {backtest.get('error') or 'no error recorded'}"))
    return False


def show_metrics(summary: dict[str, Any], columns: int = 5) -> None:
    tiles = list(backtest_metrics(summary).items())
    slots = st.columns(columns)
    for index, (label, value) in enumerate(tiles):
        slots[index % columns].metric(label, value)
    skipped = summary.get("skipped") or {}
    if skipped:
        reasons = "; ".join(f"{sid}: {why}" for sid, why in list(skipped.items())[:5])
        st.caption(
            plain(
                f"{len(skipped)} series not scored ({reasons}{'; ...' if len(skipped) > 5 else ''})"
            )
        )


def pick_series(label: str, series: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """A select box over a backtest's series (worst first, as the API lists them)."""
    index = st.selectbox(
        label, range(len(series)), format_func=lambda i: series_choice(series[i]), key=key
    )
    return series[index]


def show_result(api: ApiClient, backtest: Backtest) -> None:
    """Metrics, a chart of one series (worst first), and the top anomalies."""
    if not outcome_ok(backtest):
        return
    show_metrics(backtest.get("summary") or {})
    series = backtest.get("series") or []
    if series:
        chosen = pick_series("Series", series, key=f"backtest-series-{backtest['id']}")
        chart(api, backtest, chosen, key="backtest-chart")
    st.subheader("Anomalies")
    rows = anomaly_rows(backtest.get("anomalies") or [], limit=50)
    if rows:
        show_table(rows)
    else:
        st.info("No point scored over 1 in this range.")


def chart(api: ApiClient, backtest: Backtest, series: dict[str, Any], key: str) -> None:
    try:
        points = daemon_or_stop(series_points, api, str(backtest["id"]), str(series["id"]))
    except ApiError as exc:
        st.error(f"Cannot read the series (HTTP {exc.status}): {plain(exc.message)}")
        return
    title = labels_text(series.get("labels") or {})
    st.plotly_chart(anomaly_figure(points, title), key=key)


def series_points(api: ApiClient, backtest_id: str, series_id: str) -> pd.DataFrame:
    return _cached_points(api, backtest_id, series_id)


@st.cache_data(max_entries=64, show_spinner=False)
def _cached_points(_api: ApiClient, backtest_id: str, series_id: str) -> pd.DataFrame:
    # A finished backtest never changes: its series can be kept by id (`_api` is not hashed).
    answer = _api.backtest_series(backtest_id, series_id)
    return pd.DataFrame(answer.get("points") or {})
