"""Notebook parameters: parse what papermill passes, check it, and say clearly what is wrong.

Papermill hands values over as the command line gave them: ``-p seeds "[0, 1, 2]"`` arrives as
the *string* ``"[0, 1, 2]"``, ``-p seeds 3`` as the int ``3``, ``-y "seeds: [0, 1]"`` as a list.
Every experiment config runs each of its fields through :data:`VALIDATORS` (one rule per
parameter name, shared by all notebooks), which turns these forms into one canonical value or
raises :class:`~bplambda.errors.ParameterError` with one line naming the parameter, the value
given and what is allowed. A notebook calls :func:`notebook_parameters` in its first code
cell, so a bad value stops the run before anything is written.
"""

from __future__ import annotations

import ast
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import torch

from bplambda.cells import LSTM_MODES
from bplambda.device import DTYPES, resolve_device
from bplambda.errors import refuse, refuse_unknown
from bplambda.rules import IMPLEMENTATIONS, RULES
from bplambda.rules.eligibility import VARIANTS
from bplambda.train import OPTIMISERS


# ----------------------------------------------------------------------------- parsing
def _items(value: object) -> list[object] | None:
    """A list parameter in any form papermill may pass: a list or tuple, a scalar (one item),
    or a string holding a Python literal (``"[0, 1]"``) or names/numbers separated by commas
    or spaces (``"exact, faithful"``, ``"[exact faithful]"``). ``None`` if it is none of these."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            text = value.strip()
            if text and text[0] in "[(" and text[-1] != {"[": "]", "(": ")"}[text[0]]:
                return None  # a bracket left open is a typo, not a list
            words = re.split(r"[,\s]+", text.strip("[]()").strip())
            return [w for w in words if w]
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (numbers.Number, str)) and not isinstance(value, bool):
        return [value]
    return None


def _number(value: object, kind: type[int] | type[float]) -> int | float | None:
    """``value`` as ``kind`` (``int`` or ``float``), from a number or its text; ``None`` if it
    is neither (a bool is not a number here, nor is 1.5 an int)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral if kind is int else numbers.Real):
        return kind(value)
    if isinstance(value, str):
        try:
            return kind(value.strip())
        except ValueError:
            return None
    return None


# ----------------------------------------------------------------------------- validators
Validator = Callable[[str, object], object]


def scalar(kind: type[int] | type[float], ok: Callable[[float], bool], allowed: str) -> Validator:
    """One number of ``kind`` for which ``ok`` holds."""

    def check(name: str, value: object) -> int | float:
        number = _number(value, kind)
        if number is None or not ok(number):
            raise refuse(name, value, allowed)
        return number

    return check


def sequence(kind: type[int] | type[float], ok: Callable[[float], bool], allowed: str) -> Validator:
    """A list (in any form :func:`_items` reads; may be empty) of numbers for which ``ok``
    holds."""

    def check(name: str, value: object) -> tuple[int | float, ...]:
        items = _items(value)
        parsed = [_number(item, kind) for item in items] if items is not None else None
        if parsed is None or any(n is None or not ok(n) for n in parsed):
            raise refuse(name, value, allowed)
        return tuple(parsed)

    return check


positive_int = scalar(int, lambda n: n >= 1, "pass an integer >= 1")
non_negative_int = scalar(int, lambda n: n >= 0, "pass an integer >= 0")
gamma = scalar(float, lambda r: 0.0 < r <= 1.0, "pass a discount γ in (0, 1]")
non_negative = scalar(float, lambda r: 0.0 <= r < math.inf, "pass a finite number >= 0")
threshold = scalar(  # NaN fails r > 0
    float, lambda r: r > 0, "pass a number > 0 (inf: only non-finite values diverge)"
)
positive_ints = sequence(int, lambda n: n >= 1, "pass a list of integers >= 1, e.g. [1, 2, 5]")
positive_reals = sequence(
    float, lambda r: 0.0 < r < math.inf, "pass a list of finite numbers > 0, e.g. [0.9, 1.0]"
)
lambdas = sequence(
    float, lambda r: 0.0 <= r <= 1.0, "pass a list of λ values in [0, 1], e.g. [0, 0.5, 1]"
)


positive_real = scalar(float, lambda r: 0.0 < r < math.inf, "pass a finite number > 0")
LIU_TASKS = ("seq_mnist", "pattern_generation", "delayed_match")
"""The tasks of notebook 05 (Liu et al.), named here so that their validator needs no task
import (the tasks import this module)."""


def optional_positive_int(name: str, value: object) -> int | None:
    return None if value is None else positive_int(name, value)


def seeds(name: str, value: object) -> tuple[int, ...]:
    allowed = 'pass a non-empty list of distinct integers >= 0, e.g. [0, 1, 2] or "[0, 1, 2]"'
    parsed = sequence(int, lambda n: n >= 0, allowed)(name, value)
    if not parsed:
        raise refuse(name, value, allowed)
    if len(set(parsed)) != len(parsed):
        raise refuse(name, value, f"seeds must be distinct; {allowed}")
    return parsed


def flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise refuse(name, value, "pass True or False")
    return value


def choice(*options: str) -> Validator:
    def check(name: str, value: object) -> str:
        if value not in options:
            raise refuse(name, value, f"choose one of {list(options)}")
        return value

    return check


def choices(*options: str) -> Validator:
    """A non-empty list of names, each one of ``options``."""

    def check(name: str, value: object) -> tuple[str, ...]:
        items = _items(value)
        if not items or any(item not in options for item in items):
            raise refuse(name, value, f"pass a list of names from {list(options)}")
        return tuple(items)

    return check


def device(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise refuse(name, value, "pass 'auto', 'cpu' or 'cuda'")
    if value.startswith("cuda") and not torch.cuda.is_available():
        raise refuse(name, value, "CUDA is not available here; pass 'cpu' or 'auto'")
    try:
        resolve_device(value)
    except ValueError:
        raise refuse(name, value, "not a torch device; pass 'auto', 'cpu' or 'cuda'") from None
    return value


def folder(name: str, value: object) -> str:
    """A folder, absolute or relative to the project root (see :func:`project_path`)."""
    if not isinstance(value, (str, Path)) or not str(value):
        raise refuse(name, value, "pass a folder path")
    return str(project_path(value))


def folders(name: str, value: object) -> tuple[str, ...]:
    """A list of folders (may be empty), each as :func:`folder`."""
    items = _items(value)
    if items is None:
        raise refuse(name, value, 'pass a list of folder paths, e.g. ["shards/0", "shards/1"]')
    return tuple(folder(name, item) for item in items)


VALIDATORS: dict[str, Validator] = {
    "seeds": seeds,
    "device": device,
    "dtype": choice(*DTYPES),
    "progress": flag,
    "force": flag,
    "compile_step": flag,
    "checkpoint_solver": choice("power", "lanczos"),
    "save_raw": flag,
    "merge_from": folders,
    "output_dir": folder,
    "data_dir": folder,
    "lstm_modes": choices(*LSTM_MODES),
    "implementation": choice(*IMPLEMENTATIONS),
    "rules": choices(*RULES),
    "limit": optional_positive_int,
    "slow_iterations": optional_positive_int,
    "lambdas": lambdas,
    "windows": positive_ints,
    "seq_lens": positive_ints,
    "gamma": gamma,
    "scale": non_negative,
    "plastic_scale": non_negative,
    "divergence_threshold": threshold,
    "plastic_seeds": seeds,
    "radius_lambdas": lambdas,
    "spectral_radii": positive_reals,
    "split_seed": non_negative_int,
    "eval_seed": non_negative_int,
    "tasks": choices(*LIU_TASKS),
    "mdgl_variants": choices(*VARIANTS),
    "optimiser": choice(*OPTIMISERS),
    "l2": non_negative,
    **{name: positive_real for name in ("tau_pattern", "tau_dms", "cue_sigma", "curvature_rtol")},
    **{
        name: positive_int
        for name in (
            "epochs", "updates", "iterations", "plastic_epochs", "seq_len", "log_every",
            "batches_per_epoch", "batch_size", "hidden_size", "checkpoint_every",
            "pattern_seq_len", "delay", "cue_len", "dms_batch_size", "eval_size",
            "curvature_batch", "curvature_iterations", "final_checkpoints", "jobs",
        )
    },
    **{
        name: non_negative
        for name in ("lr", "lr_synthesiser", "plastic_lr_rnn", "plastic_lr_synthesiser")
    },
}  # fmt: skip
"""One rule per parameter name, shared by every experiment config."""


def validate(values: Mapping[str, object]) -> dict:
    """Every value through its validator in :data:`VALIDATORS`.

    A name without a validator is a programming error (every config field must have one).
    """
    missing = sorted(set(values) - set(VALIDATORS))
    if missing:
        raise TypeError(f"no validator for parameter(s) {missing}; add one to VALIDATORS")
    return {name: VALIDATORS[name](name, value) for name, value in values.items()}


# ----------------------------------------------------------------------------- notebooks
INJECTED_HEADER = "# Parameters"  # papermill's first line of the cell it injects


def injected_names(history: Sequence[str]) -> set[str]:
    """Names assigned by the last cell papermill injected (``# Parameters``), from IPython's
    input history ``In``; empty when the notebook was not run by papermill."""
    for source in reversed(history):
        if source.lstrip().startswith(INJECTED_HEADER):
            tree = ast.parse(source)
            return {
                target.id
                for node in tree.body
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            }
    return set()


def notebook_parameters(
    namespace: Mapping[str, Any], known: type | Iterable[str]
) -> dict[str, Any]:
    """The values of the ``known`` parameters (names, or a config dataclass's fields) found in
    a notebook's namespace (``globals()``), to pass to the config builder.

    Papermill only warns about a parameter the notebook does not have (``-p lamdas 0.5``) and
    runs on with the default; here that is an error naming the parameter and the known ones.
    """
    names = [f.name for f in fields(known)] if is_dataclass(known) else known
    known = sorted(set(names))
    unknown = sorted(injected_names(namespace.get("In", [])) - set(known))
    if unknown:
        raise refuse_unknown(unknown[0], namespace.get(unknown[0]), known, "this notebook")
    return {name: namespace[name] for name in known if name in namespace}


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
