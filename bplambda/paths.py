"""Where the project is: relative paths in configs and notebooks mean the same folder whether a
kernel starts in the project (``make reproduce``) or in ``notebooks/`` (``make lab``)."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT_MARKER = "pyproject.toml"


def project_root(start: str | Path | None = None) -> Path:
    """The bplambda project folder: the nearest folder at or above ``start`` (default: the
    working directory) whose ``pyproject.toml`` names the bplambda project; ``start`` itself
    where there is none (e.g. a pip install used from elsewhere)."""
    start = Path.cwd() if start is None else Path(start)
    start = start.resolve()
    for folder in (start, *start.parents):
        marker = folder / PROJECT_MARKER
        if marker.is_file() and re.search(
            r'^name\s*=\s*"bplambda"', marker.read_text(encoding="utf-8"), re.MULTILINE
        ):
            return folder
    return start


def project_path(path: str | Path, start: str | Path | None = None) -> Path:
    """``path`` if absolute, else relative to :func:`project_root`: the same folder whether the
    kernel starts in the project (``make reproduce``) or in ``notebooks/`` (``make lab``)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root(start) / path
