"""Notebook 05: generalisation and loss curvature of BP(λ) vs BPTT, e-prop, RFLO and MDGL
(Liu et al. 2022 carried over to BP(λ); docs/paper-liu2022.md §4 and §6): config, conditions, runs.

Every condition trains Liu et al.'s rate RNN on each task with plain SGD and the L2 term, all
seeds stacked; the same seed is the same initial network under every rule. At every
checkpoint, on fixed seeded sets: λ_max of the full, untruncated training loss (recurrent
block, power iteration with the sign kept), train and test loss and error (seq-MNIST: clean
and noisy test), and the gaps; every logged batch also gives cos(rule update, BPTT gradient)
and the alignment of the rule's future signal. At the end, in float64: λ_max again (power
iteration, with Lanczos as a check), the rule's own curvature c₁ along the sharp direction
and Liu et al.'s stability prediction 2/(η·c₁).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
from torch import Tensor

from bplambda import checks
from bplambda.analysis import mean_over_steps, summarise
from bplambda.checks import checked
from bplambda.errors import ParameterError
from bplambda.experiments.conditions import FIVE_SEEDS, Condition, condition_title
from bplambda.experiments.generalisation_claims import claims
from bplambda.experiments.generalisation_stats import (
    correlations,
    identities,
    matched_loss,
    matched_runs,
    unpooled,
)
from bplambda.experiments.grids import check_grid, rule_conditions
from bplambda.experiments.options import ResumableOptions, shardable
from bplambda.experiments.runs import (
    TABLE_COLUMNS,
    StateStore,
    per_seed_rows,
    run_all,
    run_condition,
)
from bplambda.labels import condition_order
from bplambda.outputs import ParamGroups
from bplambda.profiles import configure
from bplambda.rules import RULES
from bplambda.rules.eligibility import VARIANTS
from bplambda.sharpness import SOLVERS, checkpoint_metrics, final_curvature
from bplambda.tasks.liu import LIU_TASKS, has_cell_types, liu_task
from bplambda.train import OPTIMISERS, Evaluation, TrainConfig

LIU_RULES = ("bptt", "eprop", "rflo", "mdgl", "tbptt", "sg", "bp_lambda", "oracle")
"""The conditions of docs/paper-liu2022.md §6: BPTT, e-prop (symmetric feedback: the paper's
three-factor rule), RFLO (random feedback), MDGL (``mdgl_variants``), TBPTT(n) and SG(n)
for every window n, BP(λ) for every λ (one stacked model), the oracle."""


@dataclass(frozen=True)
class Config(ResumableOptions):
    """Liu et al.'s study with BP(λ) added (docs/paper-liu2022.md §3, §4, §6).

    Training (all tasks): rate RNN of ``hidden_size`` units, plain SGD (``optimiser``) with
    ``lr`` 0.01 on the RNN and readout, L2 ``l2``·½‖W‖² on every weight matrix, the task's
    loss; BP(λ)'s and SG's synthesisers learn by the same optimiser with ``lr_synthesiser``
    (γ ``gamma``, scale ``scale``). With SGD on the RNN the synthetic gradient's size enters
    the update directly, so ``lr_synthesiser`` bounds how far BP(λ) can be driven; where its
    default stays stable and where it does not is measured in docs/paper-liu2022.md §6.
    ``iterations`` batches, a checkpoint every ``checkpoint_every``;
    the slow three-factor rules (e-prop, RFLO, MDGL) train ``slow_iterations`` (None: as
    many), as Liu et al.'s code trains them 16k iterations against BPTT's 10k. Equal-step
    comparisons use every rule's checkpoints up to ``iterations``; the extra ones serve the
    matched-loss comparison, and the end-of-run curvature is taken where each run ends.

    Tasks: ``seq_mnist`` (rows as steps, CE at the last step, batch ``batch_size``, α = 0 as
    Liu et al.'s τ = 0.01; the 55,000 / 5,000 split; ``limit`` keeps the first images of
    every split); ``pattern_generation`` (T ``pattern_seq_len``, periods T·(1, ½, ⅓, ⅕) as
    the e-prop code's (1000, 500, 333, 200) at T = 1000, leak τ ``tau_pattern``: UNKNOWN in
    the paper); ``delayed_match`` (``delay``, ``cue_len``, ``cue_sigma``, batch
    ``dms_batch_size``, τ ``tau_dms`` = 100 as Liu et al.'s ModProp code; trained on a fixed set of
    ``dms_train_size`` trials, tested on fresh ones and on fresh ones with noise
    ``dms_noisy_test_std``; ``dms_train_size=None`` draws fresh training trials, and then the
    clean gap is zero by construction and its claims read "not testable"); its network has
    ``dms_hidden_size`` units (None: ``hidden_size``), under Dale's law with a fraction
    ``dms_excitatory_fraction`` of excitatory units (None: no Dale's law), whose E and I
    populations are cell-type MDGL's two types.

    ``paper`` runs 10 seeds (a variance claim needs them) and measures on 10,000 examples per
    split (the whole seq-MNIST test set, a training estimate of the same precision).

    Measurements: train/test sets of ``eval_size`` examples and the curvature batch of
    ``curvature_batch`` training examples, fixed by ``eval_seed`` for every checkpoint and
    rule; λ_max (largest magnitude, sign kept) to relative tolerance ``curvature_rtol``
    within ``curvature_iterations`` HVPs by ``checkpoint_solver``: ``"power"`` (power
    iteration, as Liu et al.'s code) or ``"lanczos"`` (the largest-magnitude Ritz value:
    the same quantity in far fewer HVPs where the top magnitudes are close, and stacked models
    iterate in lockstep, so a stack costs its slowest model's count; docs/reproducing.md gives the
    figures; ``quick`` and ``paper`` use it, ``medium`` keeps power iteration, so that its
    committed results stay reproducible). Final values are the mean over the last
    ``final_checkpoints`` checkpoints (Liu et al.'s λ_max jumps as ReLU activation
    patterns change).
    """

    NOTEBOOK: ClassVar[str] = "05_generalisation_curvature"
    profile: str
    seeds: tuple[int, ...] = checked(checks.seeds)
    iterations: int = checked(checks.positive_int)
    checkpoint_every: int = checked(checks.positive_int)
    slow_iterations: int | None = checked(checks.optional_positive_int, None)
    tasks: tuple[str, ...] = checked(checks.choices(*LIU_TASKS), LIU_TASKS)
    rules: tuple[str, ...] = checked(checks.choices(*RULES), LIU_RULES)
    mdgl_variants: tuple[str, ...] = checked(
        checks.choices(*VARIANTS), ("cell_specific", "cell_type")
    )
    lambdas: tuple[float, ...] = checked(checks.lambdas, (0.0, 0.5, 1.0))
    windows: tuple[int, ...] = checked(checks.positive_ints, (1, 2, 4))
    hidden_size: int = checked(checks.positive_int, 128)
    lr: float = checked(checks.non_negative, 0.01)
    optimiser: str = checked(checks.choice(*OPTIMISERS), "sgd")
    l2: float = checked(checks.non_negative, 1e-2)
    lr_synthesiser: float = checked(checks.non_negative, 3e-4)
    gamma: float = checked(checks.gamma, 1.0)
    scale: float = checked(checks.non_negative, 0.1)
    batch_size: int = checked(checks.positive_int, 256)
    limit: int | None = checked(checks.optional_positive_int, None)
    pattern_seq_len: int = checked(checks.positive_int, 1000)
    tau_pattern: float = checked(checks.positive_real, 20.0)
    delay: int = checked(checks.positive_int, 700)
    cue_len: int = checked(checks.positive_int, 100)
    cue_sigma: float = checked(checks.positive_real, 25.0)
    dms_batch_size: int = checked(checks.positive_int, 32)
    tau_dms: float = checked(checks.positive_real, 100.0)
    dms_train_size: int | None = checked(checks.optional_positive_int, 512)
    dms_noisy_test_std: float = checked(checks.positive_real, 0.1)
    dms_hidden_size: int | None = checked(checks.optional_positive_int, None)
    dms_excitatory_fraction: float | None = checked(checks.optional_fraction, 0.8)
    eval_size: int = checked(checks.positive_int, 1024)
    eval_seed: int = checked(checks.non_negative_int, 0)
    curvature_batch: int = checked(checks.positive_int, 256)
    curvature_rtol: float = checked(checks.positive_real, 1e-4)
    curvature_iterations: int = checked(checks.positive_int, 100)
    checkpoint_solver: str = checked(checks.choice(*SOLVERS), "power")
    final_checkpoints: int = checked(checks.positive_int, 3)
    data_dir: str = checked(checks.folder, "data")

    def __post_init__(self) -> None:
        if self.slow_iterations is not None and self.slow_iterations < self.iterations:
            raise ParameterError(
                f"slow_iterations={self.slow_iterations} is below iterations={self.iterations}: "
                "the three-factor rules train at least as long as the others (None: as long)"
            )
        needs = {"windows": {"tbptt", "sg"}, "lambdas": {"bp_lambda"}, "mdgl_variants": {"mdgl"}}
        check_grid(self, LIU_RULES, needs, "the LSTM grids run in notebooks 03 and 04")
        if "seq_mnist" in self.tasks:
            from bplambda.tasks.mnist import require_mnist

            require_mnist(self.data_dir)


DEFAULTS = {
    "smoke": {"seeds": (0, 1), "iterations": 4, "checkpoint_every": 2, "hidden_size": 12,
              "rules": ("bptt", "eprop", "rflo", "mdgl", "sg", "bp_lambda", "oracle"),
              "windows": (1,),
              "lambdas": (0.0, 1.0), "batch_size": 16, "limit": 200, "pattern_seq_len": 30,
              "delay": 10, "cue_len": 5, "cue_sigma": 2.0, "dms_batch_size": 8,
              "dms_train_size": 32,
              "eval_size": 32, "curvature_batch": 16, "curvature_iterations": 20,
              "final_checkpoints": 1, "progress": False},
    "quick": {"seeds": (0, 1, 2), "iterations": 400, "checkpoint_every": 100, "hidden_size": 64,
              "rules": ("bptt", "eprop", "mdgl", "bp_lambda"), "mdgl_variants": ("cell_specific",),
              "lambdas": (0.0, 1.0), "pattern_seq_len": 200, "delay": 60, "cue_len": 20,
              "cue_sigma": 5.0, "tau_dms": 20.0, "eval_size": 512, "curvature_batch": 128,
              "checkpoint_solver": "lanczos"},
    "medium": {"seeds": FIVE_SEEDS, "iterations": 1000, "checkpoint_every": 200,
               "final_checkpoints": 2,
               "hidden_size": 64, "pattern_seq_len": 200, "delay": 60, "cue_len": 20,
               "cue_sigma": 5.0, "tau_dms": 20.0, "eval_size": 512, "curvature_batch": 128},
    "paper": {"seeds": tuple(range(10)), "iterations": 10_000, "slow_iterations": 16_000,
              "dms_hidden_size": 120,
              "checkpoint_every": 250, "checkpoint_solver": "lanczos", "eval_size": 10_000},
}  # fmt: skip


def config(profile: str = "quick", **overrides: object) -> Config:
    """The notebook-05 config: profile defaults, then the overrides that are not None."""
    return configure(Config, DEFAULTS, profile, **overrides)


# ----------------------------------------------------------------------------- conditions
def liu_conditions(cfg: Config) -> list[Condition]:
    """The ``rules`` of :data:`LIU_RULES` in that order, every one with all seeds stacked
    (:func:`~bplambda.experiments.grids.rule_conditions`; the rate cell has no LSTM mode)."""
    return [condition for condition, _ in rule_conditions(cfg, LIU_RULES)]


def iterations_of(condition: Condition, cfg: Config) -> int:
    """``slow_iterations`` for the three-factor rules (:data:`LIU_FAMILIES`), else
    ``iterations``."""
    if condition.labels[0]["family"] in LIU_FAMILIES and cfg.slow_iterations is not None:
        return cfg.slow_iterations
    return cfg.iterations


def training_batches(cfg: Config) -> list[int]:
    """Per task and condition of :func:`run`, the iterations it trains (:func:`iterations_of`):
    the campaign's measure of progress (:mod:`bplambda.campaign`)."""
    return [iterations_of(c, cfg) for _ in cfg.tasks for c in liu_conditions(cfg)]


def checkpoint_schedule(
    cfg: Config, evaluate: Callable[[ParamGroups], dict[str, Tensor]]
) -> Evaluation:
    """When a run calls ``evaluate`` (:func:`checkpoint_metrics`): on the initial network,
    every ``checkpoint_every`` batches and after the last."""
    return Evaluation(evaluate, every=cfg.checkpoint_every, at_start=True)


# ----------------------------------------------------------------------------- runs
def training(cfg: Config) -> TrainConfig:
    """How :func:`run` trains every condition (``iterations`` batches; the three-factor rules'
    own count is set per condition, :func:`iterations_of`): SGD with the L2 term, a logged
    batch every ``checkpoint_every`` with both alignments."""
    return TrainConfig(
        num_batches=cfg.iterations,
        lr={"rnn": cfg.lr, "readout": cfg.lr, "synthesiser": cfg.lr_synthesiser},
        optimiser=cfg.optimiser, l2=cfg.l2, log_every=cfg.checkpoint_every,
        track_alignment=True, track_update_alignment=True,
        divergence_threshold=cfg.divergence_threshold, progress=cfg.progress,
    )  # fmt: skip


@shardable("run_generalisation", conditions=liu_conditions)
def run(cfg: Config, store: StateStore | None = None) -> pd.DataFrame:
    """Every condition on every task; rows labelled with ``task``.

    Per logged batch (every ``checkpoint_every``): ``loss``, ``update_alignment`` (cos of the
    RNN update with BPTT's gradient), and the mean over t < T of ``alignment_signal`` (the
    rule's future signal vs the true future gradient) and, for BP(λ) and SG,
    ``alignment_synthetic`` and ``alignment_applied``. Per checkpoint (``batch`` = batches
    trained): :func:`checkpoint_metrics`. Per model at the end: :func:`final_curvature` and
    ``seconds`` (the whole stacked condition's wall time, checkpoints included).
    """
    train_config = training(cfg)
    units = [(task_name, condition) for task_name in cfg.tasks for condition in liu_conditions(cfg)]
    work = functools.partial(_generalisation_condition, cfg, train_config, store)
    parts = run_all(
        work, units, cfg, lambda unit: f"{condition_title(unit[1])} {unit[0]}",
        lambda unit: len(unit[1].seeds) * iterations_of(unit[1], cfg),
    )  # fmt: skip
    return pd.concat(parts, ignore_index=True)[["task", *TABLE_COLUMNS]]


def _generalisation_condition(
    cfg: Config,
    train_config: TrainConfig,
    store: StateStore | None,
    unit: tuple[str, Condition],
) -> pd.DataFrame:
    """One condition on one task of :func:`run`, with its end-of-run rows."""
    task_name, condition = unit
    task, cell = liu_task(task_name, cfg)
    evaluate = checkpoint_metrics(cell, task, cfg, len(condition.seeds))
    iterations = iterations_of(condition, cfg)
    checkpoints = checkpoint_schedule(cfg, evaluate)
    table, params, seconds = run_condition(
        condition, task, cell, replace(train_config, num_batches=iterations), cfg.device,
        cfg.dtype, store, (task_name,), evaluation=checkpoints,
    )  # fmt: skip
    start = time.perf_counter()
    final = final_curvature(cell, condition.rule, params, task, cfg)
    seconds += time.perf_counter() - start
    rows = [mean_over_steps(table)]
    models = pd.MultiIndex.from_tuples(
        [(label["condition"], seed) for label, seed in zip(condition.labels, condition.seeds)]
    )
    for metric, values in final.items():
        by_model = pd.Series(values.cpu().numpy(), index=models)
        rows.append(per_seed_rows(table, metric, by_model, iterations))
    rows.append(per_seed_rows(table, "seconds", seconds, iterations))
    return pd.concat(rows, ignore_index=True).assign(task=task_name)


# ----------------------------------------------------------------------------- tables
CHECKPOINTED = ("lambda_max", "lambda_max_converged", "lambda_max_hvps", "train_loss",
                "train_error", "test_loss", "test_error", "test_noisy_loss", "test_noisy_error",
                "gap_test_loss", "gap_test_error", "gap_test_noisy_loss",
                "gap_test_noisy_error", "train_loss_se", "test_loss_se", "test_noisy_loss_se",
                "gap_test_loss_se", "gap_test_noisy_loss_se")  # fmt: skip
PER_BATCH = ("loss", "update_alignment", "alignment_signal", "alignment_synthetic",
             "alignment_applied")  # fmt: skip
AT_THE_END = ("lambda_max_final", "lambda_max_final_converged", "lambda_max_power", "c1",
              "c1_step", "predicted_lambda_max", "seconds")  # fmt: skip
MODEL = ["task", "condition", "family", "lmbda", "n", "variant", "seed", "diverged"]
LIU_FAMILIES = ("eprop", "rflo", "mdgl")


def _final_means(rows: pd.DataFrame, last: int) -> pd.DataFrame:
    """Per model and metric: the mean over its ``last`` logged batches (``value``) and the
    value at its last one (``last_batch``)."""
    rows = rows.sort_values("batch")
    grouped = rows.groupby([*MODEL, "metric"], dropna=False)["value"]
    return pd.concat([grouped.apply(lambda v: v.tail(last).mean()).rename("value"),
                      grouped.last().rename("last_batch")], axis=1).reset_index()  # fmt: skip


def tables(table: pd.DataFrame, cfg: Config) -> dict[str, pd.DataFrame]:
    """``checkpoints`` (λ_max, losses, errors and gaps per checkpoint), ``logged`` (per
    logged batch: loss, update alignment, the rule's signal alignment), ``final_by_seed`` (per
    model: the mean over the last ``final_checkpoints`` checkpoints up to ``iterations`` and
    the last of them, the equal-steps comparison; the end-of-run curvature), ``matched`` (the
    checkpointed metrics at a common training loss, :func:`matched_loss`; which runs learn and
    reach it: ``matched_runs``), ``summary`` (mean
    and 95% interval over seeds, diverged models apart), ``correlations``
    (:func:`correlations`), ``identities`` (:func:`identities`), ``unpooled`` (MDGL-type on the
    tasks whose network has no cell types, kept out of the pools: :func:`unpooled`),
    ``timing``."""
    checkpoints = table[table.metric.isin(CHECKPOINTED)]
    logged = table[table.metric.isin(PER_BATCH)]
    at_end = table[table.metric.isin(AT_THE_END)]
    alignment = logged[logged.metric == "update_alignment"]
    final = pd.concat([  # equal steps: the slow rules' extra batches left out
        _final_means(checkpoints[checkpoints.batch <= cfg.iterations], cfg.final_checkpoints),
        _final_means(alignment[alignment.batch <= cfg.iterations], cfg.final_checkpoints),
        _final_means(at_end, 1),
    ], ignore_index=True)  # fmt: skip
    final.loc[final.diverged.astype(bool), ["value", "last_batch"]] = np.nan
    summary = summarise(final, ["task", "condition", "metric"])
    order = {c: i for i, c in enumerate(condition_order(final))}
    summary = summary.sort_values(["task", "metric", "condition"], key=lambda c: c.map(
        order) if c.name == "condition" else c)  # fmt: skip
    typed = [task for task in cfg.tasks if has_cell_types(task, cfg)]
    timing = at_end[at_end.metric == "seconds"].drop_duplicates(["task", "condition"])
    return {
        "checkpoints": checkpoints,
        "logged": logged,
        "final_by_seed": final,
        "matched": matched_loss(checkpoints),
        "matched_runs": matched_runs(checkpoints),
        "summary": summary.reset_index(drop=True),
        "correlations": correlations(final, typed),
        "identities": identities(final),
        "unpooled": unpooled(final, typed),
        "timing": timing[["task", "condition", "value"]].rename(columns={"value": "seconds"}),
    }


__all__ = ["DEFAULTS", "Config", "claims", "config", "run", "tables"]
