"""Read a library's model names and constructor parameters from its source, without importing it.

`import statsforecast.models` costs ~5 s (pandas, scipy, statsmodels); `openanomaly validate` runs
in editors and pre-commit hooks and must answer in well under a second. Parsing the module with
`ast` gives the same facts in milliseconds. A test compares the result with the imported classes,
so a library refactor that breaks this is caught, not silently accepted.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class ClassSignature:
    """Constructor parameter names of a class; `open` when it also takes **kwargs or we could
    not see its constructor (then any parameter is accepted)."""

    params: frozenset[str]
    required: frozenset[str]
    open: bool


def package_dir(package: str) -> Path | None:
    """Directory of an installed top-level package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


@cache
def module_exports(path: Path) -> tuple[str, ...]:
    """Names in a module's literal `__all__`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            return tuple(str(v) for v in value)
    return ()


@cache
def class_signatures(path: Path) -> dict[str, ClassSignature]:
    """Constructor signature of every top-level class in a module, following local bases."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    out: dict[str, ClassSignature] = {}

    def resolve(name: str, depth: int = 0) -> ClassSignature:
        node = classes.get(name)
        if node is None or depth > 20:
            return ClassSignature(frozenset(), frozenset(), open=True)
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                return _signature(item)
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in classes:
                return resolve(base.id, depth + 1)
        if node.bases:  # a base from another module: we cannot see its parameters
            return ClassSignature(frozenset(), frozenset(), open=True)
        return ClassSignature(frozenset(), frozenset(), open=False)

    for name in classes:
        out[name] = resolve(name)
    # Classes re-exported from a sibling module (`from .ucm import UCM`).
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module:
            sibling = path.parent / (node.module.replace(".", "/") + ".py")
            if not sibling.is_file():
                continue
            for alias in node.names:
                found = class_signatures(sibling).get(alias.name)
                if found is not None:
                    out.setdefault(alias.asname or alias.name, found)
    return out


def _signature(init: ast.FunctionDef) -> ClassSignature:
    args = init.args
    positional = [*args.posonlyargs, *args.args][1:]  # drop self
    defaults_from = len(positional) - len(args.defaults)
    required = {a.arg for i, a in enumerate(positional) if i < defaults_from}
    required |= {a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None}
    names = {a.arg for a in positional} | {a.arg for a in args.kwonlyargs}
    return ClassSignature(frozenset(names), frozenset(required), open=args.kwarg is not None)
