"""Notebook 04: copy-repeat with a curriculum (docs/paper-bp-lambda.md §6.4): config, runs, tables
and claims."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from bplambda import checks
from bplambda.analysis import interval_text, per_seed, still_improving, summarise
from bplambda.cells import LSTM_MODES, MaskedCell, make_cell
from bplambda.checks import checked
from bplambda.experiments.conditions import FIVE_SEEDS
from bplambda.experiments.grids import grid_condition_list
from bplambda.experiments.lstm_grids import GridOptions, GridUnit, grid_training, run_grid
from bplambda.experiments.options import shardable
from bplambda.experiments.runs import StateStore, per_seed_rows, run_condition
from bplambda.labels import DEFAULT_VARIANT, TRUNCATED, in_condition_order, named, with_labels
from bplambda.profiles import configure
from bplambda.verdicts import increasing
from bplambda.wording import counted


@dataclass(frozen=True)
class Config(GridOptions):
    """Copy-repeat with a curriculum (docs/paper-bp-lambda.md §6.4): LSTM 100, batch 100, Adam lr
    1e-3 (RNN, readout) and 1e-5 (synthesiser), γ = 0.9, s = 1; ``paper``: 15,000 epochs × 10
    batches = 150,000 updates. Conditions (:func:`grid_conditions`): the ``rules`` of
    :data:`GRID_RULES`, with BP(λ) for λ in ``lambdas`` (one stacked model per LSTM mode),
    truncated BPTT(n) and SG(n) for n in ``windows``.

    Every model keeps its own curriculum level; the stack's batch is front-padded to the
    longest sequence, and :class:`~bplambda.cells.MaskedCell` holds the state at zero on the
    padding (exact: tested against unpadded runs).
    """

    NOTEBOOK: ClassVar[str] = "04_copy_repeat"
    profile: str
    seeds: tuple[int, ...] = checked(checks.seeds)
    updates: int = checked(checks.positive_int)
    lambdas: tuple[float, ...] = checked(checks.lambdas, (0.0, 0.5, 1.0))
    windows: tuple[int, ...] = checked(checks.positive_ints, (2, 5, 10))
    lstm_modes: tuple[str, ...] = checked(checks.choices(*LSTM_MODES), ("exact",))
    hidden_size: int = checked(checks.positive_int, 100)
    batch_size: int = checked(checks.positive_int, 100)
    lr: float = checked(checks.non_negative, 1e-3)
    lr_synthesiser: float = checked(checks.non_negative, 1e-5)
    gamma: float = checked(checks.gamma, 0.9)
    scale: float = checked(checks.non_negative, 1.0)
    log_every: int = checked(checks.positive_int, 50)


DEFAULTS = {
    "smoke": {"seeds": (0,), "updates": 30, "hidden_size": 16, "batch_size": 8,
              "lambdas": (1.0,), "windows": (2,), "log_every": 5, "progress": False},
    "quick": {"seeds": (0, 1), "updates": 2500, "lambdas": (0.5, 1.0), "windows": (5,),
              "rules": ("bptt", "tbptt", "sg", "bp_lambda")},
    "medium": {"seeds": (0, 1, 2), "updates": 30_000, "lambdas": (0.5, 1.0), "windows": (5,),
               "rules": ("bptt", "tbptt", "sg", "bp_lambda"), "log_every": 100},
    "paper": {"seeds": FIVE_SEEDS, "updates": 150_000, "log_every": 500},
}  # fmt: skip


def config(profile: str = "quick", **overrides: object) -> Config:
    """The copy-repeat config: profile defaults, then the overrides that are not None."""
    return configure(Config, DEFAULTS, profile, **overrides)


@shardable("run_copy_repeat", conditions=grid_condition_list)
def run(cfg: Config, store: StateStore | None = None) -> pd.DataFrame:
    """Train every condition with its own curriculum per model.

    Rows: ``loss`` and the level ``N``, ``R``, ``T`` every ``log_every`` updates (``batch`` =
    updates so far), and per condition and seed ``seconds_per_1000_updates`` (the whole
    stacked run; it grows with the level reached, reported as ``mean_T``).
    """
    return run_grid(cfg, store, _copy_repeat_condition)


def training_batches(cfg: Config) -> list[int]:
    """Per unit of :func:`run` (a condition and its cell), the updates it trains: the
    campaign's measure of progress (:mod:`bplambda.campaign`)."""
    return [cfg.updates] * len(grid_condition_list(cfg))


def _copy_repeat_condition(cfg: Config, store: StateStore | None, pair: GridUnit) -> pd.DataFrame:
    """One condition of :func:`run` (its rows, ``mean_T`` and timing rows)."""
    from bplambda.tasks.copy_repeat import CopyRepeatTask

    condition, cell_name = pair
    train_config = grid_training(cfg, cfg.updates, cfg.lr_synthesiser)
    task = CopyRepeatTask(cfg.batch_size)
    cell = MaskedCell(make_cell(cell_name, task.input_size - 1, cfg.hidden_size))
    run = run_condition(condition, task, cell, train_config, cfg.device, cfg.dtype, store)
    table, per_1000 = run.table, 1000 * run.seconds / cfg.updates
    mean_T = table[table.metric == "T"].groupby(["condition", "seed"])["value"].mean()
    return pd.concat(
        [
            table,
            per_seed_rows(table, "mean_T", mean_T, cfg.updates),
            per_seed_rows(table, "seconds_per_1000_updates", per_1000, cfg.updates),
        ],
        ignore_index=True,
    )


# ----------------------------------------------------------------------------- tables, claims


def solved_length(N: pd.Series, R: pd.Series) -> pd.Series:
    """T of the last level a model passed: the predecessor of its current level (N, R)
    (``(N, R−1)`` if ``R == N``, else ``(N−1, R)``); 0 while still at (1, 1)."""
    prev_n = N.where(R == N, N - 1)
    prev_r = R.where(R != N, R - 1)
    solved = (prev_r + 1) * prev_n + 3
    return solved.where((N > 1) | (R > 1), 0)


def tables(table: pd.DataFrame, cfg: Config) -> dict[str, pd.DataFrame]:
    """``levels``: per logged update the level being trained (N, R, T) and ``solved_T``, the
    largest T solved so far (what the claims compare); ``final``: each seed's last level and
    the largest T solved; ``solved``: mean and interval over seeds; ``timing``."""
    levels = table[table.metric.isin(["N", "R", "T"])]
    wide = levels.pivot_table(index=["condition", "seed", "diverged", "batch"], columns="metric",
                              values="value").reset_index()  # fmt: skip
    wide["solved_T"] = solved_length(wide["N"], wide["R"])
    at = ["condition", "seed", "batch"]
    trained = levels[levels.metric == "T"].drop(columns="value")
    solved = trained.merge(wide[[*at, "solved_T"]], on=at).rename(columns={"solved_T": "value"})
    levels = pd.concat([levels, solved.assign(metric="solved_T")[levels.columns]],
                       ignore_index=True)  # fmt: skip
    final = wide.loc[wide.groupby(["condition", "seed"])["batch"].idxmax()].copy()
    final = with_labels(final, table)
    summary = summarise(final.rename(columns={"solved_T": "value"}), ["condition"])
    summary = in_condition_order(summary, table)
    timing = table[table.metric.isin(["seconds_per_1000_updates", "mean_T"])]
    timing = timing.pivot_table(index="condition", columns="metric", values="value").reset_index()
    return {"levels": levels, "final": final, "solved": summary, "timing": timing}


def claims(tables: dict[str, pd.DataFrame], cfg: Config) -> list[dict]:
    """The paper's claim: BP(1) reaches longer sequences than the truncated methods."""
    final = tables["final"]
    summary = tables["solved"]
    solved = summary.set_index("condition")["mean"]
    truncated = solved[summary.family.isin(TRUNCATED).to_numpy()]
    top = named(summary, family="bp_lambda", lmbda=max(cfg.lambdas), variant=DEFAULT_VARIANT)
    if top is None or not len(truncated):
        return []
    rival = truncated.idxmax()

    def values(condition: str) -> pd.Series:
        return per_seed(final, "solved_T", condition=condition)

    def text(condition: str) -> str:
        return f"{condition} {interval_text(values(condition), final, condition=condition)}"

    return [{
        "still_improving": still_improving(_improving_at_the_end(tables["levels"])),
        "experiment": "copy-repeat",
        "claim": f"{top} solves longer sequences than truncated BPTT(n) and SG(n)",
        "paper": "yes (per the ICLR reviews; lengths UNKNOWN)",
        "official_code": "not run here",
        "bplambda": f"largest T solved: {text(top)} vs best {text(rival)} "
                    f"({counted(cfg.updates, 'updates')}, n ∈ {list(cfg.windows)})",
        "verdict": increasing([values(rival), values(top)]),
    }]  # fmt: skip


def _improving_at_the_end(levels: pd.DataFrame) -> pd.DataFrame:
    """Per model: did the largest T it solved grow over the last third of the updates?"""
    solved = levels[levels.metric == "solved_T"].sort_values("batch")
    cut = 2 * solved.groupby("condition")["batch"].transform("max") / 3
    end = solved.groupby(["condition", "seed"])["value"].last()
    before = solved[solved.batch <= cut].groupby(["condition", "seed"])["value"].last()
    return (end > before.reindex(end.index)).rename("improving").reset_index()
