"""Alignment metrics: how well a rule's learning signal or update matches BPTT's."""

from __future__ import annotations

import torch
from torch import Tensor

from bplambda.bp_lambda import per_model
from bplambda.cells import Params
from bplambda.outputs import RuleOutput


def cosine(estimate: Tensor, reference: Tensor) -> Tensor:
    """Cosine similarity along the last dimension.

    NaN where the reference is zero (it has no direction: at the terminal step the true future
    gradient is zero, and that step must count neither as aligned nor as misaligned); 0 where
    only the estimate is zero (an untrained synthesiser, or a truncated method that passes no
    gradient back, carries no information about the direction).
    """
    a_norm, b_norm = estimate.norm(dim=-1), reference.norm(dim=-1)
    dot = (estimate * reference).sum(-1)
    tiny = torch.finfo(estimate.dtype).tiny
    cos = torch.where(a_norm > 0, dot / (a_norm * b_norm).clamp_min(tiny), 0.0)
    return torch.where(b_norm > 0, cos, torch.nan)


def alignment(estimate: Tensor, true_future: Tensor) -> Tensor:
    """Per-sample cosine between an estimate of ``∂L_{>t}/∂s_t`` and the true one.

    estimate, true_future: ``(T, *M, B, S)`` → ``(T, *M, B)``.
    """
    return cosine(estimate, true_future)


def batch_alignment(estimate: Tensor, true_future: Tensor) -> Tensor:
    """Per-step alignment averaged over the batch: ``(T, *M)`` (NaN where undefined)."""
    return alignment(estimate, true_future).nanmean(dim=-1)


def flatten_per_model(grads: Params, param_ndim: dict[str, int]) -> Tensor:
    """Concatenate a parameter group into one vector per model: ``(*M, P)``."""
    parts = []
    for name, value in grads.items():
        model_shape = value.shape[: value.dim() - param_ndim[name]]
        parts.append(value.reshape(*model_shape, -1))
    return torch.cat(parts, dim=-1)


def update_alignment(grads: Params, reference: Params, param_ndim: dict[str, int]) -> Tensor:
    """Cosine between a rule's parameter update and a reference (e.g. BPTT's): ``(*M,)``."""
    return cosine(flatten_per_model(grads, param_ndim), flatten_per_model(reference, param_ndim))


def signal_alignments(output: RuleOutput, true_future: Tensor) -> dict[str, Tensor]:
    """Batch-averaged alignment per step ``(T, *M)`` against the true future gradient:

    - ``alignment_signal``: the future part of the learning signal the RNN actually receives;
    - ``alignment_synthetic``: the synthesiser's output ``g(s_t)`` at every state;
    - ``alignment_applied``: ``g(s_t)`` only where the rule applies it (every step for BP(λ),
      the chunk ends for n-step SG; NaN elsewhere): the fair comparison between the two, since
      n-step SG never uses, nor trains, g at the other states.
    """
    result = {"alignment_signal": batch_alignment(output.future_signal, true_future)}
    if output.synthetic is not None:
        synthetic = batch_alignment(output.synthetic, true_future)
        applied = per_model(output.applied, synthetic.dim() - output.applied.dim())
        result["alignment_synthetic"] = synthetic
        result["alignment_applied"] = torch.where(applied, synthetic, torch.nan)
    return result
