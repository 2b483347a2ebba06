"""Profiles fill an experiment config's defaults; explicit parameters override them.

``smoke`` runs in seconds (the test suite), ``quick`` in minutes on a 2-core CPU, ``paper``
uses the paper's settings.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

PROFILES = ("smoke", "quick", "paper")

C = TypeVar("C")


def configure(
    config_type: type[C], defaults: dict[str, dict[str, Any]], profile: str, **overrides: Any
) -> C:
    """Build ``config_type`` from ``defaults[profile]`` plus the overrides that are not None.

    Lists become tuples (papermill passes lists; configs are frozen). Raises ``ValueError`` for
    an unknown profile or parameter.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is unknown; choose one of {list(PROFILES)}")
    names = {f.name for f in fields(config_type)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(
            f"{config_type.__name__} has no parameter(s) {unknown}; its parameters are "
            f"{sorted(names)}"
        )
    values = {**defaults[profile], **{k: v for k, v in overrides.items() if v is not None}}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return config_type(profile=profile, **values)
