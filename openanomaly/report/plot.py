"""Backtest plots: actual values, the band and the anomalies, one panel per series.

`.html` needs nothing installed (inline SVG, one file to open or attach to a ticket); `.png`
uses matplotlib when it is installed.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

MAX_PANELS = 24  # a plot of hundreds of series helps nobody; the CSV has them all
WIDTH, HEIGHT, PAD = 960, 220, 36


def plot(scored: pd.DataFrame, path: Path, title: str) -> int:
    """Write the plot; returns how many series were drawn."""
    ids = list(pd.unique(scored["unique_id"]))[:MAX_PANELS]
    if path.suffix.lower() == ".png":
        _png(scored, ids, path, title)
    elif path.suffix.lower() in (".html", ".htm"):
        _html(scored, ids, path, title)
    else:
        raise ValueError(f"--plot {path}: use a .html or .png file name")
    return len(ids)


def _html(scored: pd.DataFrame, ids: list[str], path: Path, title: str) -> None:
    panels = [_svg(scored[scored["unique_id"] == uid], uid) for uid in ids]
    body = "\n".join(panels)
    path.write_text(
        f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>"
        "<style>body{font:13px sans-serif;margin:16px}h2{font-size:13px;margin:12px 0 2px}"
        "</style>"
        f"<h1 style='font-size:16px'>{html.escape(title)}</h1>"
        "<p>grey: band; blue: actual; red: score &gt; 1</p>"
        f"{body}\n",
        encoding="utf-8",
    )


def _svg(part: pd.DataFrame, uid: str) -> str:
    t = part["ds"].to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)
    columns = ("y", "yhat_lower", "yhat_upper")
    values = np.concatenate([part[c].to_numpy(dtype=np.float64) for c in columns])
    finite = values[np.isfinite(values)]
    if not len(t) or not len(finite):
        return f"<h2>{html.escape(uid)}</h2><p>no data</p>"
    lo, hi = float(finite.min()), float(finite.max())
    span_y = hi - lo or 1.0
    span_t = float(t.max() - t.min()) or 1.0

    def x(v: np.ndarray) -> np.ndarray:
        return np.asarray(PAD + (v - t.min()) / span_t * (WIDTH - 2 * PAD), dtype=np.float64)

    def y(v: np.ndarray) -> np.ndarray:
        return np.asarray(HEIGHT - PAD - (v - lo) / span_y * (HEIGHT - 2 * PAD), dtype=np.float64)

    def points(xs: np.ndarray, ys: np.ndarray) -> str:
        ok = np.isfinite(ys)
        return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs[ok], ys[ok], strict=True))

    xs = x(t)
    upper = y(part["yhat_upper"].to_numpy(dtype=np.float64))
    lower = y(part["yhat_lower"].to_numpy(dtype=np.float64))
    band = points(np.r_[xs, xs[::-1]], np.r_[upper, lower[::-1]])
    actual = points(xs, y(part["y"].to_numpy(dtype=np.float64)))
    flagged = part["score"].to_numpy(dtype=np.float64) > 1
    dots = "".join(
        f"<circle cx='{a:.1f}' cy='{b:.1f}' r='3' fill='#d62728'/>"
        for a, b in zip(xs[flagged], y(part["y"].to_numpy(dtype=np.float64))[flagged], strict=True)
    )
    first, last = part["ds"].iloc[0], part["ds"].iloc[-1]
    return (
        f"<h2>{html.escape(uid)}</h2>"
        f"<svg width='{WIDTH}' height='{HEIGHT}' xmlns='http://www.w3.org/2000/svg'>"
        f"<polygon points='{band}' fill='#ccc' stroke='none'/>"
        f"<polyline points='{actual}' fill='none' stroke='#1f77b4' stroke-width='1'/>{dots}"
        f"<text x='{PAD}' y='{HEIGHT - 8}'>{first:%Y-%m-%d %H:%M}</text>"
        f"<text x='{WIDTH - PAD}' y='{HEIGHT - 8}' text-anchor='end'>{last:%Y-%m-%d %H:%M}</text>"
        f"<text x='4' y='{PAD - 8}'>{hi:.4g}</text><text x='4' y='{HEIGHT - PAD + 14}'>"
        f"{lo:.4g}</text></svg>"
    )


def _png(scored: pd.DataFrame, ids: list[str], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError(
            f"--plot {path}: PNG plots need matplotlib (pip install matplotlib); "
            "an .html plot needs nothing"
        ) from None
    fig, axes = plt.subplots(len(ids), 1, figsize=(12, 2.6 * len(ids)), squeeze=False)
    for ax, uid in zip(axes[:, 0], ids, strict=True):
        part = scored[scored["unique_id"] == uid]
        ax.fill_between(part["ds"], part["yhat_lower"], part["yhat_upper"], color="#ccc")
        ax.plot(part["ds"], part["y"], lw=0.8)
        flagged = part[part["score"] > 1]
        ax.scatter(flagged["ds"], flagged["y"], color="#d62728", s=10, zorder=3)
        ax.set_title(uid, fontsize=9, loc="left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
