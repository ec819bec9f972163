"""One chart per series: the band, the forecast, the actual values, the anomalies, and the score
on a second axis. Pure plotly (no streamlit), so the pages and the tests draw the same figure."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

SCORE_LIMIT = 1.0  # 0 on the forecast, 1 at the band edge, over 1 outside it
BAND_FILL = "rgba(99, 110, 250, 0.18)"
FORECAST_COLOR = "#636efa"
ACTUAL_COLOR = "#2a2a2a"
ANOMALY_COLOR = "#d62728"
SCORE_COLOR = "#8c8c8c"
_COLUMNS = ("y", "yhat", "yhat_lower", "yhat_upper", "score")


def anomaly_figure(points: pd.DataFrame, title: str, height: int = 360) -> go.Figure:
    """`points` has ds and some of y, yhat, yhat_lower, yhat_upper, score (missing columns and
    NaN are unknown values: gaps in the lines, never zeros)."""
    data = _normalized(points)
    x = data["ds"]
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    # The lower edge is drawn first and invisibly, so the upper edge can fill down to it.
    figure.add_trace(
        _line(x, data["yhat_lower"], "band (lower)", legendgroup="band", showlegend=False),
        secondary_y=False,
    )
    figure.add_trace(
        _line(x, data["yhat_upper"], "band", legendgroup="band", fill="tonexty"),
        secondary_y=False,
    )
    figure.add_trace(
        go.Scatter(
            x=x, y=data["yhat"], name="forecast", mode="lines", line={"color": FORECAST_COLOR}
        ),
        secondary_y=False,
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=data["y"],
            name="actual",
            mode="lines",
            line={"color": ACTUAL_COLOR, "width": 1.5},
        ),
        secondary_y=False,
    )
    over = data[(data["score"] > SCORE_LIMIT) & data["y"].notna()]
    figure.add_trace(
        go.Scatter(
            x=over["ds"],
            y=over["y"],
            name="anomaly (score > 1)",
            mode="markers",
            marker={"color": ANOMALY_COLOR, "size": 8, "symbol": "circle"},
            customdata=over["score"],
            hovertemplate="%{x}<br>value %{y}<br>score %{customdata:.2f}<extra></extra>",
        ),
        secondary_y=False,
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=data["score"],
            name="score",
            mode="lines",
            line={"color": SCORE_COLOR, "dash": "dot", "width": 1},
        ),
        secondary_y=True,
    )
    figure.add_hline(
        y=SCORE_LIMIT, line={"color": ANOMALY_COLOR, "dash": "dot", "width": 1}, secondary_y=True
    )
    figure.update_layout(
        title={"text": title, "font": {"size": 13}},
        height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        hovermode="x unified",
        # Above the plot, right-aligned: below it the legend collides with the axis title.
        legend={"orientation": "h", "x": 1, "xanchor": "right", "y": 1.0, "yanchor": "bottom"},
    )
    figure.update_xaxes(title_text="time (UTC)")
    figure.update_yaxes(title_text="value", secondary_y=False)
    # The score axis starts at 0 and always shows the line at 1, however calm the series.
    top = data["score"].max()
    top = max(2 * SCORE_LIMIT, float(top) * 1.05) if pd.notna(top) else 2 * SCORE_LIMIT
    figure.update_yaxes(title_text="score", range=[0, top], showgrid=False, secondary_y=True)
    if data.empty:
        figure.add_annotation(
            text="No data in this range", showarrow=False, xref="paper", yref="paper"
        )
    return figure


def _normalized(points: pd.DataFrame) -> pd.DataFrame:
    data = points.copy()
    for column in _COLUMNS:
        if column not in data:
            data[column] = float("nan")
        data[column] = pd.to_numeric(data[column], errors="coerce").astype("float64")
    ds = pd.to_datetime(data["ds"] if "ds" in data else pd.Series(dtype="object"), utc=True)
    # Plotly draws times as given; naive UTC keeps the axis in UTC in every browser.
    data["ds"] = ds.dt.tz_localize(None)
    return data.sort_values("ds", kind="stable").reset_index(drop=True)


def _line(x: Any, y: Any, name: str, **options: Any) -> go.Scatter:
    return go.Scatter(
        x=x,
        y=y,
        name=name,
        mode="lines",
        line={"width": 0, "color": FORECAST_COLOR},
        fillcolor=BAND_FILL,
        hoverinfo="skip" if not options.get("showlegend", True) else None,
        **options,
    )
