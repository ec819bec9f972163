"""Parse and validate pipeline files: text in, valid pipelines and located problems out.

No file system access here (the `PipelineSource` adapter reads files), so every error path is
testable from strings. A file holds one pipeline, or several under `pipelines:`; an invalid entry
is reported and skipped while the file's other entries and the other files stay valid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pydantic import ValidationError

from openanomaly.config.pipeline import Pipeline
from openanomaly.config.pipeline_checks import cross_check
from openanomaly.config.problems import Loc, format_path, problems_from_validation
from openanomaly.config.yamlfile import YamlDocument, YamlSyntaxError, parse_yaml
from openanomaly.errors import Problem
from openanomaly.ports import LoadedPipeline, ModelCatalog, PipelineSet

CatalogFor = Callable[[str], ModelCatalog]


def parse_pipeline_text(
    text: str, source: str, catalog_for: CatalogFor
) -> tuple[list[LoadedPipeline], list[Problem]]:
    """Every valid pipeline in one file's text, and a Problem for everything else."""
    try:
        document = parse_yaml(text)
    except YamlSyntaxError as exc:
        return [], [Problem(source, exc.line, "", exc.reason)]
    problems = [
        Problem(source, line, format_path(path), "duplicate key")
        for path, line in document.duplicates
    ]
    entries, shape_problems = _entries(document, source)
    problems += shape_problems
    loaded = []
    for prefix, raw in entries:
        pipeline, entry_problems = _validate_entry(raw, prefix, document, source, catalog_for)
        has_duplicate_key = any(_within(p.field, prefix) for p in problems)
        problems += entry_problems
        if pipeline is not None and not has_duplicate_key:
            name_line = document.line_of((*prefix, "name"))
            loaded.append(LoadedPipeline(pipeline, source, name_line))
    return loaded, problems


def _within(field: str, prefix: Loc) -> bool:
    """Is `field` (a formatted path) inside the entry at `prefix`?"""
    if not prefix:
        return True
    head = format_path(prefix)
    return field == head or field.startswith((head + ".", head + "["))


def _entries(document: YamlDocument, source: str) -> tuple[list[tuple[Loc, Any]], list[Problem]]:
    data = document.data
    if data is None:
        return [], [Problem(source, 1, "", "file is empty; it must define a pipeline")]
    if not isinstance(data, dict):
        return [], [Problem(source, 1, "", "a pipeline file must be a YAML mapping")]
    if "pipelines" not in data:
        return [((), data)], []
    extra = sorted(set(data) - {"pipelines"})
    problems = [
        Problem(
            source,
            document.line_of((key,)),
            str(key),
            "a file with 'pipelines:' holds nothing else; move this key into a pipeline",
        )
        for key in extra
    ]
    items = data["pipelines"]
    if not isinstance(items, list) or not items:
        problems.append(
            Problem(
                source,
                document.line_of(("pipelines",)),
                "pipelines",
                "must be a non-empty list of pipelines",
            )
        )
        return [], problems
    return [(("pipelines", i), item) for i, item in enumerate(items)], problems


def _validate_entry(
    raw: Any, prefix: Loc, document: YamlDocument, source: str, catalog_for: CatalogFor
) -> tuple[Pipeline | None, list[Problem]]:
    def locate(loc: Loc) -> tuple[str, int]:
        return source, document.line_of(loc)

    try:
        pipeline = Pipeline.model_validate(raw)
    except ValidationError as exc:
        return None, problems_from_validation(exc, Pipeline, locate, prefix)
    problems = []
    for path, reason, related in cross_check(pipeline, catalog_for):
        full = (*prefix, *path)
        if full in document.lines:
            line, note = document.lines[full], ""
        else:
            line = document.line_of((*prefix, *related))
            note = f" ({format_path(path)} is not set, so its default applies)"
        problems.append(Problem(source, line, format_path(full), reason + note))
    return (None if problems else pipeline), problems


def check_unique_names(pipelines: Iterable[LoadedPipeline]) -> PipelineSet:
    """Keep the first pipeline of each name (files in sorted order); report the others."""
    seen: dict[str, LoadedPipeline] = {}
    kept, problems = [], []
    for item in pipelines:
        first = seen.get(item.pipeline.name)
        if first is None:
            seen[item.pipeline.name] = item
            kept.append(item)
        else:
            problems.append(
                Problem(
                    item.source,
                    item.line,
                    "name",
                    f"duplicate pipeline name '{item.pipeline.name}' "
                    f"(first defined at {first.source}:{first.line})",
                )
            )
    return PipelineSet(kept, problems)
