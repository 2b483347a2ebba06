"""Where a result came from: the code's commit (and whether the code had uncommitted changes),
Python and torch versions, the device, the profile and the worker count, said once in every
``summary.md`` so that a committed result can be traced to the code that made it."""

from __future__ import annotations

import platform
import subprocess

import torch

from bplambda.device import resolve_device
from bplambda.paths import project_root

CODE = ("bplambda", "notebooks", "pyproject.toml")
"""What makes a result; the results folders themselves do not count as a change."""


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
    ``"clean"``), ``python``, ``torch``, ``device``, ``profile`` and ``jobs`` of ``cfg``."""
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
    }


def provenance_line(cfg: object) -> str:
    """:func:`provenance` as one sentence for a report."""
    p = provenance(cfg)
    return (f"Made at commit `{p['commit']}` ({p['changes']}), Python {p['python']}, torch "
            f"{p['torch']}, device `{p['device']}`, profile `{p['profile']}`, "
            f"{p['jobs']} worker(s).")  # fmt: skip
