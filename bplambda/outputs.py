"""What a credit-assignment rule returns for one batch."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from bplambda.cells import Params

ParamGroups = dict[str, Params]
"""Tensors by parameter group, ``{"rnn": ..., "readout": ..., "synthesiser": ...}``: a
model's parameters, or gradients of the same shapes."""


@dataclass(frozen=True)
class Diagnostics:
    """The per-step quantities of one batch that training only reads when it logs alignments.

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

    states: Tensor
    immediate: Tensor
    future_signal: Tensor
    synthetic: Tensor | None = None
    applied: Tensor | None = None


class RuleOutput:
    """Gradients (to *descend*) and diagnostics of one batch.

    grads: per group, with the parameters' shapes; ``"synthesiser"`` only where it learns.
    loss: ``(*M,)`` task loss per model.
    diagnostics: a :class:`Diagnostics`, or a function that computes it on first access: a
        rule on the fused LSTM kernel (:mod:`bplambda.rules.fused`) never sees every ``c_t`` or
        ``∂L/∂s_t``, and most batches never read them, so it defers them to its reference
        path. ``states``, ``immediate``, ``future_signal``, ``synthetic`` and ``applied`` read
        the diagnostics' fields.
    """

    def __init__(
        self, grads: ParamGroups, loss: Tensor, diagnostics: Diagnostics | Callable[[], Diagnostics]
    ) -> None:
        self.grads, self.loss = grads, loss
        self._diagnostics = diagnostics

    @functools.cached_property
    def diagnostics(self) -> Diagnostics:
        if isinstance(self._diagnostics, Diagnostics):
            return self._diagnostics
        return self._diagnostics()

    @property
    def states(self) -> Tensor:
        return self.diagnostics.states

    @property
    def immediate(self) -> Tensor:
        return self.diagnostics.immediate

    @property
    def future_signal(self) -> Tensor:
        return self.diagnostics.future_signal

    @property
    def synthetic(self) -> Tensor | None:
        return self.diagnostics.synthetic

    @property
    def applied(self) -> Tensor | None:
        return self.diagnostics.applied
