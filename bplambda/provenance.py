"""Where a result came from: the code's commit (and whether the code had uncommitted changes),
Python and torch versions, the device, the profile, the worker count and the wall time, said
in every ``summary.md``, every row of every ``claims.csv`` and the metadata of every executed
notebook, so that a committed result can be traced to the code that made it."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path

from bplambda.paths import project_root

CODE = ("bplambda", "notebooks", "pyproject.toml")
"""What makes a result; the results folders themselves do not count as a change."""
STARTED = time.time()
"""When this process imported the package: a notebook's wall time is counted from here."""
FIELDS = ("commit", "changes", "python", "torch", "device", "profile", "jobs", "wall_seconds")
"""What :func:`provenance` records, in order (the columns it adds to ``claims.csv``)."""
METADATA_KEY = "bplambda"
"""Where an executed notebook's metadata holds its provenance."""


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(project_root()), *args], capture_output=True,
                              text=True, timeout=30, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def provenance(cfg: object) -> dict[str, str]:
    """``commit`` (12 hex digits, or ``"unknown"`` outside a git checkout), ``changes``
    (``"uncommitted changes"`` where the package or notebooks differ from the commit, else
    ``"clean"``), ``python``, ``torch``, ``device``, ``profile`` and ``jobs`` of ``cfg``, and
    ``wall_seconds`` since the package was imported."""
    import torch  # here: reproduce stamps notebooks without loading torch in its own process

    from bplambda.device import resolve_device

    commit = _git("rev-parse", "--short=12", "HEAD")
    status = _git("status", "--porcelain", "--", *CODE)
    return {
        "commit": commit or "unknown",
        "changes": "unknown" if status is None else ("uncommitted changes" if status else "clean"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(resolve_device(getattr(cfg, "device", "auto"))),
        "profile": str(getattr(cfg, "profile", "")),
        "jobs": str(getattr(cfg, "jobs", 1)),
        "wall_seconds": f"{time.time() - STARTED:.0f}",
    }


def provenance_line(cfg: object) -> str:
    """:func:`provenance` as one sentence for a report."""
    p = provenance(cfg)
    return (f"Made at commit `{p['commit']}` ({p['changes']}), Python {p['python']}, torch "
            f"{p['torch']}, device `{p['device']}`, profile `{p['profile']}`, "
            f"{p['jobs']} worker(s), {p['wall_seconds']} s.")  # fmt: skip


def stamp_notebook(notebook: dict, output: Path, cfg: object, seconds: float) -> dict:
    """An executed notebook (nbformat's dict), to be written to ``output``, with
    :func:`provenance` in its metadata (``wall_seconds``: the whole execution's, ``seconds``)
    and papermill's input and output paths, its parameters and every path in its cells' text
    (sources and outputs, e.g. the displayed ``cfg``) relative to the project, so that a
    committed notebook names no one's machine."""
    metadata = notebook.setdefault("metadata", {})
    metadata[METADATA_KEY] = {**provenance(cfg), "wall_seconds": f"{seconds:.0f}"}
    papermill = metadata.setdefault("papermill", {})
    if papermill.get("input_path"):
        papermill["input_path"] = _relative(papermill["input_path"])
    papermill["output_path"] = _relative(str(output))
    paths = {}
    for name, value in papermill.get("parameters", {}).items():
        papermill["parameters"][name] = _relative_paths(value, paths)
    return relativise_cells(notebook, paths)


PROJECT_FOLDERS = ("results", "notebooks", "data", "bplambda", "tests", "docs", ".venv")
"""The project's own top-level folders: an absolute path through one of them leads into a
checkout of the project, wherever that checkout lay."""
ABSOLUTE_PROJECT_PATH = re.compile(
    r"(?<![\w.~/-])/(?:[^/\s'\"<>]+/)+?(?=(?:"
    + "|".join(map(re.escape, PROJECT_FOLDERS))
    + r")(?:/|['\"\s,)]|$))"
)
"""The machine-specific head of such a path (``/home/me/bplambda/``), up to the project folder
it leads into; what follows is the path relative to the project."""
TEXT_OUTPUT_FIELDS = ("text", "traceback")
"""An output's own text fields (a stream's ``text``, an error's ``traceback``); its ``data``
holds text under the ``text/*`` types and binary (base64 images) under the others."""


def relativise_cells(notebook: dict, replaced: dict[str, str] | None = None) -> dict:
    """``notebook`` with each absolute path in its cells' sources and text outputs made
    relative: first the paths in ``replaced`` (absolute → what :func:`_relative_paths` made
    of it) and this project's root, the longest first so that a folder's shards keep their
    folder; then the head of any path into a project folder of another checkout
    (:data:`ABSOLUTE_PROJECT_PATH`), e.g. the worktree a campaign ran in."""
    replacements = {**(replaced or {}), f"{project_root()}{os.sep}": ""}
    longest_first = sorted(replacements.items(), key=lambda item: -len(item[0]))

    def relative(text: str | list[str]) -> str | list[str]:
        if isinstance(text, list):
            return [relative(line) for line in text]
        for absolute, short in longest_first:
            text = text.replace(absolute, short)
        return ABSOLUTE_PROJECT_PATH.sub("", text)

    for cell in notebook.get("cells", []):
        cell["source"] = relative(cell.get("source", ""))
        for output in cell.get("outputs", []):
            for field in TEXT_OUTPUT_FIELDS:
                if field in output:
                    output[field] = relative(output[field])
            data = output.get("data", {})
            for mime in [m for m in data if m.startswith("text/")]:
                data[mime] = relative(data[mime])
    return notebook


def _relative_paths(value: object, replaced: dict[str, str]) -> object:
    """A papermill parameter with each absolute path in it (a string, or a list's strings, e.g.
    ``output_dir``, ``merge_from``) made :func:`_relative`; ``replaced`` collects what became
    what, for the injected-parameters cell that repeats them."""
    if isinstance(value, list):
        return [_relative_paths(v, replaced) for v in value]
    if isinstance(value, str) and Path(value).is_absolute():
        replaced[value] = _relative(value)
        return replaced[value]
    return value


def _relative(path: str) -> str:
    """``path`` relative to the project where it lies inside it, else its file name only."""
    try:
        return str(Path(path).resolve().relative_to(project_root()))
    except ValueError:
        return os.path.basename(path)
