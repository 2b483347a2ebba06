"""The toy task's runs, shared by notebooks 01 (toy alignment) and 02 (λ sweeps): the
alignment-tracking training config, the stacked toy networks (optionally at a set spectral
radius) and running conditions on them over the workers."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from bplambda.cells import Cell, make_cell
from bplambda.device import resolve_device, resolve_dtype
from bplambda.experiments.conditions import Condition, condition_title
from bplambda.experiments.runs import run_all, run_condition
from bplambda.rules import Rule
from bplambda.stacking import init_stacked_network
from bplambda.tasks.toy import ToyTask
from bplambda.train import TrainConfig


class ToySettings(Protocol):
    """What the toy runs read from notebook 01's or 02's config (both :class:`RunOptions`)."""

    jobs: int
    batch_size: int
    hidden_size: int
    log_every: int
    divergence_threshold: float
    progress: bool
    device: str
    dtype: str
    output_dir: str


def alignment_train_config(
    cfg: ToySettings, num_batches: int, lr_synthesiser: float, lr_rnn: float = 0.0
) -> TrainConfig:
    """Alignment is tracked every logged batch; a plastic RNN (``lr_rnn > 0``, readout alike)
    also logs the cosine between its update and BPTT's."""
    return TrainConfig(
        num_batches=num_batches,
        lr={"rnn": lr_rnn, "readout": lr_rnn, "synthesiser": lr_synthesiser},
        log_every=cfg.log_every,
        track_alignment=True,
        track_update_alignment=lr_rnn > 0,
        divergence_threshold=cfg.divergence_threshold,
        progress=cfg.progress,
    )


def spectral_radius(weight: Tensor) -> Tensor:
    """Largest eigenvalue modulus of each (stacked) square matrix ``(*M, H, H)`` → ``(*M,)``."""
    return torch.linalg.eigvals(weight).abs().amax(-1)


def toy_network(
    cell: Cell,
    task: ToyTask,
    seeds: Sequence[int],
    radius: float | None,
    dtype: str,
    device: str,
    rule: Rule | None = None,
) -> dict:
    """The stacked toy networks of ``seeds`` (with the groups ``rule`` needs), each with its
    recurrent weights rescaled to spectral radius ``radius`` (``None``: the paper's
    initialisation, ρ ≈ 0.58 at H = 30)."""
    params = init_stacked_network(cell, task.output_size, seeds, resolve_dtype(dtype),
                                  resolve_device(device), rule)  # fmt: skip
    if radius is not None:
        weight = params["rnn"]["weight_hh"]
        rho = spectral_radius(weight.double()).to(weight.dtype)
        params["rnn"]["weight_hh"] = weight * (radius / rho).reshape(-1, 1, 1)
    return params


@dataclass(frozen=True)
class ToyRun:
    """One condition on the toy task of length ``seq_len``; with ``radius``, the fixed RNN's
    spectral radius is set to it (``None``: the paper's initialisation)."""

    condition: Condition
    seq_len: int
    radius: float | None = None

    def title(self) -> str:
        rho = "" if self.radius is None else f" ρ={self.radius:g}"
        return f"{condition_title(self.condition)} T={self.seq_len}{rho}"


def run_on_toy(runs: Sequence[ToyRun], cfg: ToySettings, train_config: TrainConfig) -> pd.DataFrame:
    """Every run (on ``cfg.jobs`` workers), its rows in the order of ``runs``; a ``rho``
    column gives the spectral radius it set (NaN: the paper's initialisation)."""
    work = functools.partial(_toy_run, cfg, train_config)
    return pd.concat(run_all(work, runs, cfg, ToyRun.title), ignore_index=True)


def _toy_run(cfg: ToySettings, train_config: TrainConfig, run: ToyRun) -> pd.DataFrame:
    task = ToyTask(seq_len=run.seq_len, batch_size=cfg.batch_size)
    cell = make_cell("linear_rnn", task.input_size, cfg.hidden_size)
    c = run.condition
    params = toy_network(cell, task, c.seeds, run.radius, cfg.dtype, cfg.device, c.rule)
    table = run_condition(c, task, cell, train_config, cfg.device, cfg.dtype, params=params).table
    return table.assign(rho=np.nan if run.radius is None else run.radius)
