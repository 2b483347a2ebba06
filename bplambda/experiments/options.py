"""The fields every notebook's config shares: how its runs are carried out, none of it part
of a run's key (a sweep's shard options, the worker count, the state store's ``force``), and
the common settings after each experiment's own (divergence threshold, output folder,
device, dtype, progress); and the decorator by which every run function serves sweeps."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from bplambda import checks
from bplambda.checks import checked
from bplambda.device import DTYPES
from bplambda.errors import ParameterError
from bplambda.experiments.conditions import Condition
from bplambda.labels import DEFAULT_VARIANT
from bplambda.paths import project_path

RAW = "raw"
"""The folder of a shard's whole run tables (``save_raw``), beside its usual outputs."""


@dataclass(frozen=True, kw_only=True)
class ShardOptions:
    """What :mod:`bplambda.sweep` sets in every notebook config (never part of a run's key).

    ``save_raw``: each run function also writes its whole table to ``<output_dir>/raw/`` (a
    shard does, for the merge). ``merge_from``: shard folders whose raw tables stand in for
    the runs, so that the notebook builds its tables, figures and claims from all shards.
    """

    save_raw: bool = checked(checks.flag, False)
    merge_from: tuple[str, ...] = checked(checks.folders, ())


@dataclass(frozen=True, kw_only=True)
class RunOptions(ShardOptions):
    """A notebook config whose conditions run on ``jobs`` worker processes
    (:mod:`bplambda.workers`; 1: one after another in the notebook's own process). Never part
    of a run's key: the tables do not depend on it."""

    jobs: int = checked(checks.positive_int, 1)


DIVERGENCE_THRESHOLD = 1e4
"""Default: a model whose batch loss exceeds this (or is not finite) is marked diverged; the
tasks' losses start near 1, and the runs that blow up reach 1e6 and more."""


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig(RunOptions):
    """The settings every notebook's config has besides its own: ``divergence_threshold`` (a
    model whose batch loss exceeds it, or is not finite, is frozen as diverged),
    ``output_dir`` (None: ``results_folder(profile) / NOTEBOOK``), ``device``, ``dtype`` and
    ``progress`` (progress bars)."""

    divergence_threshold: float = checked(checks.threshold, DIVERGENCE_THRESHOLD)
    output_dir: str | None = checked(checks.folder, None)
    device: str = checked(checks.device, "auto")
    dtype: str = checked(checks.choice(*DTYPES), "float32")
    progress: bool = checked(checks.flag, True)


@dataclass(frozen=True, kw_only=True)
class ResumableOptions(ExperimentConfig):
    """A notebook config whose runs keep their states (:func:`state_store`); ``force``:
    recompute what ``<output_dir>/state`` holds (never part of a run's key)."""

    force: bool = checked(checks.flag, False)


def shardable(
    raw: str, conditions: Callable[[Any], Iterable[Condition]] | None = None
) -> Callable[[Callable[..., pd.DataFrame]], Callable[..., pd.DataFrame]]:
    """A run function ``run(cfg, ...) -> table`` that serves sweeps (:class:`ShardOptions`):
    with ``cfg.merge_from`` it returns the shards' tables of the same function, joined in
    shard order, instead of running; with ``cfg.save_raw`` it writes its table to
    ``<output_dir>/raw/<raw>.csv.gz``. ``raw`` names that file once and for all: a campaign's
    finished shards, made by the code it was pinned to, are merged by today's code.

    ``conditions(cfg)``: the conditions the config runs, whose labels complete a shard table
    written before a label existed (its ``variant``); without it, every condition is its rule
    as named."""
    return functools.partial(_sharded, name=f"{raw}.csv.gz", conditions=conditions)


def _sharded(
    run: Callable[..., pd.DataFrame],
    name: str,
    conditions: Callable[[Any], Iterable[Condition]] | None,
) -> Callable[..., pd.DataFrame]:
    @functools.wraps(run)
    def sharded(cfg: Any, *args: Any, **kwargs: Any) -> pd.DataFrame:
        if cfg.merge_from:
            paths = [Path(shard) / RAW / name for shard in cfg.merge_from]
            missing = [str(p.parent.parent) for p in paths if not p.exists()]
            if missing:
                raise ParameterError(
                    f"merge_from: {missing} hold no {RAW}/{name}; did their jobs finish? "
                    "(their logs are in the sweep folder's submitit/)"
                )
            table = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
            return table if "variant" in table else _with_variants(table, cfg, conditions)
        table = run(cfg, *args, **kwargs)
        if cfg.save_raw:
            path = project_path(cfg.output_dir) / RAW / name
            path.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(path, index=False)
        return table

    sharded.raw_table = name  # type: ignore[attr-defined]  # read by run_tables
    return sharded


def run_tables(module: ModuleType) -> list[str]:
    """The run tables (file names under ``raw/``) that the run functions of the experiment
    ``module`` write in a shard."""
    return sorted({f.raw_table for f in vars(module).values()
                   if callable(f) and hasattr(f, "raw_table")})  # fmt: skip


def trained(folder: Path, module: ModuleType) -> bool:
    """Whether the shard ``folder`` holds every run table of the experiment ``module``: its
    training ended, and with it everything a merge reads, even where the shard's own report
    then failed (a merge makes the report anew from these tables)."""
    names = run_tables(module)
    return bool(names) and all((folder / RAW / name).exists() for name in names)


def _with_variants(
    table: pd.DataFrame, cfg: Any, conditions: Callable[[Any], Iterable[Condition]] | None
) -> pd.DataFrame:
    """``table`` (written before conditions carried a ``variant``) with each condition's
    variant from ``conditions(cfg)``, in the column's place after ``n``."""
    variants = {label["condition"]: label["variant"] for c in (conditions(cfg) if conditions
                else ()) for label in c.labels}  # fmt: skip
    table.insert(table.columns.get_loc("n") + 1, "variant",
                 table.condition.map(variants).fillna(DEFAULT_VARIANT))  # fmt: skip
    return table
