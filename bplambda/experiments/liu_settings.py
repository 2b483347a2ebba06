"""Notebook 05's settings against Liu et al.'s: what their code (and the nearest code by the same
author, for delayed match) uses, where it is known, beside a config's values, so that a reader
sees what a profile shrinks and the ``paper`` profile can be checked against the authors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bplambda.tasks.delayed_match import DelayedMatch


@dataclass(frozen=True)
class AuthorsSetting:
    """One setting: the config ``field``, the authors' ``value`` (None: unknown), where it
    comes from, and ``ours``: how and why the ``paper`` profile differs on purpose, in value
    or in what it is measured on (None: it follows); ``every_profile``: the difference is one
    of design, not of budget, so every profile states it. ``read``: our value where no config
    field holds it (None: the config's ``field``)."""

    field: str
    value: Any
    source: str
    ours: str | None = None
    every_profile: bool = False
    read: Callable[[Any], Any] | None = None


SEQ_MNIST = "Liu et al.'s seq-MNIST code"
EPROP = "the e-prop reference code (their pattern task's source)"
MODPROP = "ModProp's delayed task (same author, same year)"

ONE_TRAINING = (
    "every task trains as Liu et al.'s seq-MNIST (the rows above): one optimiser and budget for "
    "every rule and task, so that λ_max is read against one edge of stability 2/η"
)
"""Why delayed match does not train as ModProp (docs/paper-liu2022.md §3.3)."""

AUTHORS = (
    AuthorsSetting("hidden_size", 128, SEQ_MNIST),
    AuthorsSetting("batch_size", 256, SEQ_MNIST),
    AuthorsSetting("optimiser", "sgd", SEQ_MNIST),
    AuthorsSetting("lr", 0.01, SEQ_MNIST),
    AuthorsSetting("l2", 0.01, SEQ_MNIST),
    AuthorsSetting("iterations", 10_000, SEQ_MNIST),
    AuthorsSetting("slow_iterations", 16_000, SEQ_MNIST),
    AuthorsSetting(
        "checkpoint_every",
        250,
        SEQ_MNIST,
        "every rule every 250 (theirs: 400 for the three-factor rules), so that "
        "checkpoints line up at equal steps",
    ),
    AuthorsSetting("seeds", 5, SEQ_MNIST, "10 seeds: a variance claim needs them"),
    AuthorsSetting(
        "curvature_batch",
        256,
        SEQ_MNIST,
        "a fixed training batch at every checkpoint (theirs: the checkpoint's "
        "validation batch), so that checkpoints and rules are compared on the same "
        "examples",
    ),
    AuthorsSetting("pattern_seq_len", 1000, EPROP),
    AuthorsSetting("tau_pattern", None, "UNKNOWN in the paper and its code"),
    AuthorsSetting("delay", 700, MODPROP),
    AuthorsSetting("cue_len", 100, MODPROP),
    AuthorsSetting("cue_sigma", 25.0, MODPROP),
    AuthorsSetting("tau_dms", 100.0, MODPROP),
    AuthorsSetting("dms_batch_size", 32, MODPROP),
    AuthorsSetting("dms_hidden_size", 120, MODPROP),
    AuthorsSetting("dms_excitatory_fraction", 0.8, MODPROP),
    AuthorsSetting("DelayedMatch.noise_std", 0.01, MODPROP,
                   read=lambda cfg: DelayedMatch.noise_std),  # every profile trains at it
    *(AuthorsSetting(field, value, f"{MODPROP}: its training", ONE_TRAINING, every_profile=True)
      for field, value in (("optimiser", "adam"), ("lr", "5e-4, ×0.8 every 300 iterations"),
                           ("l2", 5e-4), ("iterations", 3_000))),
)  # fmt: skip


def _shown(value: Any) -> Any:
    """A config value as the table shows it (seeds by their count)."""
    return len(value) if isinstance(value, tuple) else value


def settings_table(cfg: Any) -> pd.DataFrame:
    """One row per :data:`AUTHORS` setting: the authors' value and source, ``cfg``'s value,
    and whether it follows them (``"yes"``, ``"no: why"`` for the paper profile's deliberate
    differences and for those of design in every profile, ``"shrunk"`` for a smaller
    profile, ``"unknown"``)."""
    rows = []
    for setting in AUTHORS:
        value = _shown(getattr(cfg, setting.field) if setting.read is None else setting.read(cfg))
        if setting.value is None:
            follows = "unknown"
        elif setting.ours is not None and (cfg.profile == "paper" or setting.every_profile):
            follows = f"no: {setting.ours}"
        elif value == setting.value:
            follows = "yes"
        else:
            follows = "shrunk" if cfg.profile != "paper" else "NO"
        rows.append({"setting": setting.field, "Liu et al.": setting.value,
                     "source": setting.source, cfg.profile: value, "follows": follows})  # fmt: skip
    return pd.DataFrame(rows)
