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
READING_TSDB = "Reading the TSDB…"


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


def parse_api_time(value: Any) -> datetime | None:
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
    """ok | failing | interrupted | training | never trained | stale model."""
    train, infer = last_run(state, "train"), last_run(state, "infer")
    statuses = {run.get("status") for run in (train, infer) if run is not None}
    if "failed" in statuses:
        return "failing"
    if "interrupted" in statuses:
        return "interrupted"  # the daemon stopped during the run; the next one is scheduled
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
    when = parse_api_time(run.get("finished") or run.get("started") or run.get("scheduled"))
    status = str(run.get("status", "?"))
    return f"{status}, {age(now - when)} ago" if when is not None else status


def overview_row(state: Mapping[str, Any], anomalies: int | None, now: datetime) -> dict[str, str]:
    created = parse_api_time(state.get("model_created"))
    next_infer = parse_api_time((state.get("next_run") or {}).get("infer"))
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
        when = parse_api_time(item.get("ds"))
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
    if not total:  # the daemon counts the fits once it has read the series
        return 0.0, READING_TSDB
    return min(1.0, done / total), f"Fitting models: {done}/{total}"


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


# --- runs -----------------------------------------------------------------------------------

ALL = "All"
RUN_KINDS = (ALL, "train", "infer")
RUN_STATUSES = (ALL, "ok", "failed", "running")
RUNS_LIMIT = 1000


def runs_query(kind: str, status: str) -> dict[str, Any]:
    """The filters the daemon applies itself (GET /api/v1/runs): the kind, and "failed", which
    there means failed or interrupted."""
    return {
        "kind": None if kind == ALL else kind,
        "failed": status == "failed",
        "limit": RUNS_LIMIT,
    }


def runs_shown(runs: Iterable[Mapping[str, Any]], status: str) -> list[Mapping[str, Any]]:
    """The daemon's runs narrowed to `status` where it cannot do it (ok, running); failed
    ones come back failed or interrupted and stay so."""
    if status in (ALL, "failed"):
        return list(runs)
    return [run for run in runs if run.get("status") == status]


# --- changes (saving, Train now) ------------------------------------------------------------

WRITES_OFF_UI_ONLY = (
    "The UI has an API token but the daemon has none, so the daemon refuses changes: set the "
    "same http.api_token in the daemon's settings (or OA_HTTP__API_TOKEN)."
)
WRITES_OFF_DAEMON_ONLY = (
    "The daemon has an http.api_token but the UI has none, so the daemon would refuse the UI's "
    "changes: give the UI the same token (http.api_token in its settings, or "
    "OA_HTTP__API_TOKEN)."
)


def writes_refused(ui_has_token: bool, writes_enabled: bool | None, writes_off: str) -> str | None:
    """Why a change (saving, a run started by hand) cannot work, or None when it can as far as
    the UI can tell (a wrong token still shows as the daemon's 401 on the click).
    `writes_enabled` is GET /api/v1/info's (None when unknown: then only the UI's side counts);
    `writes_off` is what the page says when neither side has a token."""
    if writes_enabled is None or writes_enabled == ui_has_token:
        return None if ui_has_token else writes_off
    return WRITES_OFF_UI_ONLY if ui_has_token else WRITES_OFF_DAEMON_ONLY


def save_outcome(answer: Mapping[str, Any], name: str) -> tuple[bool, str]:
    """(loaded, message) of PUT /api/v1/pipelines/{name}'s 201: the file can be written while
    the daemon cannot load it yet (`"loaded": false` with a `reason`)."""
    file = str(answer.get("file", f"{name}.yaml"))
    pipeline = str(answer.get("pipeline") or name)
    if answer.get("loaded", True) is False:
        reason = str(answer.get("reason") or "no reason given")
        return False, f"Saved {file}, but the daemon has not loaded pipeline {pipeline}: {reason}"
    return True, f"Saved {file}; the daemon loaded pipeline {pipeline}."


# --- models and runs ------------------------------------------------------------------------


def models_summary(models: Iterable[Mapping[str, Any]]) -> str:
    """Under the models grid (a canvas: this line is the text people and tests can read):
    `3 model versions; active: cpu v2 (12 series), web v1 (3 series)`."""
    models = list(models)
    active = sorted(
        (str(m["pipeline"]), int(m["version"]), m.get("series_count"))
        for m in models
        if m.get("status") == "active"
    )
    named = ", ".join(f"{p} v{v} ({n} series)" for p, v, n in active) or "none"
    return f"{len(models)} model version{'s' if len(models) != 1 else ''}; active: {named}"


def runs_summary(runs: Iterable[Mapping[str, Any]]) -> str:
    """Under the runs grid: `25 runs: 20 ok, 4 failed, 1 running`, in that order."""
    runs = list(runs)
    counts: dict[str, int] = {}
    for run in runs:
        counts[str(run.get("status"))] = counts.get(str(run.get("status")), 0) + 1
    order = ["ok", "failed", "interrupted", "running"]
    parts = [f"{counts.pop(s)} {s}" for s in order if s in counts]
    parts += [f"{n} {s}" for s, n in sorted(counts.items())]
    return f"{len(runs)} run{'s' if len(runs) != 1 else ''}: {', '.join(parts)}"
