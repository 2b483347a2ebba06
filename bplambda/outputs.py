"""What a credit-assignment rule returns for one batch."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from bplambda.cells import Params

Grads = dict[str, Params]
"""Gradients by parameter group: ``{"rnn": ..., "readout": ..., "synthesiser": ...}``."""


@dataclass(frozen=True)
class RuleOutput:
    """Gradients (to *descend*) and diagnostics of one batch.

    grads: per group, with the parameters' shapes; ``"synthesiser"`` only where it learns.
    loss: ``(*M,)`` task loss per model.
    states: ``(T, *M, B, S)`` the states ``s_1 … s_T``.
    immediate: ``(T, *M, B, S)`` ``∂L_t/∂s_t``.
    future_signal: ``(T, *M, B, S)`` what the rule used in place of ``∂L_{>t}/∂s_t`` in the
        RNN's learning signal ``ℓ_t = ∂L_t/∂s_t + future_signal_t``.
    synthetic: ``(T, *M, B, S)`` the synthesiser's own output ``g(s_t)`` (``g(s_T) = 0``), or
        ``None`` for rules without a synthesiser.
    applied: ``(T,)`` bool, the steps whose ``g(s_t)`` enters the RNN's learning signal (every
        step but the terminal one for BP(λ), the chunk ends for n-step SG), ``(T, K)`` for
        a stacked window grid (one window per model), or ``None`` without a synthesiser.
    """

    grads: Grads
    loss: Tensor
    states: Tensor
    immediate: Tensor
    future_signal: Tensor
    synthetic: Tensor | None = None
    applied: Tensor | None = None
