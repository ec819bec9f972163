"""Checks shared by the engines' catalogs: is the name known, are the parameters accepted."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Any

from openanomaly.adapters.model_engine.introspect import ClassSignature
from openanomaly.ports import CatalogIssue


def check_name(engine: str, name: str, known: Collection[str]) -> list[CatalogIssue]:
    if name in known:
        return []
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(sorted(known))}"
    return [CatalogIssue("name", f"{engine} has no model '{name}' ({hint})")]


def check_params(
    name: str, signature: ClassSignature, params: Mapping[str, Any]
) -> list[CatalogIssue]:
    issues = []
    if not signature.open:
        for key in params:
            if key not in signature.params:
                close = difflib.get_close_matches(key, list(signature.params), n=1)
                hint = (
                    f"did you mean '{close[0]}'?"
                    if close
                    else (f"it takes: {', '.join(sorted(signature.params)) or 'no parameters'}")
                )
                issues.append(
                    CatalogIssue(f"params.{key}", f"{name} has no parameter '{key}' ({hint})")
                )
    for key in sorted(signature.required - set(params)):
        issues.append(CatalogIssue(f"params.{key}", f"{name} needs parameter '{key}'"))
    return issues
