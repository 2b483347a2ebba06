"""Checks of config values: parse what papermill passes and say clearly what is wrong.

Papermill hands values over as the command line gave them: ``-p seeds "[0, 1, 2]"`` arrives as
the *string* ``"[0, 1, 2]"``, ``-p seeds 3`` as the int ``3``, ``-y "seeds: [0, 1]"`` as a list.
Every config field names its check beside it (``field: T = checked(check, default)``), which
turns these forms into one canonical value or raises :class:`~bplambda.errors.ParameterError`
with one line naming the parameter, the value given and what is allowed; :func:`validate`
runs them all when a config is built (:func:`bplambda.profiles.configure`).
"""

from __future__ import annotations

import ast
import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, field, fields
from pathlib import Path
from typing import Any

import torch

from bplambda.device import resolve_device
from bplambda.errors import refuse
from bplambda.paths import project_path


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


def optional_positive_int(name: str, value: object) -> int | None:
    return None if value is None else positive_int(name, value)


fraction = scalar(float, lambda r: 0.0 < r < 1.0, "pass a fraction in (0, 1), or None")


def optional_fraction(name: str, value: object) -> float | None:
    return None if value is None else fraction(name, value)


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


def checked(check: Validator, default: Any = MISSING) -> Any:
    """A config field whose values go through ``check`` (:func:`validate`), with ``default``
    where it has one."""
    return field(default=default, metadata={"check": check})


def validate(config_type: type, values: Mapping[str, object]) -> dict:
    """Every value through the check of its field of ``config_type``.

    A field without a check is a programming error: every config field must declare one.
    """
    checks = {f.name: f.metadata.get("check") for f in fields(config_type)}
    missing = sorted(name for name in values if checks.get(name) is None)
    if missing:
        raise TypeError(f"{config_type.__name__} has no check for {missing}; declare each "
                        "field as `name: type = checked(check, default)`")  # fmt: skip
    return {name: checks[name](name, value) for name, value in values.items()}
