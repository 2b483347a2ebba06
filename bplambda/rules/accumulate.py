"""Accumulate BP(λ), the rule (Pemberton & Costa): the RNN learns from local gradients and
``scale·g(s_t)``, the synthesiser by TD(λ) on gradients; the maths (λ-returns, the online
traces) is :mod:`bplambda.bp_lambda`."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from bplambda.bp_lambda import lambda_return_gradient, online_bp_lambda, synthetic_gradients
from bplambda.cells import Cell, derivatives_of_all_steps
from bplambda.errors import check_choice
from bplambda.outputs import Diagnostics, ParamGroups, RuleOutput
from bplambda.readout import SequenceTargets, last_step
from bplambda.rules.base import (
    OnStep,
    Rule,
    WithSynthesiser,
    check_one_per_model,
    check_range,
    check_scale,
    local_pass,
    local_rnn_gradient,
    refuse_online_updates,
)

IMPLEMENTATIONS = ("lambda_return", "online")


@functools.lru_cache(maxsize=64)
def _model_values(values: tuple[float, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
    """A per-model coefficient ``(K,)`` on the run's device, made once per grid (cached: a
    training loop uploads nothing per batch). Never modify the result in place."""
    return torch.tensor(values, dtype=dtype, device=device)


@dataclass(frozen=True)
class BPLambda(WithSynthesiser, Rule):
    """Accumulate BP(λ): the RNN learns from ``ℓ_t = ∂L_t/∂s_t + scale·g(s_t)`` and local
    gradients only; the synthesiser learns by TD(λ) on gradients.

    ``implementation``: ``"lambda_return"`` (the exact forward view, cheap, not online) or
    ``"online"`` (eligibility traces, Algorithm 1; the only one that can update parameters
    every time step). Both give identical summed updates.

    ``lmbda`` may be a tuple with one λ per stacked model (inputs ``(T, K, B, I)``), so a
    whole λ grid trains as one batched model.
    """

    lmbda: float | tuple[float, ...] = 1.0
    gamma: float = 1.0
    scale: float = 1.0
    implementation: str = "lambda_return"
    learn_synthesiser: bool = True
    apply_synthetic_gradient: bool = True
    name = "bp_lambda"

    def __post_init__(self) -> None:
        for lmbda in self.lmbda if isinstance(self.lmbda, tuple) else (self.lmbda,):
            check_range("lmbda", lmbda, 0.0, 1.0, low_open=False)
        check_range("gamma", self.gamma, 0.0, 1.0, low_open=True)
        check_scale(self.scale)
        check_choice("implementation", self.implementation, IMPLEMENTATIONS)

    def gradients(
        self,
        cell: Cell,
        params: ParamGroups,
        inputs: Tensor,
        targets: SequenceTargets,
        on_step: OnStep | None = None,
    ) -> RuleOutput:
        lmbda = self._lambda_per_model(inputs)
        if self.implementation == "online":
            with torch.no_grad():
                return online_bp_lambda(
                    cell,
                    params,
                    inputs,
                    targets,
                    gamma=self.gamma,
                    lmbda=lmbda,
                    scale=self.scale,
                    learn_synthesiser=self.learn_synthesiser,
                    apply_synthetic_gradient=self.apply_synthetic_gradient,
                    on_step=on_step,
                )
        refuse_online_updates(f"{self.name} (implementation='lambda_return')", on_step)
        states, prev, loss, immediate, readout_grads = local_pass(cell, params, inputs, targets)
        synth, rnn = params["synthesiser"], params["rnn"]
        with torch.no_grad():
            # once, for every use below
            derivatives = derivatives_of_all_steps(cell, rnn, inputs, prev)
            synthetic = synthetic_gradients(synth, states)
            future = (
                cell.synthetic_signal(derivatives, self.scale * synthetic)
                if self.apply_synthetic_gradient
                else 0 * synthetic
            )
            signal = immediate + future
            grads: ParamGroups = {
                "rnn": local_rnn_gradient(cell, rnn, inputs, prev, signal, derivatives),
                "readout": readout_grads,
            }
            if self.learn_synthesiser:
                grads["synthesiser"] = lambda_return_gradient(
                    cell, rnn, synth, inputs, states, cell.td_immediate(derivatives, immediate),
                    synthetic, self.gamma, lmbda, derivatives,
                )  # fmt: skip
        applied = ~last_step(len(inputs), inputs.device)  # g(s_T) := 0
        return RuleOutput(grads, loss, Diagnostics(states, immediate, future, synthetic, applied))

    def _lambda_per_model(self, inputs: Tensor) -> float | Tensor:
        if not isinstance(self.lmbda, tuple):
            return float(self.lmbda)
        check_one_per_model("lmbda", self.lmbda, inputs)
        return _model_values(self.lmbda, inputs.dtype, inputs.device)
