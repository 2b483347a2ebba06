"""Notebook 05: generalisation and loss curvature of BP(λ) vs BPTT, e-prop, RFLO and MDGL
(Liu et al. 2022 carried over to BP(λ); LIU2022.md §4 and §6): config, conditions, runs.

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
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from bplambda import checks
from bplambda.analysis import (
    by_run,
    interval_text,
    mean_over_steps,
    per_seed,
    summarise,
)
from bplambda.cells import Cell, make_cell
from bplambda.checks import checked
from bplambda.curvature import (
    ConvergenceWarning,
    kink_free_step,
    lanczos,
    network_hessian,
    power_iteration,
    rule_curvature,
    rule_gradient_fn,
)
from bplambda.device import resolve_device, resolve_dtype
from bplambda.errors import ParameterError, refuse
from bplambda.evaluate import generalisation, shared_by_models
from bplambda.experiments.conditions import (
    FIVE_SEEDS,
    Condition,
    condition_title,
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
from bplambda.labels import condition_order, conditions
from bplambda.outputs import ParamGroups
from bplambda.profiles import configure
from bplambda.readout import SequenceTargets
from bplambda.rules import RULES, Rule
from bplambda.rules.eligibility import VARIANTS
from bplambda.train import OPTIMISERS, Evaluation, TrainConfig
from bplambda.verdicts import both_ways, finding, increasing

C1_EPS = 1e-6
"""The largest central-difference step of c₁, in float64; :func:`kink_free_step` shrinks it
per model until it flips no ReLU unit."""
LIU_TASKS = ("seq_mnist", "pattern_generation", "delayed_match")
"""The tasks of Liu et al.'s study (``tasks``)."""
CHECKPOINT_SOLVERS = {"power": power_iteration, "lanczos": functools.partial(lanczos, which="LM")}
"""The checkpoints' λ_max solvers by name (``GeneralisationConfig.checkpoint_solver``)."""
LIU_RULES = ("bptt", "eprop", "rflo", "mdgl", "tbptt", "sg", "bp_lambda", "oracle")
"""The conditions of LIU2022.md §6: BPTT, e-prop (symmetric feedback: the paper's
three-factor rule), RFLO (random feedback), MDGL (``mdgl_variants``), TBPTT(n) and SG(n)
for every window n, BP(λ) for every λ (one stacked model), the oracle."""


@dataclass(frozen=True)
class GeneralisationConfig(ResumableOptions):
    """Liu et al.'s study with BP(λ) added (LIU2022.md §3, §4, §6).

    Training (all tasks): rate RNN of ``hidden_size`` units, plain SGD (``optimiser``) with
    ``lr`` 0.01 on the RNN and readout, L2 ``l2``·½‖W‖² on every weight matrix, the task's
    loss; BP(λ)'s and SG's synthesisers learn by the same optimiser with ``lr_synthesiser``
    (γ ``gamma``, scale ``scale``). With SGD on the RNN the synthetic gradient's size enters
    the update directly: measured on quick-size seq-MNIST, an SGD synthesiser at 1e-3 and an
    Adam one at 1e-5 diverge BP(λ) within 40 batches; SGD at 3e-4 (the default) stays stable
    for 300 batches. ``iterations`` batches, a checkpoint every ``checkpoint_every``;
    the slow three-factor rules (e-prop, RFLO, MDGL) train ``slow_iterations`` (None: as
    many), as Liu et al.'s code trains them 16k iterations against BPTT's 10k. Equal-step
    comparisons use every rule's checkpoints up to ``iterations``; the extra ones serve the
    matched-loss comparison, and the end-of-run curvature is taken where each run ends.

    Tasks: ``seq_mnist`` (rows as steps, CE at the last step, batch ``batch_size``, α = 0 as
    Liu et al.'s τ = 0.01; the 55,000 / 5,000 split; ``limit`` keeps the first images of
    every split); ``pattern_generation`` (T ``pattern_seq_len``, periods T·(1, ½, ⅓, ⅕) as
    the e-prop code's (1000, 500, 333, 200) at T = 1000, leak τ ``tau_pattern``: UNKNOWN in
    the paper); ``delayed_match`` (``delay``, ``cue_len``, ``cue_sigma``, batch
    ``dms_batch_size``, τ ``tau_dms`` = 100 as Liu et al.'s ModProp code).

    Measurements: train/test sets of ``eval_size`` examples and the curvature batch of
    ``curvature_batch`` training examples, fixed by ``eval_seed`` for every checkpoint and
    rule; λ_max (largest magnitude, sign kept) to relative tolerance ``curvature_rtol``
    within ``curvature_iterations`` HVPs by ``checkpoint_solver``: ``"power"`` (power
    iteration, as Liu et al.'s code) or ``"lanczos"`` (the largest-magnitude Ritz value:
    the same quantity in far fewer HVPs where the top magnitudes are close, and stacked models
    iterate in lockstep, so a stack costs its slowest model's count; the README gives the
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
    eval_size: int = checked(checks.positive_int, 1024)
    eval_seed: int = checked(checks.non_negative_int, 0)
    curvature_batch: int = checked(checks.positive_int, 256)
    curvature_rtol: float = checked(checks.positive_real, 1e-4)
    curvature_iterations: int = checked(checks.positive_int, 100)
    checkpoint_solver: str = checked(checks.choice(*CHECKPOINT_SOLVERS), "power")
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


GENERALISATION_DEFAULTS = {
    "smoke": {"seeds": (0, 1), "iterations": 4, "checkpoint_every": 2, "hidden_size": 12,
              "rules": ("bptt", "eprop", "rflo", "mdgl", "sg", "bp_lambda"), "windows": (1,),
              "lambdas": (0.0, 1.0), "batch_size": 16, "limit": 200, "pattern_seq_len": 30,
              "delay": 10, "cue_len": 5, "cue_sigma": 2.0, "dms_batch_size": 8,
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
    "paper": {"seeds": FIVE_SEEDS, "iterations": 10_000, "slow_iterations": 16_000,
              "checkpoint_every": 250, "checkpoint_solver": "lanczos"},
}  # fmt: skip


def generalisation_config(profile: str = "quick", **overrides: object) -> GeneralisationConfig:
    """The notebook-05 config: profile defaults, then the overrides that are not None."""
    return configure(GeneralisationConfig, GENERALISATION_DEFAULTS, profile, **overrides)


# ----------------------------------------------------------------------------- conditions
def liu_conditions(cfg: GeneralisationConfig) -> list[Condition]:
    """The ``rules`` of :data:`LIU_RULES` in that order, every one with all seeds stacked
    (:func:`~bplambda.experiments.grids.rule_conditions`; the rate cell has no LSTM mode)."""
    return [condition for condition, _ in rule_conditions(cfg, LIU_RULES)]


def iterations_of(condition: Condition, cfg: GeneralisationConfig) -> int:
    """``slow_iterations`` for the three-factor rules (:data:`LIU_FAMILIES`), else
    ``iterations``."""
    if condition.labels[0]["family"] in LIU_FAMILIES and cfg.slow_iterations is not None:
        return cfg.slow_iterations
    return cfg.iterations


def make_task(name: str, cfg: GeneralisationConfig) -> tuple[object, Cell]:
    """The task ``name`` and its rate cell (the leak α = exp(−1/τ) the task uses)."""
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
                            batch_size=cfg.dms_batch_size)  # fmt: skip
        alpha = math.exp(-1 / cfg.tau_dms)
    else:
        raise refuse("tasks", name, f"choose from {list(LIU_TASKS)}")
    return task, make_cell("rate_rnn", task.input_size, cfg.hidden_size, alpha=alpha)


# ----------------------------------------------------------------------------- measurements
def _on(batch: tuple[Tensor, SequenceTargets], device: torch.device, dtype: torch.dtype, K: int):
    """An evaluation batch ``(T, n, ·)`` repeated for ``K`` stacked models, on the device."""
    inputs, targets = batch
    models = torch.Size([K])
    values = shared_by_models(targets.values, models)
    return shared_by_models(inputs, models).to(device, dtype), SequenceTargets(
        values, targets.weights, targets.kind).to(device, dtype)  # fmt: skip


def checkpoint_metrics(
    cell: Cell, task: object, cfg: GeneralisationConfig, K: int
) -> Callable[[ParamGroups], dict[str, Tensor]]:
    """``params -> {metric: (K,)}``: the generalisation metrics and gaps, and λ_max of the
    full training loss on the fixed curvature batch (``lambda_max_converged``: 1 where the
    ``checkpoint_solver`` met its tolerance; ``lambda_max_hvps``: the HVPs it took. The stacked
    models iterate in lockstep, so a stack costs its slowest model's count)."""
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    batch = _on(task.evaluation_set("train", cfg.curvature_batch, cfg.eval_seed), device, dtype,
                K)  # fmt: skip

    def evaluate(params: ParamGroups) -> dict[str, Tensor]:
        metrics = generalisation(cell, params, task, cfg.eval_size, cfg.eval_seed)
        op = network_hessian(cell, params, *batch, l2=cfg.l2)
        top = CHECKPOINT_SOLVERS[cfg.checkpoint_solver](
            op, max_iter=cfg.curvature_iterations, rtol=cfg.curvature_rtol, seed=cfg.eval_seed
        )
        metrics["lambda_max"] = top.eigenvalue
        metrics["lambda_max_converged"] = top.converged.to(top.eigenvalue.dtype)
        metrics["lambda_max_hvps"] = top.iterations.to(top.eigenvalue.dtype)
        return metrics

    return evaluate


def final_curvature(
    cell: Cell, rule: Rule, params: ParamGroups, task: object, cfg: GeneralisationConfig
) -> dict[str, Tensor]:
    """In float64, on a fixed training batch of the *training* batch size (a synthetic-gradient
    rule's update depends on it: its synthesiser predicts per-example gradients of the
    batch-mean loss, so on another batch size c₁ would be off), each ``(K,)``:

    - ``lambda_max_final``: the largest (algebraic) Hessian eigenvalue, by Lanczos;
      ``lambda_max_final_converged``: 1 where it met its tolerance;
    - ``lambda_max_power``: power iteration's largest-magnitude eigenvalue, sign kept (what
      Liu et al.'s code measures, without the sign), at the checkpoints' tolerance;
    - ``c1``: the rule's own curvature along Lanczos' eigenvector, by central differences
      with the step ``c1_step`` (:func:`kink_free_step`: no ReLU unit flips inside it, so
      BPTT's ``c1`` is 1, reported as the check);
    - ``predicted_lambda_max``: Liu et al.'s stability bound 2/(η·c₁) (LIU2022.md §4.4),
      ``inf`` where ``c₁ ≤ 0`` (no bound).
    """
    K = params["rnn"]["weight_hh"].shape[0]
    device = params["rnn"]["weight_hh"].device
    p64 = {g: {k: v.detach().double() for k, v in group.items()} for g, group in params.items()}
    size = getattr(task, "batch_size", cfg.curvature_batch)  # see the docstring
    inputs, targets = _on(task.evaluation_set("train", size, cfg.eval_seed), device,
                          torch.float64, K)  # fmt: skip
    op = network_hessian(cell, p64, inputs, targets, l2=cfg.l2)
    tight = dict(max_iter=max(cfg.curvature_iterations, 200), rtol=min(cfg.curvature_rtol, 1e-6))
    with warnings.catch_warnings():  # the convergence is reported as a column instead
        warnings.simplefilter("ignore", ConvergenceWarning)
        top = lanczos(op, which="LA", seed=cfg.eval_seed, **tight)
        power = power_iteration(op, cfg.curvature_iterations, cfg.curvature_rtol,
                                seed=cfg.eval_seed)  # fmt: skip
    gradient = rule_gradient_fn(rule, cell, p64, inputs, targets, l2=cfg.l2)
    step = kink_free_step(cell, p64["rnn"], inputs, top.eigenvector, largest=C1_EPS)
    c1 = rule_curvature(gradient, p64["rnn"]["weight_hh"], top.eigenvector, top.eigenvalue, step)
    return {
        "lambda_max_final": top.eigenvalue,
        "lambda_max_final_converged": top.converged.double(),
        "lambda_max_power": power.eigenvalue,
        "c1": c1,
        "c1_step": step,
        "predicted_lambda_max": torch.where(c1 > 0, 2 / (cfg.lr * c1), torch.inf),
    }


# ----------------------------------------------------------------------------- runs
@shardable(conditions=liu_conditions)
def run_generalisation(cfg: GeneralisationConfig, store: StateStore | None = None) -> pd.DataFrame:
    """Every condition on every task; rows labelled with ``task``.

    Per logged batch (every ``checkpoint_every``): ``loss``, ``update_alignment`` (cos of the
    RNN update with BPTT's gradient), and the mean over t < T of ``alignment_signal`` (the
    rule's future signal vs the true future gradient) and, for BP(λ) and SG,
    ``alignment_synthetic`` and ``alignment_applied``. Per checkpoint (``batch`` = batches
    trained): :func:`checkpoint_metrics`. Per model at the end: :func:`final_curvature` and
    ``seconds`` (the whole stacked condition's wall time, checkpoints included).
    """
    train_config = TrainConfig(
        num_batches=cfg.iterations,
        lr={"rnn": cfg.lr, "readout": cfg.lr, "synthesiser": cfg.lr_synthesiser},
        optimiser=cfg.optimiser, l2=cfg.l2, log_every=cfg.checkpoint_every,
        track_alignment=True, track_update_alignment=True,
        divergence_threshold=cfg.divergence_threshold, progress=cfg.progress,
    )  # fmt: skip
    units = [(task_name, condition) for task_name in cfg.tasks for condition in liu_conditions(cfg)]
    work = functools.partial(_generalisation_condition, cfg, train_config, store)
    tables = run_all(
        work, units, cfg, lambda unit: f"{condition_title(unit[1])} {unit[0]}",
        lambda unit: len(unit[1].seeds) * iterations_of(unit[1], cfg),
    )  # fmt: skip
    return pd.concat(tables, ignore_index=True)[["task", *TABLE_COLUMNS]]


def _generalisation_condition(
    cfg: GeneralisationConfig,
    train_config: TrainConfig,
    store: StateStore | None,
    unit: tuple[str, Condition],
) -> pd.DataFrame:
    """One condition on one task of :func:`run_generalisation`, with its end-of-run rows."""
    task_name, condition = unit
    task, cell = make_task(task_name, cfg)
    evaluate = checkpoint_metrics(cell, task, cfg, len(condition.seeds))
    iterations = iterations_of(condition, cfg)
    table, params, seconds = run_condition(
        condition, task, cell, replace(train_config, num_batches=iterations), cfg.device,
        cfg.dtype, store, (task_name,), evaluation=Evaluation(evaluate, every=cfg.checkpoint_every),
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
                "gap_test_noisy_error")  # fmt: skip
PER_BATCH = ("loss", "update_alignment", "alignment_signal", "alignment_synthetic",
             "alignment_applied")  # fmt: skip
AT_THE_END = ("lambda_max_final", "lambda_max_final_converged", "lambda_max_power", "c1",
              "c1_step", "predicted_lambda_max", "seconds")  # fmt: skip
GAPS = ("gap_test_loss", "gap_test_error", "gap_test_noisy_loss", "gap_test_noisy_error")
MODEL = ["task", "condition", "family", "lmbda", "n", "variant", "seed", "diverged"]
RUN = ["task", "condition", "family", "seed"]  # names a model, no NaN in it
CORRELATION_COLUMNS = ["task", "scope", "x", "y", "n", "spearman_r", "spearman_p", "pearson_r",
                       "pearson_p"]  # fmt: skip
LIU_FAMILIES = ("eprop", "rflo", "mdgl")


def _final_means(rows: pd.DataFrame, last: int) -> pd.DataFrame:
    """Per model and metric: the mean over its ``last`` logged batches (``value``) and the
    value at its last one (``last_batch``)."""
    rows = rows.sort_values("batch")
    grouped = rows.groupby([*MODEL, "metric"], dropna=False)["value"]
    return pd.concat([grouped.apply(lambda v: v.tail(last).mean()).rename("value"),
                      grouped.last().rename("last_batch")], axis=1).reset_index()  # fmt: skip


def matched_loss(checkpoints: pd.DataFrame) -> pd.DataFrame:
    """Per task, the common training-loss level every healthy run reaches (the largest of the
    runs' lowest checkpoint losses) and, per run, the checkpointed metrics at the first
    checkpoint where its training loss is at or below it (``batch``: that checkpoint)."""
    frames = []
    healthy = checkpoints[~checkpoints.diverged.astype(bool)]
    for _, rows in healthy.groupby("task"):
        loss = rows[rows.metric == "train_loss"]
        level = loss.groupby(["condition", "seed"]).value.min().max()
        reached = loss[loss.value <= level].groupby(["condition", "seed"]).batch.min()
        keys = rows.set_index(["condition", "seed"]).index
        at = rows[rows.batch.to_numpy() == reached.reindex(keys).to_numpy()]
        frames.append(at.assign(level=level))
    return pd.concat(frames, ignore_index=True) if frames else checkpoints.iloc[:0]


def correlations(final: pd.DataFrame, x: str = "lambda_max") -> pd.DataFrame:
    """Spearman and Pearson correlation (r, p, n) between each model's final ``x`` and every
    gap, per task: pooled over all (condition, seed) runs and within each rule family with at
    least 4 runs. Diverged or non-finite runs are left out."""
    from scipy import stats

    wide = by_run(final, RUN)
    rows = []
    for task, at_task in wide.groupby("task"):
        scopes = [("pooled", at_task)] + list(at_task.groupby("family"))
        for scope, runs in scopes:
            for gap in (g for g in GAPS if g in runs):
                pair = runs[[x, gap]].replace([np.inf, -np.inf], np.nan).dropna()
                if len(pair) < 4 or pair[x].nunique() < 2 or pair[gap].nunique() < 2:
                    continue
                spearman = stats.spearmanr(pair[x], pair[gap])
                pearson = stats.pearsonr(pair[x], pair[gap])
                rows.append({
                    "task": task, "scope": scope, "x": x, "y": gap, "n": len(pair),
                    "spearman_r": spearman.statistic, "spearman_p": spearman.pvalue,
                    "pearson_r": pearson.statistic, "pearson_p": pearson.pvalue,
                })  # fmt: skip
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def generalisation_tables(
    table: pd.DataFrame, cfg: GeneralisationConfig
) -> dict[str, pd.DataFrame]:
    """``checkpoints`` (λ_max, losses, errors and gaps per checkpoint), ``logged`` (per
    logged batch: loss, update alignment, the rule's signal alignment), ``final_by_seed`` (per
    model: the mean over the last ``final_checkpoints`` checkpoints up to ``iterations`` and
    the last of them, the equal-steps comparison; the end-of-run curvature), ``matched`` (the
    checkpointed metrics at a common training loss, :func:`matched_loss`), ``summary`` (mean
    and 95% interval over seeds, diverged models apart), ``correlations``
    (:func:`correlations`), ``timing``."""
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
    timing = at_end[at_end.metric == "seconds"].drop_duplicates(["task", "condition"])
    return {
        "checkpoints": checkpoints,
        "logged": logged,
        "final_by_seed": final,
        "matched": matched_loss(checkpoints),
        "summary": summary.reset_index(drop=True),
        "correlations": correlations(final),
        "timing": timing[["task", "condition", "value"]].rename(columns={"value": "seconds"}),
    }


# ----------------------------------------------------------------------------- claims
def variance_ratio(a: pd.Series, b: pd.Series) -> tuple[float, float, float]:
    """``var(a)/var(b)`` over seeds and its 95% F-interval (normal seeds assumed)."""
    from scipy import stats

    a, b = a.dropna(), b.dropna()
    if len(a) < 2 or len(b) < 2 or b.var() == 0:
        return np.nan, np.nan, np.nan
    ratio = a.var() / b.var()
    low_q, high_q = stats.f.ppf([0.975, 0.025], len(a) - 1, len(b) - 1)
    return ratio, ratio / low_q, ratio / high_q


GAP_NAMES = {"gap_test_loss": "test − train loss",
             "gap_test_noisy_loss": "noisy test − train loss"}  # fmt: skip


def _bound_verdict(r: float, p: float, ratio: float, n: int) -> str:
    """λ_max vs 2/(η·c₁): a bound tested only where it binds (median measured/predicted in
    [0.5, 2] and a significant positive rank correlation); well below it the runs sit in
    regions flatter than the bound (not at the edge of stability), so nothing is tested."""
    if ratio < 0.5:
        return f"inconclusive (λ_max stays below the bound: median ratio {ratio:.2g})"
    if ratio > 2:
        return f"NOT reproduced (λ_max exceeds the bound: median ratio {ratio:.2g})"
    if p < 0.05:
        return "reproduced" if r > 0 else "NOT reproduced (ordering reversed)"
    return f"inconclusive ({n} runs, p = {p:.2g})"


def _correlation_verdict(row: pd.Series | None) -> str:
    if row is None:
        return "inconclusive (too few runs)"
    if row.spearman_p < 0.05:
        return "reproduced" if row.spearman_r > 0 else "NOT reproduced"
    return f"inconclusive ({row.n} runs, Spearman p = {row.spearman_p:.2g})"


def generalisation_claims(tables: dict[str, pd.DataFrame], cfg: GeneralisationConfig) -> list[dict]:
    """Liu et al.'s claims and the new BP(λ) rows, per task, with verdicts from per-seed values:
    at equal training steps (the final checkpoints) and at matched training loss, kept where
    both agree."""
    final, matched = tables["final_by_seed"], tables["matched"]
    slow = (
        ""
        if cfg.slow_iterations in (None, cfg.iterations)
        else f" ({cfg.slow_iterations:,} for the three-factor rules, compared at matched loss)"
    )
    budget = f"{cfg.iterations:,} iterations{slow}, lr {cfg.lr:g}, {len(cfg.seeds)} seeds"
    claims = []
    for task in cfg.tasks:

        def values(
            condition: str, metric: str, frame: pd.DataFrame = final, task: str = task
        ) -> pd.Series:
            return per_seed(frame, task=task, condition=condition, metric=metric)

        def both(check: Callable[[pd.DataFrame], str]) -> str:
            return both_ways(check(final), check(matched), ("equal steps", "matched loss"))

        def text(condition: str, metric: str) -> str:
            return f"{condition} {interval_text(values(condition, metric))}"

        present = set(final[final.task == task].condition)
        liu = [c for c in ("e-prop", "RFLO", "MDGL", "MDGL-type") if c in present]
        gaps = [g for g in ("gap_test_loss", "gap_test_noisy_loss")
                if g in set(final[final.task == task].metric)]  # fmt: skip
        checks = [(g, f"generalises worse ({GAP_NAMES[g]})") for g in gaps]
        checks.append(("lambda_max", "reaches higher curvature (λ_max)"))
        for rule in liu if "BPTT" in present else []:
            for metric, what in checks:
                claims.append({
                    "claim": f"{task}: {rule} {what} than BPTT",
                    "paper": "yes (qualitative)",
                    "official_code": "not run here",
                    "bplambda": f"{text(rule, metric)} vs {text('BPTT', metric)} ({budget})",
                    "verdict": both(lambda f, r=rule, m=metric: increasing(
                        [values("BPTT", m, f), values(r, m, f)])),
                })  # fmt: skip
            ratio, low, high = variance_ratio(values(rule, "gap_test_loss"),
                                              values("BPTT", "gap_test_loss"))  # fmt: skip
            verdict = ("reproduced" if low > 1 else "NOT reproduced" if high < 1 else
                       f"inconclusive ({len(cfg.seeds)} seeds)")  # fmt: skip
            claims.append({
                "claim": f"{task}: {rule}'s gap is more variable over seeds than BPTT's",
                "paper": "yes (qualitative)",
                "official_code": "not run here",
                "bplambda": f"variance ratio {ratio:.3g}, 95% F-interval [{low:.3g}, {high:.3g}]",
                "verdict": verdict,
            })  # fmt: skip
        for gap in gaps:
            pooled = tables["correlations"]
            pooled = pooled[(pooled.task == task) & (pooled.scope == "pooled") &
                            (pooled.y == gap)]  # fmt: skip
            row = pooled.iloc[0] if len(pooled) else None
            claims.append({
                "claim": f"{task}: the gap ({GAP_NAMES[gap]}) correlates with λ_max (pooled "
                         "runs)",
                "paper": "yes (\"correlated significantly\")",
                "official_code": "not run here",
                "bplambda": "no pooled correlation (too few runs)" if row is None else
                            f"Spearman r = {row.spearman_r:.2f} (p = {row.spearman_p:.2g}), "
                            f"Pearson r = {row.pearson_r:.2f} (p = {row.pearson_p:.2g}), "
                            f"n = {row.n}",
                "verdict": _correlation_verdict(row),
            })  # fmt: skip
        ordered = conditions(final[final.task == task])
        online = ordered.condition[ordered.family.isin(["bp_lambda", "sg"])].tolist()
        for condition in online:
            for metric in ("lambda_max", "gap_test_loss"):
                rivals = [r for r in ("BPTT", "e-prop") if r in present]
                claims.append({
                    "claim": f"{task}: where {condition} lands on {metric} (vs "
                             f"{' and '.join(rivals)})",
                    "paper": "not studied",
                    "official_code": "not run",
                    "bplambda": "; ".join(text(c, metric) for c in [condition, *rivals]),
                    "verdict": "; ".join(f"vs {r}: " + both(lambda f, r=r, m=metric, c=condition:
                                         finding(values(c, m, f), values(r, m, f), c, r))
                                         for r in rivals),
                })  # fmt: skip
        ends = final[(final.task == task) & final.metric.isin(["lambda_max_final",
                     "predicted_lambda_max"])]  # fmt: skip
        wide = by_run(ends, ["condition", "seed"])[["lambda_max_final", "predicted_lambda_max"]]
        wide = wide.replace([np.inf, -np.inf], np.nan).dropna()
        if len(wide) >= 4:
            from scipy import stats

            rho = stats.spearmanr(wide.lambda_max_final, wide.predicted_lambda_max)
            ratio = (wide.lambda_max_final / wide.predicted_lambda_max).median()
            claims.append({
                "claim": f"{task}: λ_max ≈ 2/(η·c₁) (Liu et al.'s stability bound, where it binds)",
                "paper": "yes (theorem; form reconstructed, LIU2022.md §4.4)",
                "official_code": "not run",
                "bplambda": f"Spearman r = {rho.statistic:.2f} (p = {rho.pvalue:.2g}, n = "
                            f"{len(wide)}) between measured and predicted; median measured / "
                            f"predicted {ratio:.2g}; BPTT's c₁ (should be 1) "
                            f"{interval_text(values('BPTT', 'c1')) if 'BPTT' in present else '-'}",
                "verdict": _bound_verdict(rho.statistic, rho.pvalue, ratio, len(wide)),
            })  # fmt: skip
    return [{"experiment": "generalisation & curvature", **c} for c in claims]
