"""The Streamlit script of `openanomaly ui` (Streamlit executes it on every page view and
interaction). It only lays out the navigation; the pages live in `openanomaly.ui.views`."""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

from openanomaly.ui.navigation import all_pages


def main() -> None:
    # Streamlit puts this script's folder first on sys.path; the modules here are imported
    # as openanomaly.ui.*, and as top-level names (`client`, `errors`) they could shadow
    # another package's.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p != here]
    st.set_page_config(page_title="OpenAnomaly", layout="wide")
    st.navigation(all_pages()).run()


if __name__ == "__main__":
    main()
