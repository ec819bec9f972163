"""`openanomaly ui`: the web UI, a Streamlit server in this process, over the daemon's HTTP API
(docs/api.md) and the TSDB."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from openanomaly.cli import app, load, with_settings
from openanomaly.errors import OpenAnomalyError

UI_EXTRA_HINT = (
    "the web UI needs the `ui` extra: uv sync --extra ui (or pip install 'openanomaly[ui]')"
)


@app.command()
@with_settings
def ui(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to serve on.")] = 8501,
    address: Annotated[
        str, typer.Option("--address", help="Address to bind (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url",
            help="The daemon's HTTP API (default: from http.listen; 0.0.0.0 means 127.0.0.1).",
        ),
    ] = None,
    *,
    settings_args: dict[str, Any],
) -> None:
    """Serve the web UI: pipelines' health, charts, a playground to write, backtest and save
    pipelines, models and runs. Changes (save, train now) need http.api_token."""
    from openanomaly.logs import configure_logging
    from openanomaly.ui.launch import api_url_from_listen, script_args

    bootstrap = _streamlit_bootstrap()
    loaded = load(settings_args)  # invalid settings fail here, not in the browser
    configure_logging(loaded.settings.log)
    url = (api_url or api_url_from_listen(loaded.settings.http.listen)).rstrip("/")
    script = Path(__file__).resolve().parent / "ui" / "app.py"
    flag_options = {
        "server.port": port,
        "server.address": address,
        "server.headless": True,  # never open a browser on the server
        "server.fileWatcherType": "none",  # an installed app does not reload on edits
        "browser.gatherUsageStats": False,
        "client.toolbarMode": "minimal",
        "client.showErrorDetails": "type",  # a bug shows its type, never a traceback
        "theme.base": "light",
    }
    typer.echo(f"openanomaly ui: http://{_host(address)}:{port} (daemon API: {url})", err=True)
    # What `streamlit run` does before it starts the server: config and secrets files are
    # looked up next to the script, and the flags win over them.
    from streamlit import config as streamlit_config

    streamlit_config._main_script_path = str(script)
    bootstrap.load_config_options(flag_options)
    bootstrap.run(str(script), False, script_args(settings_args, url), flag_options)


def _streamlit_bootstrap() -> Any:
    try:
        import plotly  # noqa: F401
        from streamlit.web import bootstrap
    except ImportError:
        raise OpenAnomalyError(UI_EXTRA_HINT) from None
    return bootstrap


def _host(address: str) -> str:
    from openanomaly.ui.launch import WILDCARD_HOSTS

    return "127.0.0.1" if address in WILDCARD_HOSTS else address
