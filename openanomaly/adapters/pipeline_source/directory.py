"""`DirectoryPipelineSource`: every `*.yaml` / `*.yml` file of a directory (`pipelines.d/`)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from openanomaly.config.pipeline_loader import CatalogFor, check_unique_names, parse_pipeline_text
from openanomaly.errors import Problem
from openanomaly.ports import LoadedPipeline, PipelineSet

log = logging.getLogger(__name__)
SUFFIXES = (".yaml", ".yml")


def pipeline_files(directory: Path) -> list[Path]:
    """Pipeline files in name order (*.yaml, *.yml, any case). Hidden files (editor swap and
    temp files) are not pipelines. Broken links are included, so they get reported."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix.lower() in SUFFIXES
        and not p.name.startswith(".")
        and (p.is_file() or (p.is_symlink() and not p.exists()))
    )


class DirectoryPipelineSource:
    def __init__(self, directory: Path, catalog_for: CatalogFor) -> None:
        self.directory = directory
        self._catalog_for = catalog_for

    def load(self) -> PipelineSet:
        return load_pipeline_paths([self.directory], self._catalog_for)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        if self.directory.is_dir():
            for path in pipeline_files(self.directory):
                try:
                    stat = path.stat()
                except OSError:
                    continue
                digest.update(f"{path.name}\0{stat.st_mtime_ns}\0{stat.st_size}\0".encode())
        return digest.hexdigest()


def load_pipeline_paths(paths: list[Path], catalog_for: CatalogFor) -> PipelineSet:
    """Load pipeline files and directories (as `validate PATH...` takes them), names unique
    across all of them."""
    loaded: list[LoadedPipeline] = []
    problems: list[Problem] = []
    read: set[Path] = set()
    for path in paths:
        if path.is_dir():
            try:
                files = pipeline_files(path)
            except OSError as exc:
                problems.append(Problem(str(path), 0, "", f"cannot list: {exc.strerror}"))
                continue
            problems += [
                Problem(str(p), 0, "", "a directory named like a pipeline file; not read")
                for p in sorted(path.iterdir())
                if p.suffix.lower() in SUFFIXES and p.is_dir()
            ]
            if not files:
                problems.append(Problem(str(path), 0, "", "no *.yaml or *.yml pipeline files"))
        elif path.is_file():
            files = [path]
        else:
            problems.append(Problem(str(path), 0, "", "no such file or directory"))
            continue
        for file in files:
            if file.resolve() in read:
                continue  # the same file named twice (a directory and a file in it)
            read.add(file.resolve())
            if file.is_symlink() and not file.exists():
                problems.append(Problem(str(file), 0, "", "broken symbolic link"))
                continue
            try:
                text = file.read_text(encoding="utf-8")
            except OSError as exc:
                problems.append(Problem(str(file), 0, "", f"cannot read: {exc.strerror}"))
                continue
            except UnicodeDecodeError:
                problems.append(Problem(str(file), 0, "", "not UTF-8 text"))
                continue
            file_pipelines, file_problems = parse_pipeline_text(text, str(file), catalog_for)
            loaded += file_pipelines
            problems += file_problems
    unique = check_unique_names(loaded)
    for problem in problems + unique.problems:
        log.debug("pipeline problem: %s", problem)
    return PipelineSet(unique.pipelines, problems + unique.problems)
