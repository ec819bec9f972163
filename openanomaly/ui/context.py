"""The UI's settings, API client and TSDB reader: built once per server process and shared by
every session and rerun (st.cache_resource), from the arguments `openanomaly ui` passed."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import streamlit as st

from openanomaly.config.settings import Settings
from openanomaly.errors import ConfigError
from openanomaly.ui.client import ApiClient
from openanomaly.ui.launch import api_url_from_listen, parse_script_args
from openanomaly.ui.tsdb import TsdbReads


@dataclass(frozen=True)
class UiContext:
    settings: Settings
    api: ApiClient
    tsdb: TsdbReads


@st.cache_resource(show_spinner=False)
def _build(argv: tuple[str, ...]) -> UiContext:
    from openanomaly.adapters.metrics_reader.prometheus import PrometheusReader
    from openanomaly.cli import load
    from openanomaly.ui.tsdb import ui_reader_settings

    options, api_url = parse_script_args(list(argv))
    settings: Settings = load(options).settings
    token = settings.http.api_token
    api = ApiClient(
        api_url or api_url_from_listen(settings.http.listen),
        token.get_secret_value() if token is not None else None,
    )
    reader = PrometheusReader(ui_reader_settings(settings.tsdb))
    return UiContext(settings, api, TsdbReads(reader, settings.tsdb.url))


def ui_context() -> UiContext:
    """The shared context; invalid settings are shown and stop the page (nothing is cached,
    so fixing the file and reloading the page is enough)."""
    try:
        return _build(tuple(sys.argv[1:]))
    except ConfigError as exc:
        st.error("The UI cannot load its settings:\n\n" + "\n\n".join(map(str, exc.problems)))
        st.stop()
