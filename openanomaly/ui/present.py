"""API answers turned into what the pages show: table rows, statuses, ages. Pure, so the texts
the pages promise (column names, formats) are tested without a browser."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from openanomaly.errors import Problem

OVERVIEW_COLUMNS = (
    "Pipeline",
    "Status",
    "Last train",
    "Last infer",
    "Series",
    "Anomalies (24 h)",
    "Model age",
    "Next infer",
)
ANOMALY_COLUMNS = ("Series", "Time (UTC)", "Value", "Forecast", "Band", "Score")
TIME_FORMAT = "%Y-%m-%d %H:%M"
NONE = "—"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~$])")


def plain(text: str) -> str:
    """`text` shown as is by Streamlit's messages, which render Markdown: a problem or an error
    from elsewhere (`*` in a cron, `_x_` in a name, `$` in a query) must not turn into
    emphasis, code or LaTeX, and must read exactly as `openanomaly validate` prints it."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def problem_line(problem: Problem) -> str:
    """`file:line: field: reason`, as `openanomaly validate` prints it (without the line or
    the field when they are unknown)."""
    return str(problem)


def labels_text(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{labels[k]}"' for k in sorted(labels)) + "}"


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time of the API (UTC when it has no offset), or None."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(delta: timedelta) -> str:
    """The two largest units: `45s`, `12m 5s`, `3h 12m`, `2d 4h`."""
    seconds = max(0, int(delta.total_seconds()))
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count or (unit == "s" and not parts):
            parts.append(f"{count}{unit}")
    return " ".join(parts[:2])


def number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NONE
    return f"{float(value):.6g}"


# --- overview -------------------------------------------------------------------------------


def last_run(state: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    run = (state.get("last_runs") or {}).get(kind)
    return run if isinstance(run, Mapping) else None


def pipeline_status(state: Mapping[str, Any]) -> str:
    """ok | failing | training | never trained | stale model."""
    train, infer = last_run(state, "train"), last_run(state, "infer")
    if any(run is not None and run.get("status") == "failed" for run in (train, infer)):
        return "failing"
    if train is not None and train.get("status") == "running":
        return "training"
    if state.get("model") is None:
        return "never trained"
    if state.get("model_stale"):
        return "stale model"  # trained for another configuration; the next train replaces it
    return "ok"


def failures(state: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, error) of the pipeline's last runs that failed."""
    found = []
    for kind in ("train", "infer"):
        run = last_run(state, kind)
        if run is not None and run.get("status") == "failed":
            found.append((kind, str(run.get("error") or "no error recorded")))
    return found


def run_summary(run: Mapping[str, Any] | None, now: datetime) -> str:
    if run is None:
        return "never"
    when = parse_time(run.get("finished") or run.get("started") or run.get("scheduled"))
    status = str(run.get("status", "?"))
    return f"{status}, {age(now - when)} ago" if when is not None else status


def overview_row(state: Mapping[str, Any], anomalies: int | None, now: datetime) -> dict[str, str]:
    created = parse_time(state.get("model_created"))
    next_infer = parse_time((state.get("next_run") or {}).get("infer"))
    series = state.get("series_count")
    row = {
        "Pipeline": str(state.get("name", "?")),
        "Status": pipeline_status(state),
        "Last train": run_summary(last_run(state, "train"), now),
        "Last infer": run_summary(last_run(state, "infer"), now),
        "Series": NONE if series is None else str(series),
        "Anomalies (24 h)": "?" if anomalies is None else str(anomalies),
        "Model age": age(now - created) if created is not None else NONE,
        "Next infer": _until(next_infer, now),
    }
    return {column: row[column] for column in OVERVIEW_COLUMNS}


def _until(when: datetime | None, now: datetime) -> str:
    if when is None:
        return NONE
    return f"in {age(when - now)}" if when > now else "now"


# --- anomalies ------------------------------------------------------------------------------


def anomaly_rows(anomalies: Iterable[Mapping[str, Any]], limit: int = 50) -> list[dict[str, str]]:
    """The API's backtest anomalies (`labels, ds, y, yhat, yhat_lower, yhat_upper, score`),
    highest score first, as table rows."""
    ranked = sorted(anomalies, key=lambda a: -_score(a.get("score")))[:limit]
    rows = []
    for item in ranked:
        when = parse_time(item.get("ds"))
        rows.append(
            {
                "Series": labels_text(item.get("labels") or {}),
                "Time (UTC)": when.astimezone(UTC).strftime(TIME_FORMAT) if when else NONE,
                "Value": number(item.get("y")),
                "Forecast": number(item.get("yhat")),
                "Band": f"{number(item.get('yhat_lower'))} – {number(item.get('yhat_upper'))}",
                "Score": f"{_score(item.get('score')):.2f}",
            }
        )
    return rows


def _score(value: Any) -> float:
    if value is None:
        return -math.inf
    score = float(value)
    return -math.inf if math.isnan(score) else score


def series_choice(series: Mapping[str, Any]) -> str:
    """One line of the series picker: labels and the worst score."""
    score = series.get("max_score")
    shown = f"max score {float(score):.2f}" if score is not None else "not scored"
    return f"{labels_text(series.get('labels') or {})} ({shown})"


def backtest_metrics(summary: Mapping[str, Any]) -> dict[str, str]:
    """Series, points, anomalies, MAE and band coverage, as the metric tiles show them."""
    coverage = summary.get("coverage")
    return {
        "Series": str(summary.get("series", NONE)),
        "Points": f"{int(summary.get('points') or 0):,}",
        "Anomalies": str(summary.get("anomalies", NONE)),
        "MAE": number(summary.get("mae")),
        "Band coverage": NONE if coverage is None else f"{float(coverage):.1%}",
    }


def progress(backtest: Mapping[str, Any]) -> tuple[float, str]:
    """(fraction done, text) of a queued or running backtest."""
    if backtest.get("status") == "queued":
        return 0.0, "Queued: waiting for the backtests ahead of it"
    done = int((backtest.get("progress") or {}).get("done") or 0)
    total = int((backtest.get("progress") or {}).get("total") or 0)
    fraction = min(1.0, done / total) if total else 0.0
    return fraction, f"Fitting models: {done}/{total}"


def comparison_row(label: str, summary: Mapping[str, Any]) -> dict[str, str]:
    seconds = summary.get("seconds")
    coverage = summary.get("coverage")
    return {
        "Model": label,
        "Anomalies": str(summary.get("anomalies", NONE)),
        "MAE": number(summary.get("mae")),
        "Band coverage": NONE if coverage is None else f"{float(coverage):.1%}",
        "Fits": str(summary.get("fits", NONE)),
        "Seconds": NONE if seconds is None else f"{float(seconds):.1f}",
    }
