"""Profiles fill an experiment config's defaults; explicit parameters override them.

``smoke`` runs in seconds (the test suite), ``quick`` in minutes on a 2-core CPU, ``medium``
(where a notebook defines it) in about an hour there, ``paper`` uses the paper's settings.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any, TypeVar

from bplambda.checks import validate
from bplambda.errors import refuse, refuse_unknown

PROFILES = ("smoke", "quick", "medium", "paper")

C = TypeVar("C")


RESULTS_ROOT_VARIABLE = "BPLAMBDA_RESULTS_ROOT"
"""Where results go instead of ``results/`` (`make lab` sets ``results/lab``, git-ignored, so
that exploring a notebook never rewrites the committed results)."""


def results_folder(profile: str) -> Path:
    """Where a profile's results go, relative to the project: ``results/`` for ``quick`` (the
    committed ones), ``results/<profile>/`` otherwise, so no profile replaces another's; under
    ``$BPLAMBDA_RESULTS_ROOT`` instead of ``results/`` where it is set."""
    root = Path(os.environ.get(RESULTS_ROOT_VARIABLE) or "results")
    return root if profile == "quick" else root / profile


def configure(
    config_type: type[C], defaults: dict[str, dict[str, Any]], profile: str, **overrides: Any
) -> C:
    """Build ``config_type`` from ``defaults[profile]`` plus the overrides that are not None.

    A config with a ``NOTEBOOK`` name and no ``output_dir`` writes to
    ``results_folder(profile) / NOTEBOOK``. Every value is parsed and checked by its validator
    (:mod:`bplambda.checks`): papermill's strings and scalars become lists, ranges are
    enforced. Raises :class:`ParameterError` (one line: parameter, value, what is allowed) for
    an unknown profile or parameter or a bad value.
    """
    if profile not in PROFILES:
        raise refuse("profile", profile, f"choose one of {list(PROFILES)}")
    if profile not in defaults:
        owner = getattr(config_type, "NOTEBOOK", config_type.__name__)
        raise refuse("profile", profile, f"{owner} has the profiles {list(defaults)}")
    names = {f.name for f in fields(config_type)} - {"profile"}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise refuse_unknown(unknown[0], overrides[unknown[0]], names, config_type.__name__)
    own = {f.name: f.default for f in fields(config_type) if f.default is not MISSING}
    given = {k: v for k, v in overrides.items() if v is not None}
    values = {**own, **defaults[profile], **given}
    values.pop("profile", None)
    notebook = getattr(config_type, "NOTEBOOK", None)
    if notebook is not None and values.get("output_dir") is None:
        values["output_dir"] = results_folder(profile) / notebook
    return config_type(profile=profile, **validate(config_type, values))
