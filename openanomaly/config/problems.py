"""Turn pydantic's validation errors into `Problem`s a user can act on.

Pydantic knows the failing path (`loc`) but not where it came from; callers pass a function that
maps a path to its origin (file and line, env var, flag). Messages are rewritten in user terms:
unknown keys get a did-you-mean, YAML's surprise booleans get a hint to quote them.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from openanomaly.errors import Problem

Loc = tuple[str | int, ...]
Locate = Callable[[Loc], tuple[str, int]]


def format_path(loc: Sequence[str | int]) -> str:
    """`("pipelines", 0, "train", "window")` -> `pipelines[0].train.window`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def problems_from_validation(
    exc: ValidationError, model: type[BaseModel], locate: Locate, prefix: Loc = ()
) -> list[Problem]:
    """One Problem per pydantic error, located with `locate` and reworded for people."""
    problems = []
    for error in exc.errors(include_url=False):
        loc = prefix + tuple(error["loc"])
        where, line = locate(loc)
        reason = _reason(error, model, tuple(error["loc"]))
        problems.append(Problem(where, line, format_path(loc), reason))
    return problems


def _reason(error: Any, model: type[BaseModel], loc: Loc) -> str:
    kind, message, value = error["type"], error["msg"], error.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = sorted(_fields_at(model, loc[:-1]))
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(known)}"
        return f"unknown key '{key}' ({hint})"
    if kind == "missing":
        return "required key is missing"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping (indented key: value lines), got {_shown(value)}"
    if kind == "list_type":
        return f"expected a list, got {_shown(value)}"
    if kind in ("value_error", "assertion_error"):
        return str(message).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if isinstance(value, bool) and kind in ("string_type", "literal_error"):
        return f"{message}; YAML read this as the boolean {str(value).lower()}: quote it"
    if kind == "literal_error":
        return f"{message}, got {value!r}"
    return str(message)


def _fields_at(model: type[BaseModel], loc: Loc) -> set[str]:
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return set()
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        current = _model_in(field.annotation) if field is not None else None
    return set(current.model_fields) if current is not None else set()


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside `X`, `X | None`, `list[X]`, `Annotated[X, ...]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is None:
        return None
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _model_in(args[0])
    if origin in (typing.Union, types.UnionType, list, tuple, dict):
        for arg in args:
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
