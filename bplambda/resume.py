"""Runs that survive interruption, and finished runs that are not redone.

A long condition keeps two files in its notebook's ``state/`` folder (git-ignored, except the
paper campaign's, which later sittings resume):

- ``<name>.pt``: the full training state, written atomically (a temporary file, then
  ``os.replace``) at most every ``every_seconds`` and removed when the run ends:
  parameters, optimiser states, every model's data generator, the task's own state (a
  curriculum's level, an epoch's order), the divergence status, the rows logged so far and
  the wall time spent. :func:`bplambda.train.train` resumes from it.
- ``<name>.done.pt``: the finished run (its table, trained parameters and wall time), which
  a re-run returns instead of training again.

Both carry a key, the :func:`fingerprint` of everything that decides the run's result (the
experiment's config, the condition, the training config, and bplambda's own source code); a
file whose key differs (a changed parameter, edited code) is ignored and replaced, never
resumed.
Files are read with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists
and dicts only.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

NOT_IN_KEY = ("output_dir", "progress", "force", "save_raw", "merge_from", "jobs")
"""Config fields that do not change a run's result."""
SAVE_SECONDS = 60.0
"""Default spacing of the training-state saves: a minute of work is the most an interruption
loses, and the saves cost nothing next to it."""


@functools.cache
def source_fingerprint() -> str:
    """A hash of every module of the package: a cached result is only as valid as the code
    that made it (any edit, a docstring included, invalidates it: safe, and cheap to redo)."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def fingerprint(*parts: Any) -> str:
    """A 16-hex-digit key of ``parts`` and the package's source. A dataclass counts by its
    fields except :data:`NOT_IN_KEY`; everything else by its ``repr`` (the configs, rules
    and conditions here are dataclasses and tuples, whose reprs list every value)."""

    def text(part: Any) -> str:
        if dataclasses.is_dataclass(part) and not isinstance(part, type):
            fields = {f.name: getattr(part, f.name) for f in dataclasses.fields(part)}
            kept = {k: text(v) for k, v in fields.items() if k not in NOT_IN_KEY}
            return f"{type(part).__name__}({kept})"
        if isinstance(part, (list, tuple)):
            return f"{type(part).__name__}({[text(p) for p in part]})"
        if isinstance(part, dict):
            return f"dict({ {k: text(v) for k, v in part.items()} })"
        return repr(part)

    content = "|".join([source_fingerprint(), *map(text, parts)])
    return hashlib.sha256(content.encode()).hexdigest()[:16]


def save_atomically(content: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``: a
    reader (or a run killed mid-write) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(content, temporary)
    os.replace(temporary, path)


def load_matching(path: Path, key: str) -> dict[str, Any] | None:
    """The content saved at ``path`` if it exists and carries ``key``, else ``None``."""
    if not path.exists():
        return None
    content = torch.load(path, map_location="cpu", weights_only=True)
    return content if content.get("key") == key else None


@dataclass
class ResumeFile:
    """Where one run saves its training state and under which key (see the module docstring).

    ``every_seconds``: the least wall time between two saves (0: after every batch, for
    tests); ``force``: ignore a saved state and start afresh.
    """

    path: Path
    key: str
    every_seconds: float = SAVE_SECONDS
    force: bool = False
    _last: float = dataclasses.field(default_factory=time.monotonic, repr=False)

    def load(self) -> dict[str, Any] | None:
        """The saved training state of this run, if any (``None`` when forced)."""
        return None if self.force else load_matching(self.path, self.key)

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every_seconds

    def save(self, state: dict[str, Any]) -> None:
        save_atomically({"key": self.key, **state}, self.path)
        self._last = time.monotonic()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
