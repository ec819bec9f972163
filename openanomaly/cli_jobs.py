"""Commands that run one job in the foreground or show the registry: train, infer, models,
runs. Tables on a terminal, `--json` for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from openanomaly.cli import app, load, with_settings
from openanomaly.errors import ConfigError, Problem

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _app_and_pipeline(settings_args: dict[str, Any], name: str) -> tuple[Any, Any]:
    from openanomaly.bootstrap import build
    from openanomaly.logs import configure_logging

    loaded = load(settings_args)
    configure_logging(loaded.settings.log)
    application = build(loaded.settings)
    pipelines = application.pipelines.load()
    found = pipelines.by_name().get(name)
    if found is None:
        application.close(timeout=5)
        mine = list(pipelines.problems)
        known = ", ".join(sorted(pipelines.by_name())) or "none"
        reason = f"no valid pipeline named {name!r} (valid: {known})"
        raise ConfigError([*mine, Problem(str(loaded.settings.pipelines_dir), 0, "", reason)])
    return application, found.pipeline


def _run_once(settings_args: dict[str, Any], name: str, kind: str, as_json: bool) -> None:
    """One train or infer run in the foreground, printed; exit 1 unless it succeeded."""
    from openanomaly.daemon.http import run_json
    from openanomaly.usecases.common import ModelCache
    from openanomaly.usecases.infer import infer
    from openanomaly.usecases.train import train

    application, pipeline = _app_and_pipeline(settings_args, name)
    try:
        if kind == "train":
            keep = application.settings.jobs.keep_models
            run = train(pipeline, application.ports(), keep_models=keep)
        else:
            run = infer(pipeline, application.ports(), ModelCache()).run
    finally:
        application.close(timeout=30)
    columns = ["pipeline", "kind", "status", "series_scored", "samples_written", "error"]
    _print([run_json(run)], as_json, columns)
    if run.status != "ok":
        sys.exit(1)


@app.command("train")
@with_settings
def train_command(
    name: Annotated[str, typer.Argument(help="Pipeline name.")],
    as_json: JsonFlag = False,
    *,
    settings_args: dict[str, Any],
) -> None:
    """Train one pipeline now, in the foreground; exit 0 only when a model was registered."""
    _run_once(settings_args, name, "train", as_json)


@app.command("infer")
@with_settings
def infer_command(
    name: Annotated[str, typer.Argument(help="Pipeline name.")],
    as_json: JsonFlag = False,
    *,
    settings_args: dict[str, Any],
) -> None:
    """Score one pipeline's new points now, in the foreground; exit 0 only on success."""
    _run_once(settings_args, name, "infer", as_json)


@app.command("models")
@with_settings
def models_command(
    name: Annotated[str | None, typer.Argument(help="Only this pipeline.")] = None,
    as_json: JsonFlag = False,
    *,
    settings_args: dict[str, Any],
) -> None:
    """Model versions in the registry, newest first."""
    from openanomaly.daemon.http import model_json

    with _registry(settings_args) as registry:
        rows = [model_json(m) for m in registry.models(name)]
    columns = ["pipeline", "version", "status", "engine", "series_count", "created", "fit_seconds"]
    _print(rows, as_json, columns)


@app.command("runs")
@with_settings
def runs_command(
    name: Annotated[str | None, typer.Argument(help="Only this pipeline.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed runs.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    as_json: JsonFlag = False,
    *,
    settings_args: dict[str, Any],
) -> None:
    """Recent train and infer runs, newest first."""
    from openanomaly.daemon.http import run_json

    with _registry(settings_args) as registry:
        rows = [run_json(r) for r in registry.runs(name, failed_only=failed, limit=limit)]
    columns = ["pipeline", "kind", "status", "started", "series_scored", "samples_written", "error"]
    _print(rows, as_json, columns)


@contextmanager
def _registry(settings_args: dict[str, Any]) -> Iterator[Any]:
    """The registry alone: showing it needs no TSDB client and no engine."""
    from openanomaly.adapters.model_registry.sql import SqlRegistry

    registry = SqlRegistry(load(settings_args).settings.storage.effective_registry_url)
    try:
        yield registry
    finally:
        registry.close()


def _print(rows: list[dict[str, Any]], as_json: bool, columns: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        typer.echo("(none)")
        return
    table = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in table:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
