"""One function per notebook: configs with profile defaults, and the runs that fill tables.

Every run returns a tidy table with the columns ``TABLE_COLUMNS``: one row per observation
(condition, family, λ, n, T, seed, batch, t, metric, value); ``t = -1`` marks a
sequence-level value. Facts: PAPER.md §6.1 (toy task) and §6.2 (plastic RNN).
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from bplambda.cells import LSTM_MODES, Cell, MaskedCell, make_cell
from bplambda.device import resolve_device, resolve_dtype
from bplambda.parameters import refuse
from bplambda.profiles import configure
from bplambda.results import append_rows
from bplambda.rules import Rule, make_rule
from bplambda.stacking import init_stacked_network
from bplambda.tasks.base import Task
from bplambda.tasks.toy import ToyTask
from bplambda.train import TrainConfig, train
from bplambda.verdicts import mean_ci

TABLE_COLUMNS = [
    "condition", "family", "lmbda", "n", "T", "seed", "diverged", "diverged_at", "batch", "t",
    "metric", "value",
]  # fmt: skip
DIVERGENCE_THRESHOLD = 1e4
"""Default: a model whose batch loss exceeds this (or is not finite) is marked diverged; the
tasks' losses start near 1, and the runs that blow up reach 1e6 and more."""


# ----------------------------------------------------------------------------- conditions
@dataclass(frozen=True)
class Condition:
    """A rule and the stacked models it trains: one seed and one label set per model."""

    rule: Rule
    seeds: tuple[int, ...]
    labels: tuple[dict, ...]


def bp_lambda_condition(
    lambdas: Sequence[float], seeds: Sequence[int], gamma: float, scale: float = 1.0
) -> Condition:
    """All λ values × all seeds as ONE stacked model (``K = len(λ)·len(seeds)``)."""
    models = [(lmbda, seed) for lmbda in lambdas for seed in seeds]
    rule = make_rule(
        "bp_lambda", lmbda=tuple(float(m[0]) for m in models), gamma=gamma, scale=scale
    )
    labels = tuple(
        {"condition": f"BP({m[0]:g})", "family": "bp_lambda", "lmbda": float(m[0]), "n": np.nan}
        for m in models
    )
    return Condition(rule, tuple(m[1] for m in models), labels)


def single_condition(
    name: str, seeds: Sequence[int], window: int | None = None, **options: object
) -> Condition:
    """``bptt``, ``oracle``, ``tbptt`` (window n) or ``sg`` (window n), seeds stacked."""
    display = {"bptt": "BPTT", "oracle": "oracle", "tbptt": "TBPTT", "sg": "SG"}[name]
    if window is not None:
        options["window"] = window
        display = f"{display}({window})"
    label = {"condition": display, "family": name, "lmbda": np.nan, "n": window or np.nan}
    return Condition(make_rule(name, **options), tuple(seeds), tuple(label for _ in seeds))


def _labelled(rows: pd.DataFrame, condition: Condition, task: Task) -> pd.DataFrame:
    labels = pd.DataFrame(list(condition.labels)).assign(model=range(len(condition.seeds)))
    table = rows.merge(labels, on="model")
    table["T"] = getattr(task, "seq_len", np.nan)
    return table[TABLE_COLUMNS]


def run_condition(
    condition: Condition,
    task: Task,
    cell: Cell,
    train_config: TrainConfig,
    device: str,
    dtype: str,
    append_to: str | Path | None = None,
    **train_options: Any,
) -> pd.DataFrame:
    """Train one condition (its models stacked) and label the table's rows.

    ``append_to``: a CSV that receives each logged batch's labelled rows as they are made, so
    partial results survive an interruption. ``train_options`` go to :func:`train` (e.g.
    ``evaluate``, ``evaluate_every``).
    """
    names = sorted({label["condition"] for label in condition.labels})
    description = (
        f"{names[0] if len(names) == 1 else names[0] + '…'} T={getattr(task, 'seq_len', '?')}"
    )
    on_log = None
    if append_to is not None:

        def on_log(rows: pd.DataFrame) -> None:
            append_rows(_labelled(rows, condition, task), append_to)

    result = train(
        cell, condition.rule, task, train_config, seeds=condition.seeds, device=device,
        dtype=dtype, description=description, on_log=on_log, **train_options,
    )  # fmt: skip
    return _labelled(result.table, condition, task)


# ----------------------------------------------------------------------------- toy task
@dataclass(frozen=True)
class ToyConfig:
    """The toy alignment experiment (fixed RNN) and its plastic-RNN part.

    Fixed RNN (PAPER.md §6.1): linear RNN H = 30, batch 10, 100 batches per epoch, 10 epochs,
    synthesiser Adam lr 1e-4, γ = 1, RNN and readout frozen. Plastic RNN (§6.2): RNN and
    readout learn with lr ``plastic_lr_rnn`` (UNKNOWN in the paper; default 1e-3),
    synthesiser lr 1e-3, SG scale s = 1; ``plastic_epochs`` is UNKNOWN too (default 10);
    ``plastic_seeds`` (10 by default: its verdict rests on differences between λ values).
    """

    NOTEBOOK: ClassVar[str] = "01_toy_alignment"
    profile: str
    seeds: tuple[int, ...]
    epochs: int
    log_every: int
    seq_len: int = 10
    batches_per_epoch: int = 100
    batch_size: int = 10
    hidden_size: int = 30
    lambdas: tuple[float, ...] = (0.0, 0.5, 1.0)
    windows: tuple[int, ...] = (1, 2, 3, 5)
    gamma: float = 1.0
    lr_synthesiser: float = 1e-4
    plastic_epochs: int = 10
    plastic_lr_rnn: float = 1e-3
    plastic_lr_synthesiser: float = 1e-3
    plastic_scale: float = 1.0
    plastic_seeds: tuple[int, ...] = tuple(range(10))
    divergence_threshold: float = DIVERGENCE_THRESHOLD
    output_dir: str | None = None  # results_folder(profile) / NOTEBOOK
    device: str = "auto"
    dtype: str = "float32"
    progress: bool = True


FIVE_SEEDS = (0, 1, 2, 3, 4)
TOY_DEFAULTS = {
    "smoke": {"seeds": (0, 1), "epochs": 2, "batches_per_epoch": 50, "windows": (1, 3),
              "plastic_epochs": 1, "plastic_seeds": (0, 1), "log_every": 10, "progress": False},
    "quick": {"seeds": FIVE_SEEDS, "epochs": 10, "plastic_epochs": 10, "log_every": 10},
    "paper": {"seeds": FIVE_SEEDS, "epochs": 10, "plastic_epochs": 10, "log_every": 5},
}  # fmt: skip


def toy_config(profile: str = "quick", **overrides: object) -> ToyConfig:
    """The toy experiment's config: profile defaults, then the overrides that are not None."""
    return configure(ToyConfig, TOY_DEFAULTS, profile, **overrides)


def _alignment_train_config(
    cfg: ToyConfig | SweepConfig, num_batches: int, lr_synthesiser: float, lr_rnn: float = 0.0
) -> TrainConfig:
    """Alignment is tracked every logged batch; a plastic RNN (``lr_rnn > 0``, readout alike)
    also logs the cosine between its update and BPTT's."""
    return TrainConfig(
        num_batches=num_batches,
        lr_rnn=lr_rnn,
        lr_readout=lr_rnn,
        lr_synthesiser=lr_synthesiser,
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
    cell: Cell, task: ToyTask, seeds: Sequence[int], radius: float | None, dtype: str, device: str
) -> dict:
    """The stacked toy networks of ``seeds``, each with its recurrent weights rescaled to
    spectral radius ``radius`` (``None``: the paper's initialisation, ρ ≈ 0.58 at H = 30)."""
    params = init_stacked_network(cell, task.output_size, seeds, resolve_dtype(dtype),
                                  resolve_device(device))  # fmt: skip
    if radius is not None:
        weight = params["rnn"]["weight_hh"]
        rho = spectral_radius(weight.double()).to(weight.dtype)
        params["rnn"]["weight_hh"] = weight * (radius / rho).reshape(-1, 1, 1)
    return params


def _run_all(
    conditions: list[Condition],
    cfg: ToyConfig | SweepConfig,
    seq_len: int,
    train_config: TrainConfig,
    radius: float | None = None,
) -> pd.DataFrame:
    """Every condition on the toy task; with ``radius``, the fixed RNN's spectral radius is
    set to it (a ``rho`` column says which; NaN: the paper's initialisation)."""
    task = ToyTask(seq_len=seq_len, batch_size=cfg.batch_size)
    cell = make_cell("linear_rnn", task.input_size, cfg.hidden_size)
    tables = []
    for c in conditions:
        params = toy_network(cell, task, c.seeds, radius, cfg.dtype, cfg.device)
        tables.append(run_condition(c, task, cell, train_config, cfg.device, cfg.dtype,
                                    params=params))  # fmt: skip
    return pd.concat(tables, ignore_index=True).assign(rho=np.nan if radius is None else radius)


def run_toy_alignment(cfg: ToyConfig) -> pd.DataFrame:
    """Fixed RNN: BP(λ) for every λ (one stacked run), SG(n) for every n, and the oracle.

    The SG runs report two alignments: the synthesiser's own output at every t
    (``alignment_synthetic``) and the learning signal the RNN would receive
    (``alignment_signal``: within-chunk BPTT plus the injected synthetic gradient).
    """
    conditions = [
        bp_lambda_condition(cfg.lambdas, cfg.seeds, cfg.gamma),
        *[single_condition("sg", cfg.seeds, n, gamma=cfg.gamma) for n in cfg.windows],
        single_condition("oracle", cfg.seeds),
    ]
    batches = cfg.epochs * cfg.batches_per_epoch
    train_config = _alignment_train_config(cfg, batches, cfg.lr_synthesiser)
    return _run_all(conditions, cfg, cfg.seq_len, train_config)


def run_toy_plastic(cfg: ToyConfig) -> pd.DataFrame:
    """Plastic RNN: BP(λ) (s = ``plastic_scale``) vs truncated BPTT(n), SG(n) and full BPTT.

    The true gradient for the alignment is recomputed by BPTT on the current weights at every
    logged batch; ``update_alignment`` is the cosine between the RNN update and BPTT's.
    """
    seeds = cfg.plastic_seeds
    conditions = [
        bp_lambda_condition(cfg.lambdas, seeds, cfg.gamma, cfg.plastic_scale),
        *[single_condition("tbptt", seeds, n) for n in cfg.windows],
        *[
            single_condition("sg", seeds, n, gamma=cfg.gamma, scale=cfg.plastic_scale)
            for n in cfg.windows
        ],
        single_condition("bptt", seeds),
    ]
    train_config = _alignment_train_config(
        cfg, cfg.plastic_epochs * cfg.batches_per_epoch, cfg.plastic_lr_synthesiser,
        lr_rnn=cfg.plastic_lr_rnn,
    )  # fmt: skip
    return _run_all(conditions, cfg, cfg.seq_len, train_config)


# ----------------------------------------------------------------------------- λ sweep
@dataclass(frozen=True)
class SweepConfig:
    """λ × sequence length on the toy task (fixed RNN), with n-step SG on the same axes.

    Per T, all λ values and seeds train as one stacked model. ``gamma`` is a parameter
    (the paper's toy runs use γ = 1). ``spectral_radii``: the same sweep again with the fixed
    RNN's recurrent weights rescaled to each spectral radius ρ (the paper's initialisation has
    ρ ≈ 0.58: it is contractive and the true gradient vanishes toward early steps), for λ in
    ``radius_lambdas`` and every SG(n): does BP(λ) gain at long T where long-range credit
    exists?
    """

    NOTEBOOK: ClassVar[str] = "02_lambda_sweeps"
    profile: str
    seeds: tuple[int, ...]
    epochs: int
    seq_lens: tuple[int, ...] = (10, 20, 40, 60)
    lambdas: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))
    windows: tuple[int, ...] = (1, 2, 3, 5, 10)
    gamma: float = 1.0
    batches_per_epoch: int = 100
    batch_size: int = 10
    hidden_size: int = 30
    lr_synthesiser: float = 1e-4
    log_every: int = 100
    spectral_radii: tuple[float, ...] = (0.9, 1.0)
    radius_lambdas: tuple[float, ...] = (0.0, 0.5, 1.0)
    divergence_threshold: float = DIVERGENCE_THRESHOLD
    output_dir: str | None = None  # results_folder(profile) / NOTEBOOK
    device: str = "auto"
    dtype: str = "float32"
    progress: bool = True


SWEEP_DEFAULTS = {
    "smoke": {"seeds": (0, 1), "epochs": 1, "batches_per_epoch": 20, "seq_lens": (5, 10),
              "lambdas": (0.0, 1.0), "windows": (1, 3), "log_every": 10, "spectral_radii": (1.0,),
              "radius_lambdas": (1.0,), "progress": False},
    "quick": {"seeds": FIVE_SEEDS, "epochs": 10, "log_every": 20},
    "paper": {"seeds": FIVE_SEEDS, "epochs": 10, "log_every": 20},
}  # fmt: skip


def sweep_config(profile: str = "quick", **overrides: object) -> SweepConfig:
    """The λ-sweep config: profile defaults, then the overrides that are not None."""
    return configure(SweepConfig, SWEEP_DEFAULTS, profile, **overrides)


def run_lambda_sweep(cfg: SweepConfig) -> pd.DataFrame:
    """For every T: BP(λ) over the λ grid (one stacked run) and SG(n) for every n, with the
    paper's initialisation; then, for every spectral radius of ``spectral_radii``, BP(λ) for
    ``radius_lambdas`` and SG(n) again (``rho`` names it; NaN: the paper's initialisation)."""
    batches = cfg.epochs * cfg.batches_per_epoch
    train_config = _alignment_train_config(cfg, batches, cfg.lr_synthesiser)
    sg = [single_condition("sg", cfg.seeds, n, gamma=cfg.gamma) for n in cfg.windows]
    paper = [bp_lambda_condition(cfg.lambdas, cfg.seeds, cfg.gamma), *sg]
    rescaled = [bp_lambda_condition(cfg.radius_lambdas, cfg.seeds, cfg.gamma), *sg]
    tables = [_run_all(paper, cfg, T, train_config) for T in cfg.seq_lens]
    tables += [
        _run_all(rescaled, cfg, T, train_config, radius)
        for radius in cfg.spectral_radii
        for T in cfg.seq_lens
    ]
    return pd.concat(tables, ignore_index=True)


def _per_seed_rows(
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


def check_grid(cfg: MNISTConfig | CopyRepeatConfig) -> None:
    """Refuse a grid whose rules need a list that is empty (e.g. ``tbptt`` without windows)."""
    needs = {"windows": {"tbptt", "sg"}, "lambdas": {"bp_lambda"}, "lstm_modes": {"bp_lambda"}}
    for name, rules in needs.items():
        used = sorted(rules & set(cfg.rules))
        if used and not getattr(cfg, name):
            raise refuse(name, getattr(cfg, name), f"rules {used} need at least one value")


def grid_conditions(cfg: MNISTConfig | CopyRepeatConfig) -> list[tuple[Condition, str]]:
    """(condition, cell name) pairs in the order of :data:`GRID_RULES`; seeds stacked, and
    BP(λ)'s λ grid × seeds as one stacked model per LSTM mode (``" faithful"`` labels the
    official code's quirks). Every other rule runs the exact LSTM."""
    pairs: list[tuple[Condition, str]] = []
    rules = set(cfg.rules)
    if "bptt" in rules:
        pairs.append((single_condition("bptt", cfg.seeds), "lstm"))
    for n in cfg.windows:
        if "tbptt" in rules:
            pairs.append((single_condition("tbptt", cfg.seeds, n), "lstm"))
        if "sg" in rules:
            sg = single_condition("sg", cfg.seeds, n, gamma=cfg.gamma, scale=cfg.scale)
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


# ----------------------------------------------------------------------------- seq-MNIST
@dataclass(frozen=True)
class MNISTConfig:
    """Sequential MNIST (PAPER.md §6.3): LSTM 30, last-step 10-way readout, cross-entropy,
    batch 50, Adam lr 3e-4 for RNN, readout and synthesiser, BP(λ) scale s = 0.1, γ = 0.9;
    ``paper``: 50 epochs, the checkpoint with the lowest validation loss gives the test error.

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
    seeds: tuple[int, ...]
    epochs: int
    rules: tuple[str, ...] = GRID_RULES
    windows: tuple[int, ...] = (1, 2, 3, 4, 5)
    lambdas: tuple[float, ...] = (0.0, 0.5, 1.0)
    lstm_modes: tuple[str, ...] = ("exact", "faithful")
    hidden_size: int = 30
    batch_size: int = 50
    lr: float = 3e-4
    scale: float = 0.1
    gamma: float = 0.9
    implementation: str = "lambda_return"
    limit: int | None = None
    split_seed: int = 0
    log_every: int = 96
    divergence_threshold: float = DIVERGENCE_THRESHOLD
    data_dir: str = "data"
    output_dir: str | None = None  # results_folder(profile) / NOTEBOOK
    device: str = "auto"
    dtype: str = "float32"
    progress: bool = True

    def __post_init__(self) -> None:
        from bplambda.tasks.mnist import require_mnist

        check_grid(self)
        require_mnist(self.data_dir)


MNIST_DEFAULTS = {
    "smoke": {"seeds": (0,), "epochs": 1, "limit": 500, "windows": (1,), "lambdas": (1.0,),
              "batch_size": 50, "log_every": 5, "progress": False},
    "quick": {"seeds": (0, 1), "epochs": 3, "windows": (1,), "lambdas": (0.5, 1.0),
              "rules": ("bptt", "tbptt", "sg", "bp_lambda")},
    "paper": {"seeds": FIVE_SEEDS, "epochs": 50},
}  # fmt: skip


def mnist_config(profile: str = "quick", **overrides: object) -> MNISTConfig:
    """The seq-MNIST config: profile defaults, then the overrides that are not None."""
    return configure(MNISTConfig, MNIST_DEFAULTS, profile, **overrides)


def run_mnist(cfg: MNISTConfig, append_to: str | Path | None = None) -> pd.DataFrame:
    """Train every condition; after each epoch log train/validation/test loss and error.

    Rows: ``loss`` (the training batch, every ``log_every`` batches) and, per epoch,
    ``{train,val,test}_{loss,error}`` with ``batch`` = batches trained; plus one
    ``seconds_per_epoch`` row per condition and seed: the wall time of one epoch of the whole
    stacked run (all its seeds, and all λ for BP(λ)), evaluation included.
    """
    from bplambda.evaluate import classification_metrics
    from bplambda.tasks.mnist import SequentialMNIST, load_mnist, split_mnist

    splits = split_mnist(load_mnist(cfg.data_dir), split_seed=cfg.split_seed, limit=cfg.limit)
    task = SequentialMNIST(splits.train_images, splits.train_labels, cfg.batch_size)
    train_config = TrainConfig(
        num_batches=cfg.epochs * task.batches_per_epoch, lr_rnn=cfg.lr, lr_readout=cfg.lr,
        lr_synthesiser=cfg.lr, log_every=cfg.log_every,
        divergence_threshold=cfg.divergence_threshold, progress=cfg.progress,
    )  # fmt: skip
    tables = []
    for condition, cell_name in grid_conditions(cfg):
        cell = make_cell(cell_name, task.input_size, cfg.hidden_size)

        def evaluate(params, cell=cell):
            metrics = {}
            for split in ("train", "val", "test"):
                images, labels = (
                    getattr(splits, f"{split}_images"),
                    getattr(splits, f"{split}_labels"),
                )
                for name, value in classification_metrics(cell, params, images, labels).items():
                    metrics[f"{split}_{name}"] = value
            return metrics

        start = time.perf_counter()
        table = run_condition(
            condition, task, cell, train_config, cfg.device, cfg.dtype, append_to=append_to,
            evaluate=evaluate, evaluate_every=task.batches_per_epoch,
        )  # fmt: skip
        per_epoch = (time.perf_counter() - start) / cfg.epochs
        timing = _per_seed_rows(table, "seconds_per_epoch", per_epoch, train_config.num_batches)
        tables += [table, timing]
    return pd.concat(tables, ignore_index=True)


# ----------------------------------------------------------------------------- copy-repeat
@dataclass(frozen=True)
class CopyRepeatConfig:
    """Copy-repeat with a curriculum (PAPER.md §6.4): LSTM 100, batch 100, Adam lr 1e-3 (RNN,
    readout) and 1e-5 (synthesiser), γ = 0.9, s = 1; ``paper``: 15,000 epochs × 10 batches =
    150,000 updates. Conditions (:func:`grid_conditions`): the ``rules`` of
    :data:`GRID_RULES`, with BP(λ) for λ in ``lambdas`` (one stacked model per LSTM mode),
    truncated BPTT(n) and SG(n) for n in ``windows``.

    Every model keeps its own curriculum level; the stack's batch is front-padded to the
    longest sequence, and :class:`~bplambda.cells.MaskedCell` holds the state at zero on the
    padding (exact: tested against unpadded runs).
    """

    NOTEBOOK: ClassVar[str] = "04_copy_repeat"
    profile: str
    seeds: tuple[int, ...]
    updates: int
    rules: tuple[str, ...] = GRID_RULES
    lambdas: tuple[float, ...] = (0.0, 0.5, 1.0)
    windows: tuple[int, ...] = (2, 5, 10)
    lstm_modes: tuple[str, ...] = ("exact",)
    hidden_size: int = 100
    batch_size: int = 100
    lr: float = 1e-3
    lr_synthesiser: float = 1e-5
    gamma: float = 0.9
    scale: float = 1.0
    implementation: str = "lambda_return"
    log_every: int = 50
    divergence_threshold: float = DIVERGENCE_THRESHOLD
    output_dir: str | None = None  # results_folder(profile) / NOTEBOOK
    device: str = "auto"
    dtype: str = "float32"
    progress: bool = True

    def __post_init__(self) -> None:
        check_grid(self)


COPY_DEFAULTS = {
    "smoke": {"seeds": (0,), "updates": 30, "hidden_size": 16, "batch_size": 8,
              "lambdas": (1.0,), "windows": (2,), "log_every": 5, "progress": False},
    "quick": {"seeds": (0, 1), "updates": 5000, "lambdas": (0.5, 1.0), "windows": (5,),
              "rules": ("bptt", "tbptt", "sg", "bp_lambda")},
    "paper": {"seeds": FIVE_SEEDS, "updates": 150_000, "log_every": 500},
}  # fmt: skip


def copy_repeat_config(profile: str = "quick", **overrides: object) -> CopyRepeatConfig:
    """The copy-repeat config: profile defaults, then the overrides that are not None."""
    return configure(CopyRepeatConfig, COPY_DEFAULTS, profile, **overrides)


def run_copy_repeat(cfg: CopyRepeatConfig, append_to: str | Path | None = None) -> pd.DataFrame:
    """Train every condition with its own curriculum per model.

    Rows: ``loss`` and the level ``N``, ``R``, ``T`` every ``log_every`` updates (``batch`` =
    updates so far), and per condition and seed ``seconds_per_1000_updates`` (the whole
    stacked run; it grows with the level reached, reported as ``mean_T``).
    """
    from bplambda.tasks.copy_repeat import CopyRepeatTask

    train_config = TrainConfig(
        num_batches=cfg.updates, lr_rnn=cfg.lr, lr_readout=cfg.lr,
        lr_synthesiser=cfg.lr_synthesiser, log_every=cfg.log_every,
        divergence_threshold=cfg.divergence_threshold, progress=cfg.progress,
    )  # fmt: skip
    tables = []
    for condition, cell_name in grid_conditions(cfg):
        task = CopyRepeatTask(cfg.batch_size)
        cell = MaskedCell(make_cell(cell_name, task.input_size - 1, cfg.hidden_size))
        start = time.perf_counter()
        table = run_condition(condition, task, cell, train_config, cfg.device, cfg.dtype,
                              append_to=append_to)  # fmt: skip
        per_1000 = 1000 * (time.perf_counter() - start) / cfg.updates
        mean_T = table[table.metric == "T"].groupby(["condition", "seed"])["value"].mean()
        tables += [
            table,
            _per_seed_rows(table, "mean_T", mean_T, cfg.updates),
            _per_seed_rows(table, "seconds_per_1000_updates", per_1000, cfg.updates),
        ]
    return pd.concat(tables, ignore_index=True)


# ----------------------------------------------------------------------------- reductions
FAMILY_ORDER = ("BP", "oracle", "BPTT", "SG", "TBPTT")


def condition_order(conditions: Sequence[str]) -> list[str]:
    """BP(λ) by λ, then oracle and BPTT, then SG(n) and TBPTT(n) by n."""

    def key(name: str) -> tuple[int, float, str]:
        family = name.split("(")[0]
        number = re.findall(r"[\d.]+", name)
        rank = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
        return (rank, float(number[0]) if number else 0.0, name)

    return sorted(set(conditions), key=key)


MEASURES = ("batch", "t", "metric", "value")


def labels(table: pd.DataFrame) -> list[str]:
    """The columns that name a model (condition, family, λ, n, T, seed, divergence, and any
    extra such as the toy sweep's ``rho``): every column but the measurement ones."""
    return [c for c in table.columns if c not in MEASURES]


def mean_over_steps(table: pd.DataFrame) -> pd.DataFrame:
    """Per-step metrics averaged over ``t < T`` (the terminal step has no future gradient);
    sequence-level metrics (``t = -1``) pass through. One row per seed, batch and metric."""
    per_step = table[(table.t >= 1) & (table.t < table["T"])]
    keys = labels(table)
    averaged = per_step.groupby([*keys, "batch", "metric"], dropna=False, as_index=False)[
        "value"
    ].mean()
    averaged["t"] = -1
    sequence_level = table[table.t == -1]
    return pd.concat([sequence_level, averaged[table.columns]], ignore_index=True)


def _condition_keys(table: pd.DataFrame) -> list[str]:
    return [c for c in ("condition", "T", "rho") if c in table.columns]


def final_batch(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of each condition's last logged batch.

    A diverged model has no rows there (they stop at its divergence): it is represented by its
    own last rows, moved to that batch with ``value`` NaN, so that :func:`summarise` counts it
    as diverged instead of silently dropping it, and never averages its values.
    """
    keys = _condition_keys(table)
    last = table.groupby(keys, dropna=False)["batch"].transform("max")
    final = table[table.batch == last]
    diverged = table[table.diverged & (table.batch < last)]
    own_last = diverged.groupby([*keys, "seed"], dropna=False)["batch"].transform("max")
    placeholders = diverged[diverged.batch == own_last].assign(value=np.nan)
    placeholders["batch"] = last[placeholders.index]
    return pd.concat([final, placeholders], ignore_index=True)


def final_values(by_batch: pd.DataFrame, window: int) -> pd.DataFrame:
    """Each model's final value of every sequence-level metric, two ways: ``value``, the mean
    over its logged batches within the last ``window`` batches (the last epoch: one noisy batch
    does not decide), and ``last_batch``, the value at the last logged batch. Diverged models
    keep a row with both NaN (counted apart by :func:`summarise`)."""
    final = final_batch(by_batch)
    keys = labels(by_batch)
    cut = by_batch.groupby(_condition_keys(by_batch), dropna=False)["batch"].transform("max")
    recent = by_batch[by_batch.batch > cut - window]
    epoch = recent.groupby([*keys, "metric"], dropna=False, as_index=False)["value"].mean()
    final = final.rename(columns={"value": "last_batch"}).drop(columns=["t"])
    final = final.merge(epoch, on=[*keys, "metric"], how="left")
    final.loc[final.diverged.astype(bool), ["value", "last_batch"]] = np.nan
    return final


def summarise(final: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean and 95% interval over seeds of ``value`` per group, diverged models counted apart.

    Columns: the ``by`` keys, ``mean``, ``low``, ``high``, ``seeds`` (finite values of models
    that did not diverge: what the mean is over) and ``diverged`` (models that diverged; their
    values never enter the mean).
    """
    rows = []
    for key, group in final.groupby(list(by), dropna=False, sort=True):
        healthy = group[~group.diverged.astype(bool)] if "diverged" in group else group
        mean, low, high = mean_ci(healthy.value.to_numpy())
        diverged = group.seed.nunique() - healthy.seed.nunique() if "seed" in group else 0
        rows.append({**dict(zip(by, key)), "mean": mean, "low": low, "high": high,
                     "seeds": int(healthy.value.notna().sum()), "diverged": diverged})  # fmt: skip
    return pd.DataFrame(rows)
