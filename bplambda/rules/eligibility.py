"""Liu et al.'s bio-plausible rules on the leaky rate RNN: e-prop, RFLO, MDGL
(docs/paper-liu2022.md §2).

Notation (the rate cell, :class:`~bplambda.cells.RateRNN`): ``v_t`` the voltage (the state),
``z_t = ReLU(v_t)``, ``ψ_t = 1[v_t > 0]``, leak ``α``; the output errors ``e_t = ∂L_t/∂ŷ_t``
reach the units through a feedback matrix ``F`` (``(O, H)``, like ``W_out``): ``L_t = e_t F``,
``F = W_out`` (symmetric feedback: ``L_t`` is the direct ``∂L_t/∂z_t``) or a fixed random
matrix (``feedback="random"``, drawn per model from its seed, ``N(0, 1/H)``, never trained).

Every rule's recurrent update is a sum of eligibility traces times a learning signal,
``Σ_t L_{t,j} e_{ji,t}``. With the parameters fixed within a sequence that sum is computed in
its reverse-time form, exactly equal and without the ``(B, H, H)`` trace: the traces are
low-pass filters ``f_t = α f_{t-1} + (1−α) u_t`` of local quantities ``u_t``, and
``Σ_t L_t f_t = Σ_s (1−α) u_s Λ_s`` with ``Λ_s = Σ_{t≥s} α^{t−s} L_t`` (one backward pass,
``O(T·B·H)`` memory). The rule's update is then the cell's own local parameter gradient
(:meth:`~bplambda.cells.RateRNN.param_vjp`, which carries the ``(1−α)`` and the presynaptic
``z_{t-1}`` or ``x_t``) of a learning signal ``ℓ_t`` on the state:

=========  ==================================================================================
``eprop``  ``ℓ = back_filter(ψ ⊙ L)``: trace ``ε_t = α ε_{t-1} + (1−α) z_{t-1}`` times
           ``ψ_t L_t``; with symmetric feedback, autograd with ``z_{t-1}`` detached in the
           recurrent input (the paper's "three-factor rule")
``rflo``   ``ℓ = ψ ⊙ back_filter(L)``: ψ inside the low-pass filter (Murray 2019, ported),
           random feedback by default
``mdgl``   e-prop with ``L_t + (1−α) (ψ_{t+1} ⊙ L_{t+1}) W̃`` (zero after ``T``): the one-hop
           modulatory signal; ``W̃ = W_hh ⊙ M`` (``cell_specific``) or its block averages over
           cell types (``cell_type``)
=========  ==================================================================================

``ℓ_t − ∂L_t/∂v_t`` is reported as the rule's ``future_signal`` (what it uses in place of the
true future gradient), so the alignment metrics apply to these rules unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from bplambda.cells import Cell, RateRNN, initial_state, previous_states, unroll
from bplambda.errors import check_choice
from bplambda.outputs import Diagnostics, ParamGroups, RuleOutput
from bplambda.readout import SequenceTargets, output_errors
from bplambda.rules.base import Rule, local_rnn_gradient

FEEDBACK = ("symmetric", "random")
VARIANTS = ("cell_specific", "cell_type")


def back_filter(signal: Tensor, alpha: float) -> Tensor:
    """``Λ_s = Σ_{t≥s} α^{t−s} signal_t`` along the first (time) dimension: ``(T, ...)``."""
    if alpha == 0:
        return signal
    out = torch.empty_like(signal)
    running = torch.zeros_like(signal[0])
    for t in range(len(signal) - 1, -1, -1):
        running = signal[t] + alpha * running
        out[t] = running
    return out


def contiguous_types(hidden_size: int, cell_types: int) -> Tensor:
    """``(H,)``: ``cell_types`` contiguous blocks of units of (nearly) equal size."""
    return torch.arange(hidden_size) * cell_types // hidden_size


def cell_type_average(weight: Tensor, types: Tensor) -> Tensor:
    """``W̃[j, p]`` = the mean of ``weight`` over the block ``type(j) × type(p)``: ``(*M, H, H)``
    for ``types (H,)``, each unit's type (0, 1, …)."""
    count = int(types.max()) + 1  # on the host, where types are made: no device sync
    member = torch.nn.functional.one_hot(types, count).to(weight.device, weight.dtype)  # (H, C)
    sizes = member.sum(0)
    block_means = (member.T @ weight @ member) / (sizes[:, None] * sizes[None, :])
    return member @ block_means @ member.T


@dataclass(frozen=True)
class _TraceRule(Rule):
    """What e-prop, RFLO and MDGL share: the rate cell's forward pass, the feedback pathway,
    the readout's exact gradient, and the local update of a learning signal."""

    feedback: str = "symmetric"

    def __post_init__(self) -> None:
        check_choice("feedback", self.feedback, FEEDBACK)

    @property
    def trains(self) -> tuple[str, ...]:
        return ("rnn", "readout")

    def init_groups(
        self, cell: Cell, output_size: int, generator: torch.Generator, dtype: torch.dtype
    ) -> ParamGroups:
        """A fixed random feedback matrix ``(O, H) ~ N(0, 1/H)`` for ``feedback="random"``."""
        if self.feedback != "random":
            return {}
        H = cell.hidden_size
        weight = torch.randn(output_size, H, generator=generator, dtype=dtype) / math.sqrt(H)
        return {"feedback": {"weight": weight}}

    def _check_cell(self, cell: Cell) -> RateRNN:
        if not isinstance(cell, RateRNN):
            raise ValueError(
                f"rule {self.name!r} needs the rate RNN's structure (leak, ReLU units): use "
                f"make_cell('rate_rnn', ...); got {type(cell).__name__}"
            )
        return cell

    def batch_gradients(
        self, cell: Cell, params: ParamGroups, inputs: Tensor, targets: SequenceTargets
    ) -> RuleOutput:
        rate = self._check_cell(cell)
        rnn = params["rnn"]
        with torch.no_grad():
            states = unroll(cell, rnn, inputs)
            prev = previous_states(states, initial_state(cell, inputs))
        loss, errors, readout_grads = output_errors(cell, states, params["readout"], targets)
        with torch.no_grad():
            psi = (states > 0).to(states.dtype)
            W_out = params["readout"]["weight"]
            immediate = psi * (errors @ W_out)  # ∂L_t/∂v_t
            feedback = W_out if self.feedback == "symmetric" else params["feedback"]["weight"]
            signal = self._signal(rate, rnn, psi, errors @ feedback)
            grads: ParamGroups = {
                "rnn": local_rnn_gradient(cell, rnn, inputs, prev, signal),
                "readout": readout_grads,
            }
        return RuleOutput(grads, loss, Diagnostics(states, immediate, signal - immediate))

    def _signal(self, cell: RateRNN, rnn: dict, psi: Tensor, L: Tensor) -> Tensor:
        """The learning signal ``ℓ_t`` on the state ``(T, *M, B, H)`` from ``ψ`` and
        ``L_t = e_t F`` (both ``(T, *M, B, H)``)."""
        raise NotImplementedError


@dataclass(frozen=True)
class EProp(_TraceRule):
    """e-prop (Bellec et al. 2020), the "three-factor rule" of Liu et al.: eligibility trace
    ``ψ_t ε_t`` (``ε`` the low-pass filtered presynaptic activity) times ``L_t``; symmetric
    (``W_out``) or fixed random feedback. See the module docstring."""

    name = "eprop"

    def _signal(self, cell: RateRNN, rnn: dict, psi: Tensor, L: Tensor) -> Tensor:
        return back_filter(psi * L, cell.alpha)


@dataclass(frozen=True)
class RFLO(_TraceRule):
    """Random-feedback local online learning (Murray 2019) on the rate cell: ψ inside the
    low-pass filter, ``p_t = α p_{t-1} + (1−α) ψ_t z_{t-1}``, times ``L_t`` with a fixed
    random feedback matrix (``feedback="symmetric"`` uses ``W_out``)."""

    feedback: str = "random"
    name = "rflo"

    def _signal(self, cell: RateRNN, rnn: dict, psi: Tensor, L: Tensor) -> Tensor:
        return psi * back_filter(L, cell.alpha)


@dataclass(frozen=True)
class MDGL(_TraceRule):
    """Multidigraph learning (Liu et al., PNAS 2021): e-prop's traces with the one-hop
    modulatory signal ``L_t + (1−α) (ψ_{t+1} ⊙ L_{t+1}) W̃`` (``L_{t+1}`` the direct error).

    variant: ``"cell_specific"`` (``W̃ = W_hh ⊙ M``, the exact one-hop weights) or
    ``"cell_type"`` (``W̃`` averaged over the blocks of two cell types, the masked diagonal's
    zeros included: :func:`cell_type_average`). The types are the excitatory and inhibitory
    populations of a cell under Dale's law (as the authors'; ``cell_types`` is then ignored),
    else ``cell_types`` contiguous, equal-size groups of units: without Dale's law the weights'
    random signs cancel in the averages and the variant is close to e-prop.
    """

    variant: str = "cell_specific"
    cell_types: int = 2
    name = "mdgl"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("variant", self.variant, VARIANTS)
        if not isinstance(self.cell_types, int) or self.cell_types < 1:
            raise ValueError(f"cell_types={self.cell_types!r} is invalid; pass an integer >= 1")

    def _types(self, cell: RateRNN) -> Tensor:
        """``(H,)``: the cell's E/I populations under Dale's law, else contiguous blocks."""
        dale = cell.unit_types()
        if dale is not None:
            return dale
        if self.cell_types > cell.hidden_size:
            raise ValueError(f"cell_types={self.cell_types} exceeds the {cell.hidden_size} units")
        return contiguous_types(cell.hidden_size, self.cell_types)

    def _signal(self, cell: RateRNN, rnn: dict, psi: Tensor, L: Tensor) -> Tensor:
        weight = cell.recurrent_weight(rnn)
        if self.variant == "cell_type":
            weight = cell_type_average(weight, self._types(cell))
        direct = psi * L
        one_hop = torch.zeros_like(L)
        one_hop[:-1] = (1 - cell.alpha) * (direct[1:] @ weight)
        return back_filter(psi * (L + one_hop), cell.alpha)
