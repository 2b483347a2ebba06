"""What notebook 05 measures on a network as it trains (Liu et al. 2022, docs/paper-liu2022.md §4):
at each evaluation point, the generalisation metrics and λ_max of the full training loss; at the
end, in float64, λ_max again, the rule's own curvature c₁ along the sharp direction and Liu et al.'s
stability prediction 2/(η·c₁). The solvers themselves live in :mod:`bplambda.curvature`."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from bplambda.cells import Cell
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
from bplambda.evaluate import generalisation, shared_by_models
from bplambda.outputs import ParamGroups
from bplambda.readout import SequenceTargets
from bplambda.rules import Rule

C1_EPS = 1e-6
"""The largest central-difference step of c₁, in float64; :func:`kink_free_step` shrinks it
per model until it flips no ReLU unit."""
SOLVERS = {"power": power_iteration, "lanczos": functools.partial(lanczos, which="LM")}
"""The λ_max solvers of the evaluation points, by name (``checkpoint_solver``)."""


class SharpnessSettings(Protocol):
    """What the measurements read from notebook 05's config."""

    device: str
    dtype: str
    lr: float
    l2: float
    eval_size: int
    eval_seed: int
    curvature_batch: int
    curvature_iterations: int
    curvature_rtol: float
    checkpoint_solver: str


def shared_batch(
    batch: tuple[Tensor, SequenceTargets], device: torch.device, dtype: torch.dtype, K: int
):
    """An evaluation batch ``(T, n, ·)`` repeated for ``K`` stacked models, on the device."""
    inputs, targets = batch
    models = torch.Size([K])
    values = shared_by_models(targets.values, models)
    return shared_by_models(inputs, models).to(device, dtype), SequenceTargets(
        values, targets.weights, targets.kind).to(device, dtype)  # fmt: skip


def checkpoint_metrics(
    cell: Cell, task: object, cfg: SharpnessSettings, K: int
) -> Callable[[ParamGroups], dict[str, Tensor]]:
    """``params -> {metric: (K,)}``: the generalisation metrics and gaps, and λ_max of the
    full training loss on the fixed curvature batch (``lambda_max_converged``: 1 where the
    ``checkpoint_solver`` met its tolerance, instead of a warning at every checkpoint:
    :func:`bplambda.convergence.convergence_summary` says it once per run;
    ``lambda_max_hvps``: the HVPs it took. The stacked models iterate in lockstep, so a stack
    costs its slowest model's count)."""
    device, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    batch = shared_batch(task.evaluation_set("train", cfg.curvature_batch, cfg.eval_seed),
                         device, dtype, K)  # fmt: skip

    def evaluate(params: ParamGroups) -> dict[str, Tensor]:
        metrics = generalisation(cell, params, task, cfg.eval_size, cfg.eval_seed)
        op = network_hessian(cell, params, *batch, l2=cfg.l2)
        with warnings.catch_warnings():  # kept as a column; said once per run by the notebook
            warnings.simplefilter("ignore", ConvergenceWarning)  # (convergence_summary)
            top = SOLVERS[cfg.checkpoint_solver](
                op, max_iter=cfg.curvature_iterations, rtol=cfg.curvature_rtol, seed=cfg.eval_seed
            )
        metrics["lambda_max"] = top.eigenvalue
        metrics["lambda_max_converged"] = top.converged.to(top.eigenvalue.dtype)
        metrics["lambda_max_hvps"] = top.iterations.to(top.eigenvalue.dtype)
        return metrics

    return evaluate


def final_curvature(
    cell: Cell, rule: Rule, params: ParamGroups, task: object, cfg: SharpnessSettings
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
    - ``predicted_lambda_max``: Liu et al.'s stability bound 2/(η·c₁) (docs/paper-liu2022.md §4.4),
      ``inf`` where ``c₁ ≤ 0`` (no bound).
    """
    K = params["rnn"]["weight_hh"].shape[0]
    device = params["rnn"]["weight_hh"].device
    p64 = {g: {k: v.detach().double() for k, v in group.items()} for g, group in params.items()}
    size = getattr(task, "batch_size", cfg.curvature_batch)  # see the docstring
    inputs, targets = shared_batch(task.evaluation_set("train", size, cfg.eval_seed), device,
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
