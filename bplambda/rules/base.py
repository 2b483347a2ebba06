"""What every rule of the package shares: the :class:`Rule` protocol, the checks of their
options, the local forward pass and local parameter gradient, and the two kinds of parameter
groups a rule trains (the network alone, or the network and a synthesiser)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

from bplambda.cells import Cell, Params, initial_state, previous_states, unroll
from bplambda.outputs import ParamGroups, RuleOutput
from bplambda.readout import SequenceTargets, immediate_gradients
from bplambda.synthesiser import init_synthesiser

OnStep = Callable[[ParamGroups], None]


class Rule(Protocol):
    """A learning rule: the groups it trains and owns, and its gradients of one batch.

    The rules subclass it, last among their bases (after the mixins that give ``trains`` and
    ``init_groups``), for its :meth:`gradients`: that of a rule that updates once per sequence.
    Only BP(λ) overrides it (its online implementation can update within a sequence).
    """

    name: str

    @property
    def trains(self) -> tuple[str, ...]:
        """The parameter groups the rule returns gradients for (the trainer's optimiser groups)."""
        ...

    def init_groups(
        self, cell: Cell, output_size: int, generator: torch.Generator, dtype: torch.dtype
    ) -> ParamGroups:
        """One model's groups beyond ``"rnn"`` and ``"readout"`` that the rule needs (a
        synthesiser, a fixed random feedback matrix), drawn from ``generator`` after the
        network's own weights; ``{}`` for none."""
        ...

    def gradients(
        self,
        cell: Cell,
        params: ParamGroups,
        inputs: Tensor,
        targets: SequenceTargets,
        on_step: OnStep | None = None,
    ) -> RuleOutput:
        """The rule's gradients and diagnostics of one batch. ``on_step(params)``, where given,
        is called after each time step to update the parameters within the sequence; a rule
        that updates once per sequence refuses it and computes :meth:`batch_gradients`."""
        refuse_online_updates(self.name, on_step)
        return self.batch_gradients(cell, params, inputs, targets)

    def batch_gradients(
        self, cell: Cell, params: ParamGroups, inputs: Tensor, targets: SequenceTargets
    ) -> RuleOutput:
        """The gradients and diagnostics of one batch, of a rule that updates once per
        sequence."""
        raise NotImplementedError


def check_range(name: str, value: float, low: float, high: float, low_open: bool) -> None:
    ok = (value > low if low_open else value >= low) and value <= high and math.isfinite(value)
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}={value!r} is outside {bracket}{low}, {high}]; pass a value in it")


def check_window(window: int | tuple[int, ...]) -> None:
    """One window ``n >= 1``, or a non-empty tuple of them (one per stacked model)."""
    if isinstance(window, tuple):
        if not window:
            raise ValueError("window=() is empty; pass one window n >= 1 per stacked model")
        for n in window:
            check_window(n)
        return
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ValueError(f"window n={window!r} is invalid; pass an integer n >= 1")


def check_scale(scale: float) -> None:
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale={scale!r} is invalid; pass a finite synthetic-gradient scale >= 0")


def refuse_online_updates(rule: str, on_step: OnStep | None) -> None:
    if on_step is not None:
        raise ValueError(
            f"rule {rule!r} cannot update parameters within a sequence; only "
            "bp_lambda with implementation='online' can (update_every_step=True)"
        )


def local_pass(
    cell: Cell, params: ParamGroups, inputs: Tensor, targets: SequenceTargets
) -> tuple[Tensor, Tensor, Tensor, Tensor, Params]:
    """Forward pass without a graph: (states, previous states, loss, ∂L_t/∂s_t, readout grads)."""
    with torch.no_grad():
        states = unroll(cell, params["rnn"], inputs)
        prev = previous_states(states, initial_state(cell, inputs))
    loss, immediate, readout_grads = immediate_gradients(cell, states, params["readout"], targets)
    return states, prev, loss, immediate, readout_grads


def local_rnn_gradient(
    cell: Cell,
    rnn: Params,
    inputs: Tensor,
    prev: Tensor,
    signal: Tensor,
    derivatives: Params | None = None,
) -> Params:
    """``Σ_t ℓ_t · ∂s_t/∂Ψ|_local`` for all steps at once (time folded into the batch);
    ``derivatives``: the cell's of all steps, where the caller has them."""
    with torch.no_grad():
        if derivatives is None:
            return cell.param_vjp(rnn, inputs, prev, signal)
        return cell.param_vjp_at(rnn, derivatives, inputs, prev, signal)


def check_one_per_model(name: str, values: tuple, inputs: Tensor) -> None:
    """Refuse a per-model tuple (a λ or window grid) whose length is not the one model
    dimension of ``inputs (T, K, B, I)``."""
    models = inputs.shape[1:-2]
    if len(models) != 1 or models[0] != len(values):
        raise ValueError(
            f"{name} has {len(values)} values (one per model) but the inputs have model "
            f"dimensions {tuple(models)}; stack exactly one model per {name} value"
        )


class NetworkOnly:
    """A rule that trains the network (``"rnn"``, ``"readout"``) and owns no other state."""

    trains: tuple[str, ...] = ("rnn", "readout")

    def init_groups(
        self, cell: Cell, output_size: int, generator: torch.Generator, dtype: torch.dtype
    ) -> ParamGroups:
        return {}


class WithSynthesiser:
    """A rule with a synthesiser ``g`` (zero-initialised), trained where ``learn_synthesiser``."""

    learn_synthesiser: bool

    @property
    def trains(self) -> tuple[str, ...]:
        return ("rnn", "readout", "synthesiser") if self.learn_synthesiser else ("rnn", "readout")

    def init_groups(
        self, cell: Cell, output_size: int, generator: torch.Generator, dtype: torch.dtype
    ) -> ParamGroups:
        return {"synthesiser": init_synthesiser(cell.state_size, dtype)}
