"""Notebook 04: copy-repeat with a curriculum (docs/paper-bp-lambda.md §6.4): config, runs, tables
and claims."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pandas as pd

from bplambda import checks
from bplambda.analysis import (
    best_condition,
    interval_text,
    per_seed,
    still_improving,
    summarise,
)
from bplambda.cells import LSTM_MODES, MaskedCell, make_cell
from bplambda.checks import checked
from bplambda.experiments.conditions import FIVE_SEEDS
from bplambda.experiments.grids import grid_condition_list
from bplambda.experiments.lstm_grids import GridOptions, GridUnit, grid_training, run_grid
from bplambda.experiments.options import shardable
from bplambda.experiments.runs import StateStore, per_seed_rows, run_condition
from bplambda.labels import DEFAULT_VARIANT, TRUNCATED, in_condition_order, named, with_labels
from bplambda.profiles import configure
from bplambda.results import markdown_table
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


def level_stays(table: pd.DataFrame) -> pd.DataFrame:
    """Per model, each curriculum level it trained at, in order: ``condition``, ``seed``,
    ``diverged``, ``T`` (the level's sequence length), ``reached`` (the first logged update at
    that level: it got there at most ``log_every`` updates earlier), ``updates`` (from
    ``reached`` to the next level's, or to the model's last update) and ``last`` (the level it
    ended at, unsolved).

    table: the run table of :func:`run`; its ``T`` rows are the levels (a level only grows)."""
    model = ["condition", "seed"]
    trained = table[table.metric == "T"].sort_values([*model, "batch"])
    starts = trained[trained.groupby(model)["value"].diff().ne(0)]  # a model's first row too
    end = (trained.groupby(model)["batch"].max() + 1).rename("end").reset_index()
    stays = starts[[*model, "diverged", "batch", "value"]].rename(
        columns={"batch": "reached", "value": "T"}
    )
    stays = stays.merge(end, on=model).reset_index(drop=True)
    following = stays.groupby(model)["reached"].shift(-1)
    stays["last"] = following.isna()
    stays["updates"] = (following.fillna(stays["end"]) - stays["reached"]).astype(int)
    return stays.drop(columns="end")


def level_plateaus(stays: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Per condition, the updates its models spent at one level: ``stay = "last"``, the level
    each ended at; ``"longest"``, the level it trained at longest (the earlier of a tie).
    :func:`~bplambda.analysis.summarise` of them over seeds (``mean``, ``low``, ``high``,
    ``interval``, ``seeds``, ``diverged``), and ``levels``: the T of those stays, one per seed
    that did not diverge.

    A stay that fills much of the budget is a plateau, which a shorter run cannot tell apart
    from a slow climb."""
    model = ["condition", "seed"]
    longest = stays.loc[stays.groupby(model)["updates"].idxmax()]
    picked = pd.concat([stays[stays["last"]].assign(stay="last"), longest.assign(stay="longest")])
    keys = ["condition", "stay"]
    summary = summarise(picked.rename(columns={"updates": "value"}), keys)
    healthy = picked[~picked.diverged.astype(bool)].sort_values("T")
    levels = healthy.groupby(keys)["T"].agg(lambda T: ", ".join(f"{t:g}" for t in T))
    summary = summary.merge(levels.rename("levels").reset_index(), on=keys, how="left")
    return in_condition_order(summary, table)


def plateau_markdown(plateaus: pd.DataFrame, cfg: Config) -> str:
    """The summary's paragraph and table on :func:`level_plateaus`, in whole updates."""
    columns = ["condition", "stay", "levels", "mean", "low", "high", "interval", "seeds",
               "diverged"]  # fmt: skip
    whole = {c: plateaus[c].map(lambda v: "" if pd.isna(v) else f"{v:,.0f}")
             for c in ("mean", "low", "high")}  # fmt: skip
    shown = plateaus[columns].assign(**whole)
    return (
        f"**Updates at one level** of {cfg.updates:,} (mean over seeds and [low, high], as "
        f"above; levels are logged every {cfg.log_every:,} updates): `last`, at the level each "
        "model ended at without solving it; `longest`, at the level it trained at longest, "
        "with the T of those levels, one per seed. A stay that fills much of the budget is a "
        "plateau, which a shorter run cannot tell apart from a slow climb.\n\n"
        + markdown_table(shown)
    )


def tables(table: pd.DataFrame, cfg: Config) -> dict[str, pd.DataFrame]:
    """``levels``: per logged update the level being trained (N, R, T) and ``solved_T``, the
    largest T solved so far (what the claims compare); ``final``: each seed's last level and
    the largest T solved; ``solved``: mean and interval over seeds; ``timing``; ``stays``:
    each model's levels and the updates it spent at each (:func:`level_stays`);
    ``plateaus``: per condition the longest and the last of those stays (:func:`level_plateaus`)."""
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
    stays = level_stays(table)
    return {"levels": levels, "final": final, "solved": summary, "timing": timing,
            "stays": stays, "plateaus": level_plateaus(stays, table)}  # fmt: skip


def claims(tables: dict[str, pd.DataFrame], cfg: Config) -> list[dict]:
    """The paper's claim: BP(1) reaches longer sequences than the truncated methods."""
    final = tables["final"]
    summary = tables["solved"]
    solved = summary.set_index("condition")["mean"]
    truncated = solved[summary.family.isin(TRUNCATED).to_numpy()]
    top = named(summary, family="bp_lambda", lmbda=max(cfg.lambdas), variant=DEFAULT_VARIANT)
    if top is None or not len(truncated):
        return []
    rival = best_condition(truncated)

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
