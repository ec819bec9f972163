"""`openanomaly backtest`: replay a pipeline over history, from the TSDB or a CSV file."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from openanomaly.cli import app, load, with_settings
from openanomaly.durations import parse_time
from openanomaly.errors import ConfigError, Problem


@app.command("backtest")
@with_settings
def backtest_command(  # noqa: PLR0917 - typer maps parameters to options
    name: Annotated[str, typer.Argument(help="Pipeline name.")],
    start: Annotated[
        str, typer.Option("--from", help="Start: ISO 8601, Unix seconds, or a duration ago (7d).")
    ],
    end: Annotated[str, typer.Option("--to", help="End (default: now).")] = "0s",
    csv: Annotated[
        Path | None,
        typer.Option("--csv", help="Read timestamp,value (or timestamp,series,value) from here."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write every scored point (CSV).")
    ] = None,
    plot_file: Annotated[
        Path | None, typer.Option("--plot", help="Draw actual, band, anomalies (.html or .png).")
    ] = None,
    write: Annotated[
        bool, typer.Option("--write", help="Write the results to the TSDB (remote write).")
    ] = False,
    *,
    settings_args: dict[str, Any],
) -> None:
    """Replay PIPELINE's schedule over history without look-ahead: refit every train.every
    on the train.window before, score every point as infer would."""
    from openanomaly.adapters.model_engine.catalogs import model_catalog
    from openanomaly.adapters.model_engine.factory import model_engine
    from openanomaly.adapters.pipeline_source.directory import DirectoryPipelineSource
    from openanomaly.logs import configure_logging
    from openanomaly.usecases.backtest import backtest

    loaded = load(settings_args)
    settings = loaded.settings
    configure_logging(settings.log)
    pipelines = DirectoryPipelineSource(settings.pipelines_dir, model_catalog).load()
    found = pipelines.by_name().get(name)
    if found is None:
        known = ", ".join(sorted(pipelines.by_name())) or "none"
        reason = f"no valid pipeline named {name!r} (valid: {known})"
        raise ConfigError(
            [*pipelines.problems, Problem(str(settings.pipelines_dir), 0, "", reason)]
        )
    pipeline = found.pipeline
    now = datetime.now(UTC)
    begin, finish = parse_time(start, "--from", now), parse_time(end, "--to", now)
    if csv is not None:
        from openanomaly.adapters.metrics_reader.csv_file import CsvReader

        reader: Any = CsvReader(csv)
    else:
        from openanomaly.adapters.metrics_reader.prometheus import PrometheusReader

        reader = PrometheusReader(settings.tsdb)
    try:
        result = backtest(
            pipeline,
            reader,
            model_engine(pipeline.model.engine),
            begin,
            finish,
            progress=_progress_bar(),
        )
    except ValueError as exc:
        raise ConfigError([Problem("--from/--to", 0, "", str(exc))]) from None
    finally:
        reader.close()
    scored = result.scored
    flagged = int((scored["score"] > 1).sum()) if len(scored) else 0
    typer.echo(
        f"{name}: {scored['unique_id'].nunique() if len(scored) else 0} series, "
        f"{len(scored)} points scored with {result.fits} fit(s); {flagged} over 1; "
        f"{len(result.skipped)} series not scored",
        err=True,
    )
    for uid, reason in list(result.skipped.items())[:5]:
        typer.echo(f"  not scored: {uid}: {reason}", err=True)
    if out is not None:
        scored.to_csv(out, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
        typer.echo(f"wrote {out}", err=True)
    if plot_file is not None:
        from openanomaly.report.plot import plot

        try:
            drawn = plot(scored, plot_file, f"backtest of {name}")
        except ValueError as exc:
            raise ConfigError([Problem("--plot", 0, "", str(exc))]) from None
        typer.echo(f"wrote {plot_file} ({drawn} series)", err=True)
    if write:
        _write(settings, pipeline, result)
    if not len(scored):
        sys.exit(1)


def _write(settings: Any, pipeline: Any, result: Any) -> None:
    from openanomaly.adapters.metrics_writer.remote_write import RemoteWriteWriter
    from openanomaly.domain.outputs import build_outputs

    own = {"pipeline": pipeline.name, "model": pipeline.model.name, **pipeline.output.labels}
    series = build_outputs(result.scored, result.labels, pipeline.output.prefix, own)
    import tempfile

    # An outbox of its own, thrown away after: the daemon's outbox belongs to the daemon (its
    # batch numbers and temp files are private to one process). A backtest that cannot
    # write says so and can simply be run again.
    with tempfile.TemporaryDirectory(prefix="openanomaly-backtest-") as outbox:
        writer = RemoteWriteWriter(settings.tsdb, settings.remote_write, Path(outbox))
        try:
            written = writer.write(series)
        finally:
            writer.close(30)
    typer.echo(f"wrote {written.accepted} samples to the TSDB", err=True)
    if written.queued or written.dropped:
        reason = (
            f"{written.queued + written.dropped} samples not written "
            f"({'; '.join(written.errors[:3]) or 'TSDB unavailable'}); run again to retry"
        )
        raise ConfigError([Problem("--write", 0, "", reason)])


def _progress_bar() -> Any:
    if not sys.stderr.isatty():
        return None
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = typer.progressbar(length=total, label="fitting", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)
        if done >= total:
            bar.__exit__(None, None, None)

    return update
