"""The three tasks of Liu et al.'s study (docs/paper-liu2022.md §6), each with the rate cell it
trains: the leak α = exp(−1/τ) is the task's (seq-MNIST: α = 0)."""

from __future__ import annotations

import math
from typing import Protocol

from bplambda.cells import Cell, make_cell
from bplambda.errors import refuse
from bplambda.tasks.base import Task

LIU_TASKS = ("seq_mnist", "pattern_generation", "delayed_match")
"""The tasks of Liu et al.'s study, by name (notebook 05's ``tasks``)."""

CHANCE_LOSS = {"seq_mnist": math.log(10), "delayed_match": math.log(2)}
"""Per classification task, the cross-entropy of a uniform guess over its classes (ten digits;
match or not): the loss of a network that has learnt nothing from the inputs."""


class LiuTaskSettings(Protocol):
    """What the tasks read from notebook 05's config."""

    data_dir: str
    limit: int | None
    batch_size: int
    hidden_size: int
    pattern_seq_len: int
    tau_pattern: float
    delay: int
    cue_len: int
    cue_sigma: float
    dms_batch_size: int
    tau_dms: float
    dms_train_size: int | None
    dms_noisy_test_std: float
    dms_hidden_size: int | None
    dms_excitatory_fraction: float | None


def excitatory_fraction(name: str, cfg: LiuTaskSettings) -> float | None:
    """The fraction of excitatory units of task ``name``'s network under Dale's law (None:
    no Dale's law): only delayed match has one (``dms_excitatory_fraction``), as the authors'
    delayed-match code; their seq-MNIST and pattern-generation networks are sign-free."""
    return cfg.dms_excitatory_fraction if name == "delayed_match" else None


def has_cell_types(name: str, cfg: LiuTaskSettings) -> bool:
    """Whether task ``name``'s network has cell types (E and I populations under Dale's law),
    the types cell-type MDGL averages over: without them its two blocks of sign-free weights
    average to ≈ 0 and it is ≈ e-prop."""
    return excitatory_fraction(name, cfg) is not None


def liu_task(name: str, cfg: LiuTaskSettings) -> tuple[Task, Cell]:
    """The task ``name`` and its rate cell (the leak α = exp(−1/τ) the task uses; delayed
    match's cell may have its own size and Dale's law, as the authors' code)."""
    if name == "seq_mnist":
        from bplambda.tasks.mnist import SequentialMNIST, load_mnist, split_mnist

        splits = split_mnist(load_mnist(cfg.data_dir), limit=cfg.limit, validation_size=5000)
        task, alpha = SequentialMNIST.from_splits(splits, cfg.batch_size), 0.0
    elif name == "pattern_generation":
        from bplambda.tasks.pattern_generation import PatternGeneration

        T = cfg.pattern_seq_len
        periods = tuple(round(T / k) for k in (1, 2, 3, 5))
        task, alpha = PatternGeneration(seq_len=T, periods=periods), math.exp(-1 / cfg.tau_pattern)
    elif name == "delayed_match":
        from bplambda.tasks.delayed_match import DelayedMatch

        task = DelayedMatch(delay=cfg.delay, cue_len=cfg.cue_len, sigma=cfg.cue_sigma,
                            batch_size=cfg.dms_batch_size, train_size=cfg.dms_train_size,
                            noisy_test_std=cfg.dms_noisy_test_std)  # fmt: skip
        units = cfg.hidden_size if cfg.dms_hidden_size is None else cfg.dms_hidden_size
        cell = make_cell("rate_rnn", task.input_size, units, alpha=math.exp(-1 / cfg.tau_dms),
                         excitatory_fraction=excitatory_fraction(name, cfg))  # fmt: skip
        return task, cell
    else:
        raise refuse("tasks", name, f"choose from {list(LIU_TASKS)}")
    return task, make_cell("rate_rnn", task.input_size, cfg.hidden_size, alpha=alpha)
