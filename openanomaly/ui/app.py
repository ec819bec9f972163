"""The Streamlit script of `openanomaly ui` (Streamlit executes it on every page view and
interaction). It only lays out the navigation; the pages live in `openanomaly.ui.views`."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

from openanomaly.ui.views import models_runs, overview, pipeline, playground


def main() -> None:
    # Streamlit puts this script's folder first on sys.path; the modules here are imported
    # as openanomaly.ui.*, and as top-level names (`client`, `errors`) they could shadow
    # another package's.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p != here]
    st.set_page_config(page_title="OpenAnomaly", layout="wide")
    pages = [
        st.Page(overview.render, title="Overview", url_path="overview", default=True),
        st.Page(pipeline.render, title="Pipeline", url_path="pipeline"),
        st.Page(playground.render, title="Playground", url_path="playground"),
        st.Page(models_runs.render, title="Models and runs", url_path="models"),
    ]
    st.navigation(pages).run()


if __name__ == "__main__":
    main()
