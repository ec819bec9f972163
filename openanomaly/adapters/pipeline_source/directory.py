"""`DirectoryPipelineSource`: every `*.yaml` / `*.yml` file of a directory (`pipelines.d/`)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from openanomaly.adapters.fsutil import fsync_directory
from openanomaly.config.pipeline import BUILTIN_ENGINES
from openanomaly.config.pipeline_loader import CatalogFor, check_unique_names, parse_pipeline_text
from openanomaly.errors import OpenAnomalyError, PipelineConflict, PipelineRejected, Problem
from openanomaly.ports import CatalogIssue, LoadedPipeline, ModelCatalog, PipelineSet

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


class _RefusedEngine:
    """The catalog of an engine that text from outside pipelines_dir may not name."""

    def __init__(self, engine: str) -> None:
        self.engine = engine

    def check(self, name: str, params: Mapping[str, Any]) -> list[CatalogIssue]:
        builtins = ", ".join(sorted(BUILTIN_ENGINES))
        reason = (
            f"{self.engine!r} is neither a built-in engine ({builtins}) nor one a loaded "
            "pipeline uses; a custom engine is first named in a file of pipelines_dir"
        )
        return [CatalogIssue("engine", reason)]


class DirectoryPipelineSource:
    def __init__(
        self,
        directory: Path,
        catalog_for: CatalogFor,
        *,
        builtin_engines: Collection[str] = BUILTIN_ENGINES,
    ) -> None:
        self.directory = directory
        self._catalog_for = catalog_for
        self._builtin_engines = frozenset(builtin_engines)
        self._engines_in_use: tuple[str, frozenset[str]] = ("", frozenset())  # by fingerprint

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

    def parse(self, text: str, source: str) -> PipelineSet:
        """Text from outside pipelines_dir (the API) may name a built-in engine or a custom
        one a loaded pipeline already uses, nothing else: checking a custom engine imports its
        module, and importing a module runs its code."""
        allowed = self._builtin_engines | self._engines_used()

        def catalog_for(engine: str) -> ModelCatalog:
            return self._catalog_for(engine) if engine in allowed else _RefusedEngine(engine)

        pipelines, problems = parse_pipeline_text(text, source, catalog_for)
        unique = check_unique_names(pipelines)
        return PipelineSet(unique.pipelines, problems + unique.problems)

    def _engines_used(self) -> frozenset[str]:
        """The engines of the loaded pipelines, loaded again only when a file changed."""
        fingerprint = self.fingerprint()
        if fingerprint != self._engines_in_use[0]:
            engines = frozenset(p.pipeline.model.engine for p in self.load().pipelines)
            self._engines_in_use = (fingerprint, engines)
        return self._engines_in_use[1]

    def save(self, name: str, text: str, *, overwrite: bool) -> str:
        """Write `{name}.yaml` atomically: a hidden temp file (never read as a pipeline) renamed
        over the target, or without `overwrite` linked to it (which fails if the target exists,
        however late it appeared), so a reload never sees half a file."""
        target = self.directory / f"{name}.yaml"
        parsed = self.parse(text, str(target))
        if parsed.problems:
            raise PipelineRejected(parsed.problems)
        names = sorted(p.pipeline.name for p in parsed.pipelines)
        if names != [name]:
            reason = f"the text defines {', '.join(names) or 'no pipeline'}; save it as {name!r} "
            reason += "only when it defines exactly that one pipeline"
            raise PipelineRejected([Problem(str(target), 0, "name", reason)])
        if target.exists() and not overwrite:
            raise PipelineConflict(f"{target} exists; ask to overwrite it")
        for other in self.load().pipelines:
            if other.pipeline.name == name and Path(other.source) != target:
                raise PipelineConflict(
                    f"{other.source}:{other.line} already defines {name!r}; edit it there"
                )
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # FileExistsError here: a file where the directory should be
            raise OpenAnomalyError(f"cannot create {self.directory}: {exc.strerror}") from None
        try:
            fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text if text.endswith("\n") else text + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(temp, 0o644)  # mkstemp makes it 0600; the file is configuration
                if overwrite:
                    os.replace(temp, target)
                else:
                    _place_new(temp, target)
            finally:
                Path(temp).unlink(missing_ok=True)
        except FileExistsError:
            raise PipelineConflict(f"{target} exists; ask to overwrite it") from None
        except OSError as exc:
            raise OpenAnomalyError(f"cannot write {target}: {exc.strerror}") from None
        # The rename survives a power cut; some network file systems cannot sync a directory,
        # and the file is in place either way.
        with contextlib.suppress(OSError):
            fsync_directory(self.directory)
        return str(target)


_NO_HARD_LINKS = frozenset(
    {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}
)


def _place_new(temp: str, target: Path) -> None:
    """Put `temp` at `target`, failing with FileExistsError if `target` exists, however late
    it appeared: a hard link, or where the file system has none (SMB, some FUSE mounts), the
    name reserved by an exclusive create and then renamed over (a reload in between sees an
    empty file, which is no pipeline and keeps nothing else from loading)."""
    try:
        os.link(temp, target)
    except OSError as exc:
        if isinstance(exc, FileExistsError) or exc.errno not in _NO_HARD_LINKS:
            raise
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        os.replace(temp, target)


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
