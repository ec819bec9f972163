"""The web UI (`openanomaly ui`): Streamlit pages over the daemon's HTTP API and the TSDB.

Everything that needs streamlit lives in `app` and `views`; the rest (API client, TSDB reads,
charts, alert rules, formatting) is plain Python so it can be tested without a browser.
"""
