"""Notebook 03: sequential MNIST (docs/paper-bp-lambda.md §6.3): config, runs, tables and claims."""

from __future__ import annotations

import functools
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
from bplambda.cells import LSTM_MODES, make_cell
from bplambda.checks import checked
from bplambda.experiments.conditions import FIVE_SEEDS
from bplambda.experiments.grids import grid_condition_list
from bplambda.experiments.lstm_grids import GridOptions, GridUnit, grid_training, run_grid
from bplambda.experiments.options import shardable
from bplambda.experiments.runs import StateStore, per_seed_rows, run_condition
from bplambda.labels import DEFAULT_VARIANT, TRUNCATED, in_condition_order, named, with_labels
from bplambda.profiles import configure
from bplambda.train import Evaluation
from bplambda.verdicts import finding, increasing, paired_difference
from bplambda.wording import counted


@dataclass(frozen=True)
class Config(GridOptions):
    """Sequential MNIST (docs/paper-bp-lambda.md §6.3): LSTM 30, last-step 10-way readout,
    cross-entropy, batch 50, Adam lr 3e-4 for RNN, readout and synthesiser, BP(λ) scale s = 0.1,
    γ = 0.9; ``paper``: 50 epochs, the checkpoint with the lowest validation loss gives the test
    error.

    Conditions (:func:`grid_conditions`): the ``rules`` of :data:`GRID_RULES`, with truncated
    BPTT(n) and SG(n) for n in ``windows`` and BP(λ) for λ in ``lambdas`` in every LSTM mode of
    ``lstm_modes`` (``exact``: the correct Jacobian; ``faithful``: the official code's quirks).
    ``limit`` keeps only the first images of every split (smoke profile). ``split_seed`` fixes
    the 48,000 / 12,000 train/validation split for every seed (the official code draws it from
    the run's seed; a shared split keeps the stacked seeds' evaluation batched and the
    comparison between conditions paired on the same validation set). ``data_dir`` must
    hold MNIST (or torchvision must be able to download it there): checked when the config is
    made, so a notebook stops in its first cell.
    """

    NOTEBOOK: ClassVar[str] = "03_sequential_mnist"
    profile: str
    seeds: tuple[int, ...] = checked(checks.seeds)
    epochs: int = checked(checks.positive_int)
    windows: tuple[int, ...] = checked(checks.positive_ints, (1, 2, 3, 4, 5))
    lambdas: tuple[float, ...] = checked(checks.lambdas, (0.0, 0.5, 1.0))
    lstm_modes: tuple[str, ...] = checked(checks.choices(*LSTM_MODES), ("exact", "faithful"))
    hidden_size: int = checked(checks.positive_int, 30)
    batch_size: int = checked(checks.positive_int, 50)
    lr: float = checked(checks.non_negative, 3e-4)
    scale: float = checked(checks.non_negative, 0.1)
    gamma: float = checked(checks.gamma, 0.9)
    limit: int | None = checked(checks.optional_positive_int, None)
    split_seed: int = checked(checks.non_negative_int, 0)
    log_every: int = checked(checks.positive_int, 96)
    data_dir: str = checked(checks.folder, "data")

    def __post_init__(self) -> None:
        from bplambda.tasks.mnist import require_mnist

        super().__post_init__()
        require_mnist(self.data_dir)


DEFAULTS = {
    "smoke": {"seeds": (0,), "epochs": 1, "limit": 500, "windows": (1,), "lambdas": (1.0,),
              "batch_size": 50, "log_every": 5, "progress": False},
    "quick": {"seeds": (0, 1), "epochs": 2, "windows": (1,), "lambdas": (0.5, 1.0),
              "rules": ("bptt", "tbptt", "sg", "bp_lambda")},
    "medium": {"seeds": (0, 1, 2), "epochs": 10, "windows": (1, 3, 5), "lambdas": (0.5, 1.0)},
    "paper": {"seeds": FIVE_SEEDS, "epochs": 50},
}  # fmt: skip


def config(profile: str = "quick", **overrides: object) -> Config:
    """The seq-MNIST config: profile defaults, then the overrides that are not None."""
    return configure(Config, DEFAULTS, profile, **overrides)


@shardable("run_mnist", conditions=grid_condition_list)
def run(cfg: Config, store: StateStore | None = None) -> pd.DataFrame:
    """Train every condition; after each epoch log train/validation/test loss and error.

    Rows: ``loss`` (the training batch, every ``log_every`` batches) and, per epoch,
    ``{train,val,test}_{loss,error}`` with ``batch`` = batches trained; plus one
    ``seconds_per_epoch`` row per condition and seed: the wall time of one epoch of the whole
    stacked run (all its seeds, all λ of a BP(λ) grid, all windows of a TBPTT or SG grid),
    evaluation included.
    """
    return run_grid(cfg, store, _mnist_condition)


@functools.lru_cache(maxsize=1)
def _splits(data_dir: str, split_seed: int, limit: int | None):
    """The train/validation/test split, loaded once per process."""
    from bplambda.tasks.mnist import load_mnist, split_mnist

    return split_mnist(load_mnist(data_dir), split_seed=split_seed, limit=limit)


def training_batches(cfg: Config) -> list[int]:
    """Per unit of :func:`run` (a condition and its cell), the batches it trains (``epochs``
    passes over the training split, as :func:`_mnist_condition`): the campaign's measure of
    progress (:mod:`bplambda.campaign`)."""
    from bplambda.tasks.mnist import TRAIN_IMAGES, VALIDATION_SIZE

    images = TRAIN_IMAGES - VALIDATION_SIZE
    images = images if cfg.limit is None else min(images, cfg.limit)
    return [cfg.epochs * (images // cfg.batch_size)] * len(grid_condition_list(cfg))


def _mnist_condition(cfg: Config, store: StateStore | None, pair: GridUnit) -> pd.DataFrame:
    """One condition of :func:`run` (its rows and its timing rows)."""
    from bplambda.evaluate import classification_metrics
    from bplambda.tasks.mnist import SequentialMNIST

    condition, cell_name = pair
    splits = _splits(cfg.data_dir, cfg.split_seed, cfg.limit)
    task = SequentialMNIST(splits.train_images, splits.train_labels, cfg.batch_size)
    train_config = grid_training(cfg, cfg.epochs * task.batches_per_epoch, cfg.lr)
    cell = make_cell(cell_name, task.input_size, cfg.hidden_size)

    def evaluate(params):
        metrics = {}
        for split in ("train", "val", "test"):
            images, labels = getattr(splits, f"{split}_images"), getattr(splits, f"{split}_labels")
            for name, value in classification_metrics(cell, params, images, labels).items():
                metrics[f"{split}_{name}"] = value
        return metrics

    run = run_condition(
        condition, task, cell, train_config, cfg.device, cfg.dtype, store,
        evaluation=Evaluation(evaluate, every=task.batches_per_epoch),
    )  # fmt: skip
    timing = per_seed_rows(
        run.table, "seconds_per_epoch", run.seconds / cfg.epochs, train_config.num_batches
    )
    return pd.concat([run.table, timing], ignore_index=True)


# ----------------------------------------------------------------------------- tables, claims


EVALUATIONS = ("train_loss", "train_error", "val_loss", "val_error", "test_loss", "test_error")


def tables(table: pd.DataFrame, cfg: Config) -> dict[str, pd.DataFrame]:
    """``epochs``: per-epoch train/validation/test loss and error per condition and seed;
    ``best``: each seed's test error at its lowest-validation-loss epoch (the paper's
    checkpoint rule); ``test_error``: mean and 95% interval over seeds; ``timing``."""
    evals = table[table.metric.isin(EVALUATIONS)].copy()
    evals["epoch"] = evals.groupby("condition")["batch"].rank(method="dense").astype(int)
    keys = ["condition", "seed", "diverged", "epoch"]
    wide = evals.pivot_table(index=keys, columns="metric", values="value").reset_index()
    wide = wide.reindex(columns=[*keys, *EVALUATIONS])  # none where every model diverged early
    wide = wide[wide.val_loss.notna()]
    best = wide.loc[wide.groupby(["condition", "seed"])["val_loss"].idxmin()]
    best = best[["condition", "seed", "diverged", "epoch", "val_loss", "test_error"]]
    # a model that diverged before its first finite evaluation still counts (as diverged)
    models = table.drop_duplicates(["condition", "seed"])[["condition", "seed", "diverged"]]
    missing = models.merge(best[["condition", "seed"]], how="left", indicator=True)
    best = pd.concat([best, missing[missing._merge == "left_only"].drop(columns="_merge")])
    best = with_labels(best, table)
    summary = summarise(best.rename(columns={"test_error": "value"}), ["condition"])
    summary = in_condition_order(summary, table)
    timing = table[table.metric == "seconds_per_epoch"].drop_duplicates("condition")
    return {
        "epochs": evals.drop(columns=["t"]),
        "best": best,
        "test_error": summary,
        "timing": timing[["condition", "value"]].rename(columns={"value": "seconds_per_epoch"}),
    }


def claims(tables: dict[str, pd.DataFrame], cfg: Config) -> list[dict]:
    """The paper's qualitative seq-MNIST claims and the faithful-vs-exact LSTM finding, on each
    seed's test error at its lowest-validation-loss epoch."""
    best = tables["best"]
    summary = tables["test_error"]
    errors = summary.set_index("condition")["mean"]
    truncated = errors[summary.family.isin(TRUNCATED).to_numpy()]

    def values(condition: str) -> pd.Series:
        return per_seed(best, "test_error", condition=condition)

    def text(condition: str) -> str:  # three decimals: at 50 epochs rivals differ by 0.01
        return f"{condition} {interval_text(values(condition), best, 3, condition=condition)}"

    def bp(lmbda: float, variant: str = DEFAULT_VARIANT) -> str | None:
        return named(summary, family="bp_lambda", lmbda=lmbda, variant=variant)

    budget = counted(cfg.epochs, "epochs")
    found = []
    if bp(1.0) and len(truncated):
        rival = best_condition(truncated, lowest=True)
        found.append({
            "claim": "BP(1) has a lower test error than truncated BPTT(n) and n-step SG(n)",
            "paper": "yes (Table 2 per the ICLR reviews; numbers UNKNOWN)",
            "official_code": "not run here",
            "bplambda": f"{text(bp(1.0))} vs best {text(rival)} (n ∈ {list(cfg.windows)}, "
                        f"{budget})",
            "verdict": increasing([values(bp(1.0)), values(rival)]),
        })  # fmt: skip
    long_windows = summary[(summary.family == "tbptt") & (summary.n >= 3)].condition
    if bp(0.5) and len(long_windows):
        rival = best_condition(errors[long_windows], lowest=True)
        found.append({
            "claim": "BP(0.5) is not better than truncated BPTT(n ≥ 3)",
            "paper": "yes (per the ICLR reviews)",
            "official_code": "not run here",
            "bplambda": f"{text(bp(0.5))} vs best {text(rival)} ({budget})",
            "verdict": increasing([values(rival), values(bp(0.5))]),
        })  # fmt: skip
    for lmbda in cfg.lambdas:
        exact, faithful = bp(lmbda), bp(lmbda, "faithful")
        if exact and faithful:
            found.append({
                "claim": f"{exact}: the official LSTM quirks (faithful) vs the exact Jacobian",
                "paper": "not studied",
                "official_code": "faithful is what it runs",
                "bplambda": f"{text(exact)} vs {text(faithful)}; paired faithful − exact "
                            f"{paired_difference(values(faithful), values(exact)).text(3)}",
                "verdict": finding(values(faithful), values(exact), "faithful", "exact"),
            })  # fmt: skip
    note = still_improving(_improving_at_the_end(tables))
    return [{"experiment": "seq-MNIST test error", **c, "still_improving": note} for c in found]


def _improving_at_the_end(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model: is its lowest validation loss at the last epoch (the budget ended before its
    checkpoint rule could pick an earlier one)?"""
    best = tables["best"]
    last = tables["epochs"].groupby("condition")["epoch"].max()
    return best.assign(improving=best.epoch == best.condition.map(last))[["condition", "improving"]]
