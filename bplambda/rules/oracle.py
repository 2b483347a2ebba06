"""The oracle: local gradients plus the true future gradient, the ceiling arm of the BP(λ)
study and the check of the learning-signal factorisation that BP(λ) relies on."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from bplambda.bp_lambda import true_future_gradients
from bplambda.cells import Cell, derivatives_of_all_steps
from bplambda.outputs import Diagnostics, ParamGroups, RuleOutput
from bplambda.readout import SequenceTargets
from bplambda.rules.base import (
    NetworkOnly,
    Rule,
    local_pass,
    local_rnn_gradient,
)
from bplambda.rules.truncated import KernelChoice, truncated_backprop


@dataclass(frozen=True)
class Oracle(NetworkOnly, KernelChoice, Rule):
    """Local gradients plus the *true* future gradient ``∂L_{>t}/∂s_t`` (the ceiling arm).

    Its update equals BPTT exactly: the check that the learning-signal factorisation used by
    BP(λ) is right. On the fused LSTM kernel (an exact Jacobian only: the faithful LSTM's
    oracle sweeps its quirky one) the update *is* BPTT's through the kernel, and the
    factorised signals (its diagnostics) come from the reference path on first access; the
    factorisation itself is checked on the reference path (``kernel="reference"``).
    """

    name = "oracle"

    def batch_gradients(
        self, cell: Cell, params: ParamGroups, inputs: Tensor, targets: SequenceTargets
    ) -> RuleOutput:
        reference = functools.partial(self._factorised, cell, inputs=inputs, targets=targets)
        exact = cell.exact() == cell  # the faithful LSTM's oracle sweeps its own Jacobian
        kernel = self.kernel if exact else "reference"
        return truncated_backprop(
            cell, params, inputs, targets, None, kernel=kernel, reference=reference
        )

    @staticmethod
    def _factorised(
        cell: Cell, params: ParamGroups, inputs: Tensor, targets: SequenceTargets
    ) -> RuleOutput:
        """Local gradients of ``∂L_t/∂s_t + ∂L_{>t}/∂s_t``, the true future from the backward
        sweep on the cell's own Jacobian."""
        states, prev, loss, immediate, readout_grads = local_pass(cell, params, inputs, targets)
        rnn = params["rnn"]
        with torch.no_grad():
            derivatives = derivatives_of_all_steps(cell, rnn, inputs, prev)
            future = true_future_gradients(cell, rnn, inputs, states, immediate, derivatives)
            grads = {
                "rnn": local_rnn_gradient(cell, rnn, inputs, prev, immediate + future, derivatives),
                "readout": readout_grads,
            }
        return RuleOutput(grads, loss, Diagnostics(states, immediate, future))
