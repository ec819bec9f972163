"""Build `Settings` from its sources, lowest to highest precedence:

defaults < YAML file (`--config`, else `$OA_CONFIG`, else `./openanomaly.yaml` if present)
< environment `OA_<SECTION>__<KEY>` < command-line flags.

Every problem names its origin: `openanomaly.yaml:7: tsdb.timeout: ...`, `env OA_TSDB__URL: ...`,
`--set dispatcher.workers: ...`. `${VAR}` in the YAML file is replaced by the environment variable
(`$${` writes a literal `${`); values that came from the environment this way are treated as
secrets and masked wherever settings are shown.
"""

from __future__ import annotations

import json
import os
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ValidationError

from openanomaly.config.problems import Loc, format_path, problems_from_validation
from openanomaly.config.settings import Settings
from openanomaly.config.yamlfile import YamlSyntaxError, parse_yaml
from openanomaly.errors import ConfigError, Problem

ENV_PREFIX = "OA_"
ENV_CONFIG = "OA_CONFIG"
ENV_DEBUG = "OA_DEBUG"  # read by the CLI (tracebacks for bug reports), not a setting
_NOT_SETTINGS = frozenset({ENV_CONFIG, ENV_DEBUG})
DEFAULT_CONFIG_NAME = "openanomaly.yaml"
MASK = "**********"  # the same mask pydantic prints for SecretStr
_PLACEHOLDER = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{([^}]*)\}?")
_SENSITIVE_HEADER = re.compile(r"authorization|cookie|token|secret|password|key", re.IGNORECASE)


@dataclass(frozen=True)
class Override:
    """One value set from outside the file: `path` like ("tsdb", "url"), `origin` for errors."""

    path: tuple[str, ...]
    value: Any
    origin: str


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    config_file: Path | None
    secret_paths: frozenset[tuple[str, ...]] = field(default_factory=frozenset)

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data, with every secret replaced by a mask."""
        data = self.settings.model_dump(mode="json")
        for path in self.secret_paths:
            _set_if_present(data, path, MASK)
        headers = data["tsdb"]["headers"]
        for name in headers:
            if _SENSITIVE_HEADER.search(name):
                headers[name] = MASK
        result = _mask_url_passwords(data)
        assert isinstance(result, dict)
        return result


def parse_override_value(text: str) -> Any:
    """Env vars and `--set` values are strings; JSON objects/lists allow maps such as headers."""
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return text
    return text


def env_overrides(env: Mapping[str, str]) -> list[Override]:
    """`OA_TSDB__BASIC_AUTH__USERNAME=x` -> Override(("tsdb", "basic_auth", "username"), "x")."""
    out = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in _NOT_SETTINGS:
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        out.append(Override(path, parse_override_value(env[name]), f"env {name}"))
    return out


def load_settings(
    config_file: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Sequence[Override] = (),
    cwd: Path | None = None,
) -> LoadedSettings:
    """Merge every source and validate once; raise ConfigError listing every problem."""
    env = os.environ if env is None else env
    cwd = cwd or Path.cwd()
    path, problems = _find_config_file(config_file, env, cwd)
    data: dict[str, Any] = {}
    origins: dict[Loc, tuple[str, int]] = {}
    secret_paths: set[tuple[str, ...]] = set()
    if path is not None and not problems:
        data, origins, secret_paths, problems = _read_config_file(path, env)
    secret_values = set()
    for override in [*env_overrides(env), *overrides]:
        problem = _apply(data, override)
        if problem:
            problems.append(problem)
        origins[override.path] = (override.origin, 0)
        secret_paths.discard(override.path)
        if override.path and _SENSITIVE_HEADER.search(override.path[-1]):
            secret_values.add(str(override.value))
    for secret_path in secret_paths:
        value = _get(data, secret_path)
        if isinstance(value, str):
            secret_values.add(value)
    if problems:
        raise ConfigError(_redacted(problems, secret_values))
    where = str(path) if path is not None else "settings"

    def locate(loc: Loc) -> tuple[str, int]:
        for end in range(len(loc), 0, -1):
            if loc[:end] in origins:
                return origins[loc[:end]]
        return where, 0

    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        found = problems_from_validation(exc, Settings, locate)
        raise ConfigError(_redacted(found, secret_values)) from None
    return LoadedSettings(settings, path, frozenset(secret_paths))


def _find_config_file(
    explicit: Path | None, env: Mapping[str, str], cwd: Path
) -> tuple[Path | None, list[Problem]]:
    if explicit is not None:
        origin, candidate = "--config", explicit
    elif env.get(ENV_CONFIG):
        origin, candidate = f"env {ENV_CONFIG}", Path(env[ENV_CONFIG])
    else:
        default = cwd / DEFAULT_CONFIG_NAME
        return (default if default.is_file() else None), []
    candidate = candidate if candidate.is_absolute() else cwd / candidate
    if candidate.is_dir():
        return None, [Problem(origin, 0, "", f"{candidate} is a directory, not a settings file")]
    if not candidate.is_file():
        return None, [Problem(origin, 0, "", f"settings file {candidate} does not exist")]
    return candidate, []


def _read_config_file(
    path: Path, env: Mapping[str, str]
) -> tuple[dict[str, Any], dict[Loc, tuple[str, int]], set[tuple[str, ...]], list[Problem]]:
    where = str(path)
    try:
        document = parse_yaml(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return {}, {}, set(), [Problem(where, 0, "", f"cannot read: {exc.strerror}")]
    except UnicodeDecodeError:
        return {}, {}, set(), [Problem(where, 0, "", "not UTF-8 text")]
    except YamlSyntaxError as exc:
        return {}, {}, set(), [Problem(where, exc.line, "", exc.reason)]
    problems = [
        Problem(where, line, format_path(p), "duplicate key") for p, line in document.duplicates
    ]
    if document.data is None:
        document.data = {}
    if not isinstance(document.data, dict):
        return {}, {}, set(), [Problem(where, 1, "", "settings file must be a YAML mapping")]
    origins: dict[Loc, tuple[str, int]] = {p: (where, n) for p, n in document.lines.items()}
    secrets: set[tuple[str, ...]] = set()

    def expand(value: Any, loc: tuple[str, ...]) -> Any:
        if isinstance(value, dict):
            return {k: expand(v, (*loc, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v, (*loc, str(i))) for i, v in enumerate(value)]
        if not isinstance(value, str) or "$" not in value:
            return value

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name = match.group(1)
            if name is None:
                problems.append(
                    Problem(
                        where,
                        document.line_of(loc),
                        format_path(loc),
                        f"bad placeholder {match.group(0)!r}: use ${{NAME}} "
                        "(or $${ for a literal)",
                    )
                )
                return ""
            if name not in env:
                problems.append(
                    Problem(
                        where,
                        document.line_of(loc),
                        format_path(loc),
                        f"environment variable {name} is not set",
                    )
                )
                return ""
            secrets.add(loc)
            return env[name]

        return _PLACEHOLDER.sub(substitute, value)

    data = expand(document.data, ())
    _resolve_paths(data, Settings, path.parent)
    return data, origins, secrets, problems


def _apply(data: dict[str, Any], override: Override) -> Problem | None:
    target = data
    for part in override.path[:-1]:
        child = target.get(part)
        if not isinstance(child, dict):
            child = {}
            target[part] = child
        target = child
    if not override.path or not override.path[-1]:
        return Problem(override.origin, 0, "", "empty setting name")
    target[override.path[-1]] = override.value
    return None


def _resolve_paths(data: dict[str, Any], model: type[BaseModel], base: Path) -> None:
    """Relative paths in a settings file are relative to that file, as in Prometheus."""
    for name, info in model.model_fields.items():
        value = data.get(name)
        if value is None:
            continue
        annotation = info.annotation
        nested = _nested_model(annotation)
        if nested is not None and isinstance(value, dict):
            _resolve_paths(value, nested, base)
        elif _is_path(annotation) and isinstance(value, str) and not Path(value).is_absolute():
            data[name] = str(base / Path(value).expanduser())


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _is_path(annotation: Any) -> bool:
    return annotation is Path or Path in typing.get_args(annotation)


def _set_if_present(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    target: Any = data
    for part in path[:-1]:
        if not isinstance(target, dict) or part not in target:
            return
        target = target[part]
    if isinstance(target, dict) and path[-1] in target and target[path[-1]] is not None:
        target[path[-1]] = value


def _mask_url_passwords(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_url_passwords(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_url_passwords(v) for v in value]
    if isinstance(value, str) and "://" in value and "@" in value:
        parts = urlsplit(value)
        if parts.password:
            netloc = f"{parts.username}:{MASK}@{parts.hostname}"
            netloc += f":{parts.port}" if parts.port else ""
            return urlunsplit(parts._replace(netloc=netloc))
    return value


_URL_PASSWORD = re.compile(r"(\w+://[^/:@\s]+:)[^@\s]+@")


def _redacted(problems: list[Problem], secrets: set[str]) -> list[Problem]:
    """Problems are printed and logged: no secret value may appear in them."""
    out = []
    for problem in problems:
        reason = problem.reason
        for secret in sorted(secrets, key=len, reverse=True):
            if len(secret) >= 3:
                reason = reason.replace(secret, MASK)
        reason = _URL_PASSWORD.sub(lambda m: m.group(1) + MASK + "@", reason)
        out.append(Problem(problem.where, problem.line, problem.field, reason))
    return out


def _get(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data
