"""Linear readout ``ŷ_t = W_out h_t + b_out`` and the task losses it feeds.

A task's target is a :class:`SequenceTargets`: per-step values, a per-step loss weight and the
loss kind. The sequence loss of one model is ``L = Σ_t weight_t · ℓ(ŷ_t, y_t)`` where ``ℓ`` is
averaged over the batch (and over output units for ``mse`` / ``bce``), so ``L_t`` is always
defined per step, as the online rules need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bplambda.cells import Cell, Params
from bplambda.device import upload
from bplambda.errors import check_choice

LOSS_KINDS = ("mse", "cross_entropy", "bce")
READOUT_INITS = ("linear", "glorot")
"""How a readout starts: ``"linear"`` as ``nn.Linear`` (weight and bias ~ U(±1/√H), the BP(λ)
paper's networks), ``"glorot"`` Glorot-uniform weight ~ U(±√(6/(H+O))) and a zero bias (Liu et
al.'s TF code: ``get_variable``'s default)."""


def init_readout(
    hidden_size: int,
    output_size: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    scheme: str = "linear",
) -> Params:
    """A readout ``weight (O, H)``, ``bias (O,)`` started by ``scheme`` (:data:`READOUT_INITS`);
    only the random parts draw from ``generator``."""
    check_choice("readout_init", scheme, READOUT_INITS)

    def uniform(shape: tuple[int, ...], bound: float) -> Tensor:
        return (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * bound

    if scheme == "glorot":
        bound = math.sqrt(6 / (hidden_size + output_size))
        return {"weight": uniform((output_size, hidden_size), bound),
                "bias": torch.zeros(output_size, dtype=dtype)}  # fmt: skip
    bound = 1 / math.sqrt(hidden_size)
    return {"weight": uniform((output_size, hidden_size), bound),
            "bias": uniform((output_size,), bound)}  # fmt: skip


def readout(params: Params, h: Tensor) -> Tensor:
    """``h: (..., B, H)`` → outputs ``(..., B, O)``."""
    return h @ params["weight"].mT + params["bias"].unsqueeze(-2)


def last_step(seq_len: int, device: torch.device | str = "cpu") -> Tensor:
    """``(T,)`` bool, true at ``t = T`` only: made on ``device`` (setting one element of a
    GPU tensor from Python would sync it with the host)."""
    return torch.arange(seq_len, device=device) == seq_len - 1


@dataclass(frozen=True)
class SequenceTargets:
    """Targets of a batch of sequences.

    values: ``(T, *M, B, O)`` floats for ``mse``/``bce``; ``(T, *M, B)`` class indices for
        ``cross_entropy``.
    weights: ``(T,)`` per-step weight of the loss (zero where a step has no target), or
        ``(T, *M)`` when stacked models have different target layouts (padded sequences).
    kind: one of ``LOSS_KINDS``.
    """

    values: Tensor
    weights: Tensor
    kind: str

    def __post_init__(self) -> None:
        check_choice("loss kind", self.kind, LOSS_KINDS)

    def to(self, device: torch.device, dtype: torch.dtype) -> SequenceTargets:
        """On ``device``, float values and weights in ``dtype`` (see :func:`upload`)."""
        return SequenceTargets(upload(self.values, device, dtype),
                               upload(self.weights, device, dtype), self.kind)  # fmt: skip


def _elementwise(outputs: Tensor, targets: SequenceTargets) -> Tensor:
    """The unreduced loss: ``(T, *M, B, O)`` for ``mse``/``bce``, ``(T, *M, B)`` for
    ``cross_entropy``."""
    y = targets.values
    if targets.kind == "mse":
        return (outputs - y) ** 2
    if targets.kind == "bce":
        return F.binary_cross_entropy_with_logits(outputs, y, reduction="none")
    flat = F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]), y.reshape(-1), reduction="none")
    return flat.reshape(y.shape)


def _weighted(losses: Tensor, targets: SequenceTargets) -> Tensor:
    """``losses (T, *M[, B])`` times the per-step weights."""
    weights = targets.weights
    return losses * weights.reshape(*weights.shape, *([1] * (losses.dim() - weights.dim())))


def step_losses(outputs: Tensor, targets: SequenceTargets) -> Tensor:
    """Weighted per-step losses ``weight_t · ℓ(ŷ_t, y_t)``: ``(T, *M)``.

    outputs: ``(T, *M, B, O)``.
    """
    elementwise = _elementwise(outputs, targets)
    per_step = elementwise.mean(dim=-1) if targets.kind == "cross_entropy" else (
        elementwise.mean(dim=(-2, -1)))  # fmt: skip
    return _weighted(per_step, targets)


def example_losses(outputs: Tensor, targets: SequenceTargets) -> Tensor:
    """Weighted per-step losses of every example: ``(T, *M, B)`` (their mean over ``B`` is
    :func:`step_losses`), for the spread of a held-out loss."""
    elementwise = _elementwise(outputs, targets)
    return _weighted(elementwise if targets.kind == "cross_entropy" else
                     elementwise.mean(dim=-1), targets)  # fmt: skip


def scored_losses(readout_params: Params, hidden: Tensor, targets: SequenceTargets) -> Tensor:
    """``step_losses(readout(readout_params, hidden), targets)``, ``(T, *M)`` from ``hidden
    (T, *M, B, H)``, with the readout run only on the steps that some model scores (a
    last-step task scores one of T): the others' losses are exactly 0 either way. The steps
    are found on the host, so only on a CPU run; on an accelerator every step is read out
    (finding them would wait for the device)."""
    weights = targets.weights
    scored = weights.reshape(len(weights), -1).ne(0).any(-1)
    if weights.device.type != "cpu" or scored.all():
        return step_losses(readout(readout_params, hidden), targets)
    steps = scored.nonzero().flatten()
    picked = SequenceTargets(targets.values[steps], weights[steps], targets.kind)
    losses = step_losses(readout(readout_params, hidden[steps]), picked)
    return hidden.new_zeros(hidden.shape[:-2]).index_copy(0, steps, losses)


def immediate_gradients(
    cell: Cell, states: Tensor, readout_params: Params, targets: SequenceTargets
) -> tuple[Tensor, Tensor, Params]:
    """Loss per model, the immediate gradients ``∂L_t/∂s_t``, and the readout gradient.

    states: ``(T, *M, B, S)``. Returns ``(loss (*M,), dL_ds (T, *M, B, S), readout grads)``.
    Only the readout is differentiated here: no graph across time is built.
    """
    with torch.enable_grad():
        s = states.detach().requires_grad_()
        params = {k: v.detach().requires_grad_() for k, v in readout_params.items()}
        loss = step_losses(readout(params, cell.hidden(s)), targets).sum(0)
        grads = torch.autograd.grad(loss.sum(), [s, params["weight"], params["bias"]])
    return loss.detach(), grads[0], {"weight": grads[1], "bias": grads[2]}


def output_errors(
    cell: Cell, states: Tensor, readout_params: Params, targets: SequenceTargets
) -> tuple[Tensor, Tensor, Params]:
    """Loss per model, the output errors ``∂L_t/∂ŷ_t`` and the readout gradient.

    states: ``(T, *M, B, S)``. Returns ``(loss (*M,), dL_dy (T, *M, B, O), readout grads)``:
    what a rule with its own feedback pathway sends back instead of ``W_out``.
    """
    with torch.enable_grad():
        params = {k: v.detach().requires_grad_() for k, v in readout_params.items()}
        outputs = readout(params, cell.hidden(states.detach()))
        loss = step_losses(outputs, targets).sum(0)
        grads = torch.autograd.grad(loss.sum(), [outputs, params["weight"], params["bias"]])
    return loss.detach(), grads[0], {"weight": grads[1], "bias": grads[2]}
