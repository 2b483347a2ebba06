"""Running one condition into a labelled table (resumable, its finished result cached),
many of them over the workers, and the rows every experiment adds per condition and seed.

Every run returns a tidy table with the columns ``TABLE_COLUMNS``: one row per observation
(condition, family, λ, n, T, seed, batch, t, metric, value); ``t = -1`` marks a
sequence-level value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import pandas as pd

from bplambda.cells import Cell
from bplambda.device import resolve_device
from bplambda.experiments.conditions import Condition, condition_title
from bplambda.experiments.options import ResumableOptions, RunOptions
from bplambda.outputs import ParamGroups
from bplambda.paths import project_path
from bplambda.resume import (
    SAVE_SECONDS,
    ResumeFile,
    fingerprint,
    load_matching,
    save_atomically,
)
from bplambda.tasks.base import Task
from bplambda.train import TrainConfig, train
from bplambda.workers import run_units

R = TypeVar("R")


TABLE_COLUMNS = [
    "condition", "family", "lmbda", "n", "variant", "T", "seed", "diverged", "diverged_at",
    "batch", "t", "metric", "value",
]  # fmt: skip


def _labelled(rows: pd.DataFrame, condition: Condition, task: Task) -> pd.DataFrame:
    labels = pd.DataFrame(list(condition.labels)).assign(model=range(len(condition.seeds)))
    table = rows.merge(labels, on="model")
    table["T"] = getattr(task, "seq_len", np.nan)
    return table[TABLE_COLUMNS]


@dataclass(frozen=True)
class StateStore:
    """Where a notebook's conditions keep their training states and finished results
    (:mod:`bplambda.resume`): ``folder`` (``<output_dir>/state``), keyed by ``config``
    (the experiment's config: a changed parameter starts afresh). ``force``: recompute even
    what is saved. ``every_seconds``: the spacing of the training-state saves."""

    folder: Path
    config: object
    force: bool = False
    every_seconds: float = SAVE_SECONDS


def state_store(cfg: ResumableOptions) -> StateStore:
    """The store of a notebook config's runs: ``<output_dir>/state``, forced by ``cfg.force``."""
    return StateStore(project_path(cfg.output_dir) / "state", cfg, cfg.force)


class ConditionRun(NamedTuple):
    """One condition's labelled table, trained (stacked) parameters and wall time (its
    training and evaluations, summed over resumptions; as first measured when cached)."""

    table: pd.DataFrame
    params: ParamGroups
    seconds: float


def run_all(
    work: Callable[[Any], R],
    units: Sequence[Any],
    cfg: RunOptions,
    label: Callable[[Any], str],
    cost: Callable[[Any], float] | None = None,
) -> list[R]:
    """``[work(unit) for unit in units]`` on ``cfg.jobs`` workers (:func:`run_units`; ``cost``:
    the costliest units start first), their logs in ``<output_dir>/state/logs/``."""
    logs = project_path(cfg.output_dir) / "state" / "logs"
    return run_units(work, units, cfg.jobs, label, logs, cost)


def _file_name(*parts: object) -> str:
    """A file name from labels such as ``("seq_mnist", "BP(0.5)")``: ``seq_mnist-BP0.5``."""
    return "-".join(re.sub(r"[^A-Za-z0-9._]+", "", str(p)) for p in parts)


def run_condition(
    condition: Condition,
    task: Task,
    cell: Cell,
    train_config: TrainConfig,
    device: str,
    dtype: str,
    store: StateStore | None = None,
    context: tuple[str, ...] = (),
    **train_options: Any,
) -> ConditionRun:
    """Train one condition (its models stacked).

    ``store``: resume from the condition's saved training state, or return its saved result
    without training, where either carries the same key (the store's config, ``context``,
    the condition, ``train_config``, device and dtype); a finished run is saved there.
    ``context``: what else names the run (e.g. the task of a notebook that runs several).
    ``train_options`` go to :func:`train` (e.g. ``evaluation``).
    """
    names = sorted({label["condition"] for label in condition.labels})
    description = f"{condition_title(condition)} T={getattr(task, 'seq_len', '?')}"
    resume = None
    if store is not None:
        key = fingerprint(store.config, context, condition, train_config, device, dtype)
        name = _file_name(*context, *names)
        done = store.folder / f"{name}.done.pt"
        saved = None if store.force else load_matching(done, key)
        if saved is not None:
            params = {g: {k: v.to(resolve_device(device)) for k, v in group.items()}
                      for g, group in saved["params"].items()}  # fmt: skip
            table = pd.DataFrame(saved["rows"], columns=TABLE_COLUMNS)
            return ConditionRun(table, params, saved["seconds"])
        resume = ResumeFile(store.folder / f"{name}.pt", key, store.every_seconds,
                                store.force)  # fmt: skip
    result = train(
        cell, condition.rule, task, train_config, seeds=condition.seeds, device=device,
        dtype=dtype, description=description, resume=resume, **train_options,
    )  # fmt: skip
    table = _labelled(result.table, condition, task)
    if resume is not None:
        save_atomically({"key": resume.key, "rows": table.to_dict("list"),
                         "params": result.params, "seconds": result.seconds}, done)  # fmt: skip
        resume.remove()
    return ConditionRun(table, result.params, result.seconds)


def per_seed_rows(
    table: pd.DataFrame, metric: str, value: float | pd.Series, batch: int
) -> pd.DataFrame:
    """One sequence-level row per condition and seed of ``table``, labelled like its rows;
    ``value`` is one number for all or a Series indexed by (condition, seed)."""
    rows = table.drop_duplicates(["condition", "seed"]).assign(batch=batch, t=-1, metric=metric)
    if isinstance(value, pd.Series):
        value = [value[key] for key in zip(rows.condition, rows.seed)]
    return rows.assign(value=value)[TABLE_COLUMNS]
