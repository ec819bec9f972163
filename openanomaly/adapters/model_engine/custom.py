"""Custom engines named `package.module:Class` in a pipeline's `model.engine`."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from openanomaly.ports import CatalogIssue


def load_custom_engine(path: str) -> type[Any]:
    """Import `package.module:Class`; raise ImportError/AttributeError/TypeError with a reason."""
    module_name, _, attribute = path.partition(":")
    module = importlib.import_module(module_name)
    engine = getattr(module, attribute)
    if not isinstance(engine, type):
        raise TypeError(f"{path} is not a class")
    return engine


class CustomEngineCatalog:
    """Checks that a custom engine can be imported; if it has its own `check`, asks it too."""

    def __init__(self, path: str) -> None:
        self.path = path

    def check(self, name: str, params: Mapping[str, Any]) -> list[CatalogIssue]:
        try:
            engine = load_custom_engine(self.path)
        except ModuleNotFoundError as exc:
            return [CatalogIssue("engine", f"cannot import {self.path}: no module {exc.name!r}")]
        except AttributeError:
            return [CatalogIssue("engine", f"cannot import {self.path}: no such class")]
        except Exception as exc:  # user code: any failure is a validation problem, not a crash
            return [
                CatalogIssue("engine", f"cannot import {self.path}: {type(exc).__name__}: {exc}")
            ]
        for method in ("fit", "predict", "dumps", "loads"):
            if not callable(getattr(engine, method, None)):
                return [
                    CatalogIssue("engine", f"{self.path} lacks the ModelEngine method {method}()")
                ]
        if not callable(getattr(engine, "check", None)):
            return []
        try:  # user code: a failure here is a validation problem, not a crash
            return list(engine().check(name, params))
        except Exception as exc:
            return [
                CatalogIssue("engine", f"{self.path}.check failed: {type(exc).__name__}: {exc}")
            ]
