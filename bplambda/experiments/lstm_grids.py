"""What notebooks 03 (seq-MNIST) and 04 (copy-repeat) share: an LSTM trained by every rule of
a grid (:mod:`bplambda.experiments.grids`), seeds and windows stacked, on the worker pool, with
Adam; each notebook adds its task, its budget and its tables."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from bplambda import checks
from bplambda.checks import checked
from bplambda.experiments.conditions import Condition
from bplambda.experiments.grids import (
    GRID_RULES,
    check_grid,
    grid_conditions,
    grid_cost,
    grid_title,
)
from bplambda.experiments.options import ResumableOptions
from bplambda.experiments.runs import StateStore, run_all
from bplambda.rules import IMPLEMENTATIONS, RULES
from bplambda.train import TrainConfig

GridUnit = tuple[Condition, str]
"""One unit of a grid's run: a condition and the name of its cell (the LSTM mode)."""


@dataclass(frozen=True, kw_only=True)
class GridOptions(ResumableOptions):
    """The options of an LSTM grid that notebooks 03 and 04 set alike: the ``rules`` of
    :data:`GRID_RULES` to run, BP(λ)'s ``implementation`` (the exact ``lambda_return`` or the
    ``online`` traces, identical updates), and ``compile_step`` (``torch.compile`` the LSTM
    step of BPTT, TBPTT and SG; :class:`~bplambda.train.TrainConfig`). A config that names a
    rule outside the grid, or a rule without its windows or λ values, is refused when made."""

    rules: tuple[str, ...] = checked(checks.choices(*RULES), GRID_RULES)
    implementation: str = checked(checks.choice(*IMPLEMENTATIONS), "lambda_return")
    compile_step: bool = checked(checks.flag, False)

    def __post_init__(self) -> None:
        check_grid(self)


def run_grid(
    cfg: GridOptions,
    store: StateStore | None,
    unit: Callable[[GridOptions, StateStore | None, GridUnit], pd.DataFrame],
) -> pd.DataFrame:
    """``unit(cfg, store, (condition, cell name))`` for every unit of the config's grid on its
    worker pool (costliest first), the rows of all units in the grid's order."""
    work = functools.partial(unit, cfg, store)
    return pd.concat(run_all(work, grid_conditions(cfg), cfg, grid_title, grid_cost),
                     ignore_index=True)  # fmt: skip


def grid_training(cfg: GridOptions, num_batches: int, lr_synthesiser: float) -> TrainConfig:
    """The training settings of a grid unit: Adam at ``cfg.lr`` for the LSTM and readout and
    ``lr_synthesiser`` for the synthesiser, with the config's logging, divergence threshold,
    progress bars and ``compile_step``."""
    return TrainConfig(
        num_batches=num_batches,
        lr={"rnn": cfg.lr, "readout": cfg.lr, "synthesiser": lr_synthesiser},
        log_every=cfg.log_every, divergence_threshold=cfg.divergence_threshold,
        progress=cfg.progress, compile_step=cfg.compile_step,
    )  # fmt: skip
