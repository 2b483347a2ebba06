"""What every experiment shares: conditions (a rule and its stacked models), running one
condition into a labelled table, and the grid of rules that the seq-MNIST and copy-repeat
notebooks run.

Every run returns a tidy table with the columns ``TABLE_COLUMNS``: one row per observation
(condition, family, λ, n, T, seed, batch, t, metric, value); ``t = -1`` marks a
sequence-level value.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np
import pandas as pd

from bplambda.cells import LSTM_MODES, Cell
from bplambda.device import resolve_device
from bplambda.errors import ParameterError, refuse
from bplambda.outputs import ParamGroups
from bplambda.parameters import project_path
from bplambda.resume import (
    SAVE_SECONDS,
    ResumeFile,
    fingerprint,
    load_matching,
    save_atomically,
)
from bplambda.rules import Rule, make_rule
from bplambda.tasks.base import Task
from bplambda.train import TrainConfig, train
from bplambda.workers import run_units

R = TypeVar("R")

TABLE_COLUMNS = [
    "condition", "family", "lmbda", "n", "T", "seed", "diverged", "diverged_at", "batch", "t",
    "metric", "value",
]  # fmt: skip
DIVERGENCE_THRESHOLD = 1e4
"""Default: a model whose batch loss exceeds this (or is not finite) is marked diverged; the
tasks' losses start near 1, and the runs that blow up reach 1e6 and more."""


FIVE_SEEDS = (0, 1, 2, 3, 4)


# ----------------------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Condition:
    """A rule and the stacked models it trains: one seed and one label set per model."""

    rule: Rule
    seeds: tuple[int, ...]
    labels: tuple[dict, ...]


def _grid_condition(
    values: Sequence[float], seeds: Sequence[int], rule_for: Callable[[tuple], Rule],
    label: Callable[[float], dict],
) -> Condition:  # fmt: skip
    """Every value × every seed as ONE stacked model (``K = len(values)·len(seeds)``):
    ``rule_for(one value per model)`` and ``label(value)`` for each model's rows."""
    models = [(value, seed) for value in values for seed in seeds]
    rule = rule_for(tuple(value for value, _ in models))
    return Condition(rule, tuple(s for _, s in models), tuple(label(v) for v, _ in models))


def bp_lambda_condition(
    lambdas: Sequence[float], seeds: Sequence[int], gamma: float, scale: float = 1.0
) -> Condition:
    """All λ values × all seeds as ONE stacked model (``K = len(λ)·len(seeds)``)."""
    return _grid_condition(
        [float(lmbda) for lmbda in lambdas], seeds,
        lambda per_model: make_rule("bp_lambda", lmbda=per_model, gamma=gamma, scale=scale),
        lambda lmbda: {"condition": f"BP({lmbda:g})", "family": "bp_lambda", "lmbda": lmbda,
                       "n": np.nan},
    )  # fmt: skip


def window_condition(
    name: str, windows: Sequence[int], seeds: Sequence[int], **options: object
) -> Condition:
    """TBPTT(n) or SG(n) (``name``) for all windows × all seeds as ONE stacked model, each
    model with its own window (one window for all where the grid has one)."""

    def rule_for(per_model: tuple) -> Rule:
        window = per_model if len(set(per_model)) > 1 else per_model[0]
        return make_rule(name, window=window, **options)

    return _grid_condition(
        windows, seeds, rule_for,
        lambda n: {"condition": f"{DISPLAY_NAMES[name]}({n})", "family": name, "lmbda": np.nan,
                   "n": n},
    )  # fmt: skip


DISPLAY_NAMES = {"bptt": "BPTT", "oracle": "oracle", "tbptt": "TBPTT", "sg": "SG",
                 "eprop": "e-prop", "rflo": "RFLO", "mdgl": "MDGL"}  # fmt: skip


def single_condition(name: str, seeds: Sequence[int], **options: object) -> Condition:
    """A rule without a grid (not BP(λ), TBPTT or SG), seeds stacked; its name in tables is
    :data:`DISPLAY_NAMES`' (an MDGL variant other than the exact one: ``MDGL-type``)."""
    display = DISPLAY_NAMES[name]
    if options.get("variant", "cell_specific") != "cell_specific":
        display = f"{display}-type"
    label = {"condition": display, "family": name, "lmbda": np.nan, "n": np.nan}
    return Condition(make_rule(name, **options), tuple(seeds), tuple(label for _ in seeds))


def _labelled(rows: pd.DataFrame, condition: Condition, task: Task) -> pd.DataFrame:
    labels = pd.DataFrame(list(condition.labels)).assign(model=range(len(condition.seeds)))
    table = rows.merge(labels, on="model")
    table["T"] = getattr(task, "seq_len", np.nan)
    return table[TABLE_COLUMNS]


# ----------------------------------------------------------------------------- sweeps
RAW = "raw"
"""The folder of a shard's whole run tables (``save_raw``), beside its usual outputs."""


@dataclass(frozen=True, kw_only=True)
class ShardOptions:
    """What :mod:`bplambda.sweep` sets in every notebook config (never part of a run's key).

    ``save_raw``: each run function also writes its whole table to ``<output_dir>/raw/`` (a
    shard does, for the merge). ``merge_from``: shard folders whose raw tables stand in for
    the runs, so that the notebook builds its tables, figures and claims from all shards.
    """

    save_raw: bool = False
    merge_from: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class RunOptions(ShardOptions):
    """A notebook config whose conditions run on ``jobs`` worker processes
    (:mod:`bplambda.workers`; 1: one after another in the notebook's own process). Never part
    of a run's key: the tables do not depend on it."""

    jobs: int = 1


@dataclass(frozen=True, kw_only=True)
class ResumableOptions(RunOptions):
    """A notebook config whose runs keep their states (:func:`state_store`); ``force``:
    recompute what ``<output_dir>/state`` holds (never part of a run's key)."""

    force: bool = False


def shardable(run: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
    """A run function ``run(cfg, ...) -> table`` that serves sweeps (:class:`ShardOptions`):
    with ``cfg.merge_from`` it returns the shards' tables of the same function, joined in
    shard order, instead of running; with ``cfg.save_raw`` it writes its table to
    ``<output_dir>/raw/<function name>.csv.gz``."""
    name = f"{run.__name__}.csv.gz"

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
            return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
        table = run(cfg, *args, **kwargs)
        if cfg.save_raw:
            path = project_path(cfg.output_dir) / RAW / name
            path.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(path, index=False)
        return table

    return sharded


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


def condition_title(condition: Condition) -> str:
    """A condition's name in progress lines: its first label, ``…`` where it has several."""
    names = sorted({label["condition"] for label in condition.labels})
    return names[0] if len(names) == 1 else names[0] + "…"


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


def grid_title(pair: tuple[Condition, str]) -> str:
    """A (condition, cell name) unit of a grid, by its condition's name."""
    return condition_title(pair[0])


def grid_cost(pair: tuple[Condition, str]) -> float:
    """A grid unit's rough cost: its stacked models, twice for BP(λ), whose synthesiser
    products cost about as much as the rest of its update."""
    condition = pair[0]
    return len(condition.seeds) * (2 if condition.labels[0]["family"] == "bp_lambda" else 1)


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
    ``train_options`` go to :func:`train` (e.g. ``evaluate``, ``evaluate_every``).
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


# ----------------------------------------------------------------------------- rule grids
GRID_RULES = ("bptt", "tbptt", "sg", "bp_lambda", "oracle")
"""The rules a seq-MNIST or copy-repeat grid can run (``rules``): BPTT, TBPTT(n) and SG(n) for
every window n, BP(λ) for every λ (one stacked model per LSTM mode), and the oracle."""


class GridConfig(Protocol):
    """What :func:`grid_conditions` reads from a seq-MNIST or copy-repeat config."""

    rules: tuple[str, ...]
    seeds: tuple[int, ...]
    windows: tuple[int, ...]
    lambdas: tuple[float, ...]
    lstm_modes: tuple[str, ...]
    gamma: float
    scale: float
    implementation: str


GRID_NEEDS = {"windows": {"tbptt", "sg"}, "lambdas": {"bp_lambda"}, "lstm_modes": {"bp_lambda"}}
"""The lists a grid's rules need (a rule with an empty list would silently not run)."""


def check_grid(
    cfg: object,
    runs: Sequence[str] = GRID_RULES,
    needs: dict[str, set[str]] = GRID_NEEDS,
    elsewhere: str = "Liu et al.'s rules run in notebook 05",
) -> None:
    """Refuse a config whose ``rules`` name one this notebook does not ``runs``, or need a
    list of ``needs`` that is empty (e.g. ``tbptt`` without windows)."""
    others = sorted(set(cfg.rules) - set(runs))
    if others:
        raise refuse("rules", cfg.rules, f"this notebook runs rules from {list(runs)}, "
                     f"not {others} ({elsewhere})")  # fmt: skip
    for name, rules in needs.items():
        used = sorted(rules & set(cfg.rules))
        if used and not getattr(cfg, name):
            raise refuse(name, getattr(cfg, name), f"rules {used} need at least one value")


def grid_conditions(cfg: GridConfig) -> list[tuple[Condition, str]]:
    """(condition, cell name) pairs in the order of :data:`GRID_RULES`; seeds stacked, the
    TBPTT(n) and SG(n) window grids × seeds as one stacked model each, and BP(λ)'s λ grid ×
    seeds as one stacked model per LSTM mode (``" faithful"`` labels the
    official code's quirks). Every other rule runs the exact LSTM."""
    pairs: list[tuple[Condition, str]] = []
    rules = set(cfg.rules)
    if "bptt" in rules:
        pairs.append((single_condition("bptt", cfg.seeds), "lstm"))
    if "tbptt" in rules:
        pairs.append((window_condition("tbptt", cfg.windows, cfg.seeds), "lstm"))
    if "sg" in rules:
        sg = window_condition("sg", cfg.windows, cfg.seeds, gamma=cfg.gamma, scale=cfg.scale)
        pairs.append((sg, "lstm"))
    for mode in cfg.lstm_modes if "bp_lambda" in rules else ():
        grid = bp_lambda_condition(cfg.lambdas, cfg.seeds, cfg.gamma, cfg.scale)
        rule = make_rule(
            "bp_lambda", lmbda=grid.rule.lmbda, gamma=cfg.gamma, scale=cfg.scale,
            implementation=cfg.implementation,
        )  # fmt: skip
        suffix = "" if mode == "exact" else f" {mode}"
        labels = tuple({**label, "condition": label["condition"] + suffix} for label in grid.labels)
        pairs.append((Condition(rule, grid.seeds, labels), LSTM_MODES[mode]))
    if "oracle" in rules:
        pairs.append((single_condition("oracle", cfg.seeds), "lstm"))
    return pairs
