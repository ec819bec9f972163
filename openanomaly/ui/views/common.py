"""What every page does the same way: reach the daemon or say why not, show problems.

Messages render Markdown: text from elsewhere (reasons, names, problems) goes through `plain`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from openanomaly.errors import Problem
from openanomaly.ui.client import ApiClient
from openanomaly.ui.errors import ApiError, DaemonUnreachable, TsdbError, TsdbUnavailable
from openanomaly.ui.present import plain, problem_line, writes_refused

T = TypeVar("T")
SAVED = ".saved"  # suffix of the key that keeps a widget's value across pages


def unreachable_text(exc: DaemonUnreachable) -> str:
    return (
        f"Cannot reach the OpenAnomaly daemon at {exc.url}: {plain(exc.reason)}. "
        "Start it with `openanomaly run`."
    )


def daemon_or_stop(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call the API; when the daemon is unreachable, say so and end the page there."""
    try:
        return call(*args, **kwargs)
    except DaemonUnreachable as exc:
        st.error(unreachable_text(exc))
        st.stop()


def read_or_stop(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A read the page cannot do without: any failure is shown and ends the page."""
    try:
        return daemon_or_stop(call, *args, **kwargs)
    except ApiError as exc:
        st.error(f"The daemon answered HTTP {exc.status}: {plain(exc.message)}")
        st.stop()


def show_api_error(exc: ApiError, action: str) -> None:
    """A refused change or backtest: each located problem, or the daemon's message."""
    if exc.problems:
        show_problems(exc.problems)
    elif exc.status == 403:
        st.error(
            f"Cannot {action}: the daemon has no http.api_token, so it refuses changes. "
            "Set http.api_token in the daemon's settings (or OA_HTTP__API_TOKEN) and give the "
            "UI the same token."
        )
    elif exc.status == 401:
        st.error(
            f"Cannot {action}: the daemon refused the UI's token ({plain(exc.message)}). "
            "Give the UI the daemon's http.api_token (settings file or OA_HTTP__API_TOKEN)."
        )
    else:
        st.error(f"Cannot {action} (HTTP {exc.status}): {plain(exc.message)}")


def show_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Rows as an st.table (real HTML, readable by people and tests alike). Its cells render
    Markdown too: `{__name__="up"}` would lose its underscores to bold, so text goes in plain."""
    frame = pd.DataFrame(list(rows), columns=list(columns) if columns is not None else None)
    st.table(frame.map(lambda v: plain(v) if isinstance(v, str) else v), hide_index=True)


def show_problems(problems: Iterable[Problem]) -> None:
    for problem in problems:
        st.error(plain(problem_line(problem)))


def tsdb_text(exc: TsdbError) -> str:
    if isinstance(exc, TsdbUnavailable):
        return f"TSDB unreachable at {exc.url}: {plain(exc.reason)}"
    return f"The TSDB at {exc.url} refused the query: {plain(exc.reason)}"


# --- values that outlive a page change ------------------------------------------------------


def keep_values(state: MutableMapping[Any, Any], defaults: Mapping[str, Any]) -> None:
    """Call at the top of every run of a page, before its widgets: Streamlit deletes a
    widget's state in a run that does not draw it (another page), so each widget's value is
    also kept under a key of its own (`key + ".saved"`). A widget key Streamlit dropped comes
    back from that copy (its default the first time); one it kept refreshes the copy."""
    for key, default in defaults.items():
        saved = key + SAVED
        if key not in state:
            state[key] = state.get(saved, default)
        state[saved] = state[key]


def keep_choice(state: MutableMapping[Any, Any], key: str, options: Sequence[Any]) -> None:
    """`keep_values` for a selectbox whose options change: a kept choice that is no longer
    offered falls back to the first option."""
    keep_values(state, {key: options[0]})
    if state[key] not in options:
        state[key] = state[key + SAVED] = options[0]


def remember(*keys: str) -> None:
    """An on_change callback: copy the widgets' new values to their kept copies at once (the
    change may arrive with a switch to another page, which does not run this page's top)."""
    for key in keys:
        if key in st.session_state:
            st.session_state[key + SAVED] = st.session_state[key]


# --- changes --------------------------------------------------------------------------------


def write_refusal(api: ApiClient, writes_off: str) -> str | None:
    """Why the daemon would refuse this UI's changes, from the UI's token and the daemon's
    `writes_enabled` (GET /api/v1/info), or None when they should go through."""
    try:
        enabled = api.info().get("writes_enabled")
    except (ApiError, DaemonUnreachable):
        enabled = None  # unknown: the click still says why the daemon refused
    return writes_refused(api.can_write, enabled if isinstance(enabled, bool) else None, writes_off)
