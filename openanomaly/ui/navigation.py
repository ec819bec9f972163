"""The UI's pages, in one place: the navigation and the links between pages use the same Page
objects (Streamlit tells pages apart by their url_path)."""

from __future__ import annotations

import streamlit as st

from openanomaly.ui.views import models_runs, overview, pipeline, playground


def models_runs_page() -> st.Page:
    return st.Page(models_runs.render, title="Models and runs", url_path="models")


def all_pages() -> list[st.Page]:
    return [
        st.Page(overview.render, title="Overview", url_path="overview", default=True),
        st.Page(pipeline.render, title="Pipeline", url_path="pipeline"),
        st.Page(playground.render, title="Playground", url_path="playground"),
        models_runs_page(),
    ]
