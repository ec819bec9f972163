"""The `openanomaly` command line.

Exit codes: 0 success, 1 the user's input is wrong (every problem printed as
`file:line: field: reason`), 2 the command line itself is wrong, 3 an internal error (a bug:
rerun with OA_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
import yaml

from openanomaly import __version__
from openanomaly.config.settings_loader import ENV_DEBUG
from openanomaly.errors import ConfigError, OpenAnomalyError, Problem

app = typer.Typer(
    name="openanomaly",
    help="Forecast-based anomaly detection for Prometheus-compatible TSDBs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")

log = logging.getLogger("openanomaly")
F = TypeVar("F", bound=Callable[..., Any])

# --- settings options, shared by every command that needs settings ----------------------------

_SETTINGS_OPTIONS: list[inspect.Parameter] = [
    inspect.Parameter(
        "config",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Option(
                "--config",
                "-c",
                help="Settings file (default: $OA_CONFIG, else ./openanomaly.yaml).",
                rich_help_panel="Settings",
            ),
        ],
    ),
    inspect.Parameter(
        "set_",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            list[str] | None,
            typer.Option(
                "--set",
                metavar="KEY=VALUE",
                help="Override a setting, e.g. --set tsdb.timeout=1m.",
                rich_help_panel="Settings",
            ),
        ],
    ),
    inspect.Parameter(
        "tsdb_url",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--tsdb-url", help="Same as --set tsdb.url=URL.", rich_help_panel="Settings"
            ),
        ],
    ),
    inspect.Parameter(
        "data_dir",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--data-dir", help="Same as --set storage.data_dir=DIR.", rich_help_panel="Settings"
            ),
        ],
    ),
    inspect.Parameter(
        "pipelines_dir",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--pipelines-dir",
                help="Same as --set pipelines_dir=DIR.",
                rich_help_panel="Settings",
            ),
        ],
    ),
    inspect.Parameter(
        "log_level",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            typer.Option(
                "--log-level", help="debug | info | warning | error.", rich_help_panel="Settings"
            ),
        ],
    ),
]
_SHORTCUTS = {
    "tsdb_url": ("tsdb", "url"),
    "data_dir": ("storage", "data_dir"),
    "pipelines_dir": ("pipelines_dir",),
    "log_level": ("log", "level"),
}


def with_settings(fn: F) -> F:
    """Give a command the settings options; it receives `settings_args` (the raw options)
    and calls `load(settings_args)` when it wants the settings."""
    # eval_str: typer reads annotations from __signature__ as given, so they must be objects.
    signature = inspect.signature(fn, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "settings_args"]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        options = {p.name: kwargs.pop(p.name, None) for p in _SETTINGS_OPTIONS}
        return fn(*args, settings_args=options, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*own, *_SETTINGS_OPTIONS])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *_SETTINGS_OPTIONS]}
    return wrapper  # type: ignore[return-value]


def load(options: dict[str, Any]) -> Any:
    """Load settings from file, env and the options; ConfigError lists every problem."""
    from openanomaly.config.settings_loader import Override, load_settings, parse_override_value

    overrides = []
    for item in options.get("set_") or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError([Problem(f"--set {item}", 0, "", "expected KEY=VALUE")])
        path = tuple(key.strip().split("."))
        overrides.append(Override(path, parse_override_value(value), f"--set {key.strip()}"))
    for name, path in _SHORTCUTS.items():
        if options.get(name) is not None:
            flag = "--" + name.replace("_", "-")
            overrides.append(Override(path, options[name], flag))
    return load_settings(options.get("config"), overrides=overrides)


def _print_problems(problems: list[Problem]) -> None:
    for problem in problems:
        typer.echo(str(problem))


# --- commands -----------------------------------------------------------------------------------


@app.command()
@with_settings
def validate(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Pipeline files or directories (default: the settings' pipelines_dir)."
        ),
    ] = None,
    output_json: Annotated[bool, typer.Option("--json", help="Print problems as JSON.")] = False,
    *,
    settings_args: dict[str, Any],
) -> None:
    """Check settings and pipeline files; print each problem as file:line: field: reason."""
    from openanomaly.adapters.model_engine.catalogs import model_catalog
    from openanomaly.adapters.pipeline_source.directory import load_pipeline_paths

    problems: list[Problem] = []
    pipelines_dir: Path | None = None
    try:
        loaded = load(settings_args)
        pipelines_dir = loaded.settings.pipelines_dir
    except ConfigError as exc:
        problems += exc.problems
        # Still check the pipelines: where the flag says, else the default directory.
        pipelines_dir = Path(settings_args.get("pipelines_dir") or "pipelines.d")
    targets = list(paths or ([pipelines_dir] if pipelines_dir is not None else []))
    result = load_pipeline_paths(targets, model_catalog) if targets else None
    if result is not None:
        problems += result.problems
    valid = len(result.pipelines) if result is not None else 0
    if output_json:
        typer.echo(
            json.dumps(
                {
                    "valid_pipelines": [p.pipeline.name for p in result.pipelines]
                    if result
                    else [],
                    "problems": [vars(p) for p in problems],
                },
                indent=2,
            )
        )
    else:
        _print_problems(problems)
        summary = f"{valid} valid pipeline(s), {len(problems)} problem(s)"
        typer.echo(summary, err=True)
    if problems:
        raise typer.Exit(1)


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of pipeline files (for yaml-language-server / VS Code)."""
    from openanomaly.config.schema import pipeline_file_schema

    text = json.dumps(pipeline_file_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        reason = f"cannot write: {exc.strerror}"
        raise ConfigError([Problem(f"--output {output}", 0, "", reason)]) from None


@config_app.command("show")
@with_settings
def config_show(
    output_format: Annotated[str, typer.Option("--format", help="yaml or json.")] = "yaml",
    *,
    settings_args: dict[str, Any],
) -> None:
    """Print the effective settings (defaults < file < env < flags), secrets masked."""
    if output_format not in ("yaml", "json"):
        raise typer.BadParameter("must be yaml or json", param_hint="--format")
    loaded = load(settings_args)
    data = loaded.masked()
    if output_format == "json":
        typer.echo(json.dumps(data, indent=2))
        return
    source = loaded.config_file or "none (defaults, env and flags only)"
    typer.echo(f"# settings file: {source}")
    typer.echo(yaml.safe_dump(data, sort_keys=False, default_flow_style=False), nl=False)


@app.command()
def version() -> None:
    """Print the version of OpenAnomaly and of the libraries that shape its results."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    typer.echo(f"openanomaly {__version__}")
    typer.echo(f"python {platform.python_version()} ({platform.system().lower()})")
    for dist in ("statsforecast", "mlforecast", "neuralforecast", "apscheduler"):
        try:
            typer.echo(f"{dist} {dist_version(dist)}")
        except PackageNotFoundError:
            typer.echo(f"{dist} not installed")


@app.command()
@with_settings
def run(
    dispatcher: Annotated[
        str | None,
        typer.Option("--dispatcher", help="threads | celery; same as --set dispatcher.kind=KIND."),
    ] = None,
    *,
    settings_args: dict[str, Any],
) -> None:
    """Run the daemon: keep every pipeline trained and scored."""
    from openanomaly.bootstrap import build
    from openanomaly.logs import configure_logging

    if dispatcher is not None:
        settings_args = {**settings_args, "set_": [*(settings_args.get("set_") or [])]}
        settings_args["set_"].append(f"dispatcher.kind={dispatcher}")
    loaded = load(settings_args)
    configure_logging(loaded.settings.log)
    if not loaded.settings.pipelines_dir.is_dir():
        raise ConfigError(
            [Problem("pipelines_dir", 0, "", f"{loaded.settings.pipelines_dir} is not a directory")]
        )
    application = build(loaded.settings)
    log.info("openanomaly %s starting; settings file: %s", __version__, loaded.config_file)
    import asyncio

    from openanomaly.daemon.main import serve

    try:
        asyncio.run(serve(application))  # closes the application once the daemon started
    except ConfigError:  # e.g. the HTTP port is taken: nothing started, close here
        application.close(timeout=5)
        raise


def main() -> None:
    """Console-script entry point: our errors never print a traceback."""
    try:
        app()
    except OpenAnomalyError as exc:
        if isinstance(exc, ConfigError):
            _print_problems(exc.problems)
        else:
            typer.echo(f"openanomaly: {exc}", err=True)
        sys.exit(1)
    except Exception as exc:
        if os.environ.get(ENV_DEBUG, "").lower() not in ("", "0", "false", "no"):
            raise
        typer.echo(
            f"openanomaly: internal error: {type(exc).__name__}: {exc} "
            "(this is a bug; rerun with OA_DEBUG=1 for the traceback and report it)",
            err=True,
        )
        sys.exit(3)


# Commands that run jobs and show state (train, infer, models, runs) live in their own module.
from openanomaly import cli_backtest, cli_demo, cli_jobs, cli_ui, cli_worker  # noqa: E402, F401
