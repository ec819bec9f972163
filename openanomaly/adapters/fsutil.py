"""File-system helpers the adapters that keep files (artifacts, the outbox, pipeline files)
share."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable. Missing directories and platforms that
    cannot open a directory (Windows) have nothing to sync."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
