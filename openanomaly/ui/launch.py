"""How `openanomaly ui` hands its settings to the Streamlit script, which runs in the same
process but is (re)executed by Streamlit with its own `sys.argv`.

The script gets the raw settings options (config file, --set items, shortcut flags) and the
API URL, never a secret: it loads the settings itself, so `http.api_token` comes from the
settings file or `OA_HTTP__API_TOKEN` and stays out of argv (visible in `ps`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# Listening on every address: reach it on loopback.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104 - compared with, never bound


def api_url_from_listen(listen: str) -> str:
    """`http.listen` (host:port) as a URL the UI can call."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in WILDCARD_HOSTS:
        host = "127.0.0.1"
    if ":" in host:  # an IPv6 address goes in brackets in a URL
        host = f"[{host}]"
    return f"http://{host}:{port}"


def script_args(settings_options: dict[str, Any], api_url: str) -> list[str]:
    """The script's argv (after its path): JSON keeps lists and None intact."""
    plain = {k: str(v) if isinstance(v, Path) else v for k, v in settings_options.items()}
    return ["--api-url", api_url, "--settings", json.dumps(plain)]


def parse_script_args(argv: list[str]) -> tuple[dict[str, Any], str | None]:
    """(settings options, API URL) from the script's argv; both empty when started directly
    with `streamlit run` (then the defaults, env and ./openanomaly.yaml apply)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--api-url", default=None)
    parser.add_argument("--settings", default="{}")
    known, _ = parser.parse_known_args(argv)
    options = json.loads(known.settings)
    if options.get("config") is not None:
        options["config"] = Path(options["config"])
    return options, known.api_url
