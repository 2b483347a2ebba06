"""Recurrent cells with explicit state Jacobians and local parameter gradients.

Every cell is a pure function of a parameter dict: nothing here holds weights.

Shapes (the leading ``*M`` are optional *model* dimensions, e.g. stacked seeds; a parameter
of a stacked model has shape ``(*M, *base_shape)``, and data carry the same ``*M``):

- input ``x``: ``(*M, B, I)``, state ``s``: ``(*M, B, S)``;
- state Jacobian ``J``: ``(*M, B, S, S)`` with ``J[..., b, i, j] = ∂s_i / ∂s_prev_j``;
- a learning signal / cotangent ``v``: ``(*M, B, S)``, a row vector as in the paper
  (``v @ J`` pushes it one step back in time).

``state_vjp`` and ``param_vjp`` also accept extra leading dimensions ``(*E, *M, B, ...)``
(for example all time steps at once); ``param_vjp`` sums over them and over the batch.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from bplambda.errors import check_choice

Params = dict[str, Tensor]


class Cell(ABC):
    """The base of every cell; see the module docstring for shapes.

    A subclass provides the step, its state Jacobian and its local derivatives; the defaults
    here are the identities that most cells need: the readout sees the whole state, the
    state is ``hidden_size`` wide, BP(λ)'s learning signals pass unchanged (only the official
    LSTM's quirks change them, :class:`FaithfulLSTM`), every step is real (only
    :class:`MaskedCell` pads), the cell is its own exact version, and its readout starts as
    ``nn.Linear`` does (``readout_init``, :data:`~bplambda.readout.READOUT_INITS`).
    """

    input_size: int
    hidden_size: int
    readout_init: ClassVar[str] = "linear"

    def constrain(self, params: Params) -> None:
        """Put the cell's parameters back inside its constraints after an update, in place
        (a rate cell under Dale's law); most cells have none."""
        return None

    @property
    def state_size(self) -> int:
        return self.hidden_size

    @property
    @abstractmethod
    def param_ndim(self) -> dict[str, int]:
        """Number of non-model dimensions of each parameter."""

    @abstractmethod
    def init_params(
        self, generator: torch.Generator, dtype: torch.dtype = torch.float32
    ) -> Params: ...

    @abstractmethod
    def step(self, params: Params, x: Tensor, s_prev: Tensor) -> Tensor:
        """``s_t`` from ``x_t: (..., B, I)`` and ``s_{t-1}: (..., B, S)``."""

    def hidden(self, s: Tensor) -> Tensor:
        """The part of the state the readout sees: ``(..., B, H)``."""
        return s

    @abstractmethod
    def state_jacobian(self, params: Params, x: Tensor, s_prev: Tensor) -> Tensor:
        """``∂s_t/∂s_{t-1}``: ``(..., B, S, S)``."""

    @abstractmethod
    def derivatives(self, params: Params, x: Tensor, s_prev: Tensor) -> Params:
        """The step's local derivatives, computed once (e.g. for all time steps together) and
        reused by ``state_vjp_at``: a dict of ``(..., B, ·)`` tensors."""

    @abstractmethod
    def state_vjp_at(self, params: Params, derivatives: Params, v: Tensor) -> Tensor:
        """``v @ ∂step/∂s_prev`` from precomputed ``derivatives``: ``(..., B, S)``."""

    def state_vjp(self, params: Params, x: Tensor, s_prev: Tensor, v: Tensor) -> Tensor:
        """``v @ ∂step/∂s_prev``: ``(..., B, S)``."""
        return self.state_vjp_at(params, self.derivatives(params, x, s_prev), v)

    @abstractmethod
    def param_vjp_at(
        self, params: Params, derivatives: Params, x: Tensor, s_prev: Tensor, v: Tensor
    ) -> Params:
        """``param_vjp`` from precomputed ``derivatives`` (of the same ``x``, ``s_prev``)."""

    def param_vjp(self, params: Params, x: Tensor, s_prev: Tensor, v: Tensor) -> Params:
        """``Σ_{extra dims, b} v · ∂step/∂params`` with ``s_prev`` held fixed (local gradient)."""
        return self.param_vjp_at(params, self.derivatives(params, x, s_prev), x, s_prev, v)

    def td_immediate(self, derivatives: Params, a: Tensor) -> Tensor:
        """The immediate gradient ``a_t = ∂L_t/∂s_t`` as it enters BP(λ)'s TD target
        (``derivatives`` of the step that made ``s_t``)."""
        return a

    def synthetic_signal(self, derivatives: Params, v: Tensor) -> Tensor:
        """The synthetic part ``s·g(s_t)`` of the RNN's learning signal."""
        return v

    def exact(self) -> Cell:
        """The same cell with the exact Jacobian: the one the true future gradient (that
        alignments are measured against) comes from."""
        return self

    def real_steps(self, inputs: Tensor) -> Tensor | None:
        """``(T, *M, B)``: 1 on real steps, 0 on padding; ``None``: every step is real."""
        return None

    def kinks(self, states: Tensor) -> Tensor | None:
        """The values whose sign changes are the cell's non-differentiable points (ReLU
        pre-activations), ``(..., B, ·)`` from ``states (..., B, S)``; ``None``: a smooth cell."""
        return None


def _uniform(
    shape: tuple[int, ...], bound: float, generator: torch.Generator, dtype: torch.dtype
) -> Tensor:
    return (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * bound


def _affine_weights(
    rows: int, input_size: int, hidden_size: int, generator: torch.Generator, dtype: torch.dtype
) -> Params:
    """The official code's initialisation: W ~ U(±1/√H), b = U(±1/√H) + U(±1/√H)."""
    bound = 1 / math.sqrt(hidden_size)
    return {
        "weight_ih": _uniform((rows, input_size), bound, generator, dtype),
        "weight_hh": _uniform((rows, hidden_size), bound, generator, dtype),
        "bias": _uniform((rows,), bound, generator, dtype)
        + _uniform((rows,), bound, generator, dtype),
    }


def _preactivation(params: Params, x: Tensor, h_prev: Tensor) -> Tensor:
    """``x W_ihᵀ + h_prev W_hhᵀ + b``: ``(..., B, rows)``."""
    return (
        x @ params["weight_ih"].mT + h_prev @ params["weight_hh"].mT + params["bias"].unsqueeze(-2)
    )


def fold_into_batch(t: Tensor, model_ndim: int) -> Tensor:
    """Move extra leading dims of ``t: (*E, *M, B, F)`` into the batch: ``(*M, prod(E)·B, F)``."""
    extra = t.dim() - model_ndim - 2
    if extra == 0:
        return t
    t = t.movedim(tuple(range(extra)), tuple(range(model_ndim, model_ndim + extra)))
    return t.reshape(*t.shape[:model_ndim], -1, t.shape[-1])


def unfold_from_batch(t: Tensor, extra: tuple[int, ...], batch: int) -> Tensor:
    """The inverse of :func:`fold_into_batch`: ``(*M, prod(E)·B, F)`` → ``(*E, *M, B, F)``."""
    if not extra:
        return t
    model_ndim = t.dim() - 2
    t = t.reshape(*t.shape[:model_ndim], *extra, batch, t.shape[-1])
    return t.movedim(tuple(range(model_ndim, model_ndim + len(extra))), tuple(range(len(extra))))


def folded_matmul(x: Tensor, weight: Tensor) -> Tensor:
    """``x Wᵀ`` for ``x: (*E, *M, B, F)`` and ``weight: (*M, R, F)``: ``(*E, *M, B, R)``, one
    product per model with the extra dims (e.g. time) folded into the batch; a broadcast
    ``x @ weight.mT`` would copy the weights once per extra index and multiply them one by
    one."""
    model_ndim = weight.dim() - 2
    extra = tuple(x.shape[: x.dim() - model_ndim - 2])
    return unfold_from_batch(fold_into_batch(x, model_ndim) @ weight.mT, extra, x.shape[-2])


def derivatives_of_all_steps(cell: Cell, params: Params, inputs: Tensor, prev: Tensor) -> Params:
    """``cell.derivatives`` of all steps at once, ``(T, *M, B, ·)`` from ``inputs (T, *M, B,
    I)`` and ``prev (T, *M, B, S)``, with time folded into the batch (every derivative is
    row by row, so this is the same computation as one broadcast call, with one product per
    model instead of one per step)."""
    model_ndim = inputs.dim() - 3
    x, s = (fold_into_batch(t, model_ndim) for t in (inputs, prev))
    folded = cell.derivatives(params, x, s)
    return {k: unfold_from_batch(v, (len(inputs),), inputs.shape[-2]) for k, v in folded.items()}


def _affine_param_vjp(params: Params, x: Tensor, h_prev: Tensor, d_pre: Tensor) -> Params:
    """Gradients of ``Σ d_pre · pre`` (the affine pre-activation), summed over batch and extras."""
    model_ndim = params["bias"].dim() - 1
    d_pre, x, h_prev = (fold_into_batch(t, model_ndim) for t in (d_pre, x, h_prev))
    return {
        "weight_ih": d_pre.mT @ x,
        "weight_hh": d_pre.mT @ h_prev,
        "bias": d_pre.sum(-2),
    }


_ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]] = {
    # name: (φ, φ' as a function of (pre-activation, output))
    "linear": (lambda z: z, lambda z, h: torch.ones_like(z)),
    "tanh": (torch.tanh, lambda z, h: 1 - h * h),
}


@dataclass(frozen=True)
class VanillaRNN(Cell):
    """``h_t = φ(W_ih x_t + W_hh h_{t-1} + b)``; the state is ``h`` (S = H).

    ``activation`` is ``"linear"`` (the paper's toy-task RNN) or ``"tanh"``.
    """

    input_size: int
    hidden_size: int
    activation: str = "linear"

    def __post_init__(self) -> None:
        check_choice("activation", self.activation, sorted(_ACTIVATIONS))

    @property
    def param_ndim(self) -> dict[str, int]:
        return {"weight_ih": 2, "weight_hh": 2, "bias": 1}

    def init_params(self, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Params:
        return _affine_weights(
            self.hidden_size, self.input_size, self.hidden_size, generator, dtype
        )

    def _forward(self, params: Params, x: Tensor, s_prev: Tensor) -> tuple[Tensor, Tensor]:
        """(h, φ'(pre)), both ``(..., B, H)``."""
        phi, phi_prime = _ACTIVATIONS[self.activation]
        pre = _preactivation(params, x, s_prev)
        h = phi(pre)
        return h, phi_prime(pre, h)

    def step(self, params: Params, x: Tensor, s_prev: Tensor) -> Tensor:
        return self._forward(params, x, s_prev)[0]

    def state_jacobian(self, params: Params, x: Tensor, s_prev: Tensor) -> Tensor:
        _, slope = self._forward(params, x, s_prev)
        return slope.unsqueeze(-1) * params["weight_hh"].unsqueeze(-3)

    def derivatives(self, params: Params, x: Tensor, s_prev: Tensor) -> Params:
        return {"slope": self._forward(params, x, s_prev)[1]}

    def state_vjp_at(self, params: Params, derivatives: Params, v: Tensor) -> Tensor:
        return (v * derivatives["slope"]) @ params["weight_hh"]

    def param_vjp_at(
        self, params: Params, derivatives: Params, x: Tensor, s_prev: Tensor, v: Tensor
    ) -> Params:
        return _affine_param_vjp(params, x, s_prev, v * derivatives["slope"])


@dataclass(frozen=True)
class LSTM(Cell):
    """LSTM with gates ordered (i, f, g, o) and state ``s = [h; c]`` (S = 2H).

    ``c_t = f ⊙ c_{t-1} + i ⊙ g``, ``h_t = o ⊙ tanh(c_t)``, with one bias vector (the official
    code's two biases are summed at initialisation). The Jacobian is exact, including the
    ``h_{t-1} → o_t → h_t`` path that the official code leaves out (:class:`FaithfulLSTM`).
    """

    input_size: int
    hidden_size: int

    @property
    def state_size(self) -> int:
        return 2 * self.hidden_size

    @property
    def param_ndim(self) -> dict[str, int]:
        return {"weight_ih": 2, "weight_hh": 2, "bias": 1}

    def init_params(self, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Params:
        return _affine_weights(
            4 * self.hidden_size, self.input_size, self.hidden_size, generator, dtype
        )

    def _split(self, s: Tensor) -> tuple[Tensor, Tensor]:
        return s[..., : self.hidden_size], s[..., self.hidden_size :]

    def _gates(self, params: Params, x: Tensor, s_prev: Tensor) -> dict[str, Tensor]:
        h_prev, c_prev = self._split(s_prev)
        i, f, g, o = _preactivation(params, x, h_prev).chunk(4, dim=-1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c = f * c_prev + i * g
        tanh_c = torch.tanh(c)
        return {"i": i, "f": f, "g": g, "o": o, "c_prev": c_prev, "c": c, "tanh_c": tanh_c}

    def step(self, params: Params, x: Tensor, s_prev: Tensor) -> Tensor:
        a = self._gates(params, x, s_prev)
        return torch.cat([a["o"] * a["tanh_c"], a["c"]], dim=-1)

    def hidden(self, s: Tensor) -> Tensor:
        return s[..., : self.hidden_size]

    def _gate_slopes(self, a: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """∂c/∂z_i, ∂c/∂z_f, ∂c/∂z_g and ∂h/∂z_o, each ``(..., B, H)``."""
        return (
            a["g"] * a["i"] * (1 - a["i"]),
            a["c_prev"] * a["f"] * (1 - a["f"]),
            a["i"] * (1 - a["g"] * a["g"]),
            a["tanh_c"] * a["o"] * (1 - a["o"]),
        )

    def state_jacobian(self, params: Params, x: Tensor, s_prev: Tensor) -> Tensor:
        a = self._gates(params, x, s_prev)
        W_i, W_f, W_g, W_o = params["weight_hh"].unsqueeze(-3).chunk(4, dim=-2)
        di, df, dg, do = self._gate_slopes(a)
        dc_dh = di.unsqueeze(-1) * W_i + df.unsqueeze(-1) * W_f + dg.unsqueeze(-1) * W_g
        dh_dc = a["o"] * (1 - a["tanh_c"] ** 2)  # ∂h_t/∂c_t, diagonal
        dh_dh = dh_dc.unsqueeze(-1) * dc_dh + self._output_gate_path(do, W_o)
        dc_dcprev = torch.diag_embed(a["f"])
        dh_dcprev = torch.diag_embed(dh_dc * a["f"])
        top = torch.cat([dh_dh, dh_dcprev], dim=-1)
        bottom = torch.cat([dc_dh, dc_dcprev], dim=-1)
        return torch.cat([top, bottom], dim=-2)

    def derivatives(self, params: Params, x: Tensor, s_prev: Tensor) -> Params:
        """Gate slopes ``(..., B, 4H)``, ``∂h/∂c`` and the forget gate ``(..., B, H)``."""
        a = self._gates(params, x, s_prev)
        return {
            "slopes": torch.cat(self._gate_slopes(a), dim=-1),
            "dh_dc": a["o"] * (1 - a["tanh_c"] ** 2),
            "f": a["f"],
        }

    def _pre_gradient(self, derivatives: Params, v: Tensor) -> tuple[Tensor, Tensor]:
        """(∂/∂pre-activation ``(..., B, 4H)``, ∂/∂c_prev ``(..., B, H)``) for cotangent ``v``."""
        v_h, v_c = self._split(v)
        dc = torch.addcmul(v_c, v_h, derivatives["dh_dc"])
        d_pre = torch.cat([dc, dc, dc, v_h], dim=-1) * derivatives["slopes"]
        return d_pre, dc * derivatives["f"]

    def state_vjp_at(self, params: Params, derivatives: Params, v: Tensor) -> Tensor:
        d_pre, d_cprev = self._pre_gradient(derivatives, v)
        rows = self._recurrent_gates * self.hidden_size
        d_hprev = d_pre[..., :rows] @ params["weight_hh"][..., :rows, :]
        return torch.cat([d_hprev, d_cprev], dim=-1)

    _recurrent_gates = 4
    """The gates through which ``h_{t-1}`` reaches the state in the Jacobian (all four)."""

    @staticmethod
    def _output_gate_path(do: Tensor, W_o: Tensor) -> Tensor:
        """``∂h_t/∂h_{t-1}`` through the output gate: ``(..., B, H, H)``."""
        return do.unsqueeze(-1) * W_o

    def param_vjp_at(
        self, params: Params, derivatives: Params, x: Tensor, s_prev: Tensor, v: Tensor
    ) -> Params:
        d_pre, _ = self._pre_gradient(derivatives, v)
        return _affine_param_vjp(params, x, self._split(s_prev)[0], d_pre)


@dataclass(frozen=True)
class FaithfulLSTM(LSTM):
    """The LSTM with the official code's three quirks (docs/paper-bp-lambda.md §3) in what BP(λ)
    uses: (a) the state Jacobian and its VJPs omit the ``h_{t-1} → o_t → h_t`` path; (b) the TD
    target's immediate term is ``[a_h, a_h ⊙ ∂h/∂c]`` (the cell path counted twice);
    (c) ``s·g_h ⊙ ∂h/∂c`` does not reach the cell-gate updates. The step and the parameter
    VJP stay exact, so BPTT is unchanged.
    """

    _recurrent_gates = 3  # quirk (a): the output gate is left out

    @staticmethod
    def _output_gate_path(do: Tensor, W_o: Tensor) -> Tensor:
        return torch.zeros((), dtype=do.dtype, device=do.device)  # quirk (a)

    def _cell_path(self, derivatives: Params, v: Tensor) -> Tensor:
        """``[0, v_h ⊙ ∂h_t/∂c_t]``: ``v``'s h-part carried onto the cell state."""
        v_h = self._split(v)[0]
        return torch.cat([torch.zeros_like(v_h), v_h * derivatives["dh_dc"]], dim=-1)

    def td_immediate(self, derivatives: Params, a: Tensor) -> Tensor:
        return a + self._cell_path(derivatives, a)  # quirk (b)

    def synthetic_signal(self, derivatives: Params, v: Tensor) -> Tensor:
        return v - self._cell_path(derivatives, v)  # quirk (c)

    def exact(self) -> Cell:
        return LSTM(self.input_size, self.hidden_size)


@dataclass(frozen=True)
class RateRNN(Cell):
    """Liu et al.'s leaky rate unit (docs/paper-liu2022.md §1): the state is the voltage ``v``
    (S = H),

    ``v_t = α v_{t-1} + (1−α)(W_ih x_t + (W_hh ⊙ M) z_{t-1})``, ``z_t = ReLU(v_t)``,

    with ``M = 1 − I`` (no autapses), no recurrent bias, ``α = exp(−dt/τ)`` (``alpha``; their
    seq-MNIST has ``τ = 0.01``, so ``α ≈ 0``: a leak-free ReLU RNN). The readout sees ``z``
    (their readout filter ``κ`` equals ``α`` there; a separate readout filter is not modelled).
    Initialisation (their code): ``W_ih ~ N(0, 2/I)``, ``W_hh ~ N(0, 2/H)``, diagonal masked;
    the readout Glorot-uniform with a zero bias (``readout_init``; TF's ``get_variable`` default).
    ``W[i, j]`` is the weight from unit j to unit i (PyTorch's convention; TF's is transposed).

    Dale's law (``excitatory_fraction``, e.g. 0.8 as the authors' delayed-match code): the
    first ``round(fraction·H)`` units are excitatory, the rest inhibitory (:meth:`unit_types`),
    and every recurrent weight carries its presynaptic unit's sign. ``W_hh`` starts as
    ``|N(0, 2/H)|`` times that sign, the inhibitory columns scaled by ``n_E/n_I`` so that a
    unit's expected recurrent input is zero (our choice); :meth:`constrain`, applied after
    every update, sets a weight that crossed zero back to zero, keeping the signs through
    training (projected gradient descent).
    """

    input_size: int
    hidden_size: int
    alpha: float = 0.0
    excitatory_fraction: float | None = None
    readout_init: ClassVar[str] = "glorot"

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(
                f"alpha={self.alpha!r} is invalid; pass a leak α = exp(−dt/τ) in [0, 1)"
            )
        fraction = self.excitatory_fraction
        if fraction is not None and not 0 < round(fraction * self.hidden_size) < self.hidden_size:
            raise ValueError(
                f"excitatory_fraction={fraction!r} leaves no excitatory or no inhibitory unit "
                f"among {self.hidden_size}; pass a fraction in (0, 1), or None for no Dale's law"
            )

    def unit_types(self) -> Tensor | None:
        """``(H,)``: 0 for an excitatory unit, 1 for an inhibitory one; None without Dale's law."""
        if self.excitatory_fraction is None:
            return None
        excitatory = round(self.excitatory_fraction * self.hidden_size)
        return (torch.arange(self.hidden_size) >= excitatory).long()

    def _signs(self, like: Tensor) -> Tensor:
        """``(H,)``: each presynaptic unit's sign (+1 E, −1 I)."""
        return (1 - 2 * self.unit_types()).to(like.dtype).to(like.device)

    def constrain(self, params: Params) -> None:
        """Dale's law, in place: a recurrent weight whose sign is not its presynaptic unit's
        becomes zero (without Dale's law nothing changes)."""
        if self.excitatory_fraction is None:
            return
        with torch.no_grad():
            weight = params["weight_hh"]
            weight.mul_((weight * self._signs(weight) >= 0).to(weight.dtype))

    @property
    def param_ndim(self) -> dict[str, int]:
        return {"weight_ih": 2, "weight_hh": 2}

    def init_params(self, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Params:
        H, n_in = self.hidden_size, self.input_size
        weight_hh = torch.randn(H, H, generator=generator, dtype=dtype) * math.sqrt(2 / H)
        if self.excitatory_fraction is not None:
            types = self.unit_types()
            inhibitory = int(types.sum())
            balance = torch.where(types == 1, (H - inhibitory) / inhibitory, 1.0).to(dtype)
            weight_hh = weight_hh.abs() * self._signs(weight_hh) * balance
        return {
            "weight_ih": torch.randn(H, n_in, generator=generator, dtype=dtype)
            * math.sqrt(2 / n_in),
            "weight_hh": weight_hh * self._mask(weight_hh),
        }

    def _mask(self, like: Tensor) -> Tensor:
        """``M = 1 − I``: ``(H, H)``, broadcasting over model dimensions."""
        return 1 - torch.eye(self.hidden_size, dtype=like.dtype, device=like.device)

    def recurrent_weight(self, params: Params) -> Tensor:
        """``W_hh ⊙ M``: the recurrent weights as the step uses them, ``(*M, H, H)``."""
        return params["weight_hh"] * self._mask(params["weight_hh"])

    def step(self, params: Params, x: Tensor, s_prev: Tensor) -> Tensor:
        drive = x @ params["weight_ih"].mT + torch.relu(s_prev) @ self.recurrent_weight(params).mT
        return self.alpha * s_prev + (1 - self.alpha) * drive

    def hidden(self, s: Tensor) -> Tensor:
        return torch.relu(s)

    def kinks(self, states: Tensor) -> Tensor:
        """The voltages: ``z = ReLU(v)`` has its kink where ``v`` crosses 0."""
        return states

    def state_jacobian(self, params: Params, x: Tensor, s_prev: Tensor) -> Tensor:
        """``α I + (1−α) (W_hh ⊙ M) diag(ψ_{t-1})``, ``ψ = 1[v > 0]``: ``(..., B, H, H)``."""
        psi = (s_prev > 0).to(s_prev.dtype)
        W = self.recurrent_weight(params).unsqueeze(-3)
        eye = torch.eye(self.hidden_size, dtype=s_prev.dtype, device=s_prev.device)
        return self.alpha * eye + (1 - self.alpha) * W * psi.unsqueeze(-2)

    def derivatives(self, params: Params, x: Tensor, s_prev: Tensor) -> Params:
        """``ψ_{t-1} = 1[v_{t-1} > 0]``: ``(..., B, H)``."""
        return {"psi": (s_prev > 0).to(s_prev.dtype)}

    def state_vjp_at(self, params: Params, derivatives: Params, v: Tensor) -> Tensor:
        through = (v @ self.recurrent_weight(params)) * derivatives["psi"]
        return self.alpha * v + (1 - self.alpha) * through

    def param_vjp_at(
        self, params: Params, derivatives: Params, x: Tensor, s_prev: Tensor, v: Tensor
    ) -> Params:
        """The local gradient needs no derivative (``ψ`` is not on this path)."""
        model_ndim = params["weight_hh"].dim() - 2
        d_drive, x, z_prev = (
            fold_into_batch(t, model_ndim) for t in ((1 - self.alpha) * v, x, torch.relu(s_prev))
        )
        return {
            "weight_ih": d_drive.mT @ x,
            "weight_hh": (d_drive.mT @ z_prev) * self._mask(params["weight_hh"]),
        }


@dataclass(frozen=True)
class MaskedCell(Cell):
    """A cell for front-padded sequences of different lengths in one stacked batch.

    The last input channel is a flag: 1 on a real step, 0 on padding. On padding the state is
    held at zero (``s_t = flag · step(x_t, s_{t-1})``), so a sequence that starts late starts
    from the zero state, exactly as alone; the Jacobian and the local parameter gradients carry
    the same factor, so nothing flows into or out of padding. ``input_size`` counts the flag.
    """

    inner: Cell

    @property
    def readout_init(self) -> str:  # type: ignore[override]
        return self.inner.readout_init

    def constrain(self, params: Params) -> None:
        self.inner.constrain(params)

    @property
    def input_size(self) -> int:
        return self.inner.input_size + 1

    @property
    def hidden_size(self) -> int:
        return self.inner.hidden_size

    @property
    def state_size(self) -> int:
        return self.inner.state_size

    @property
    def param_ndim(self) -> dict[str, int]:
        return self.inner.param_ndim

    def init_params(self, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Params:
        return self.inner.init_params(generator, dtype)

    @staticmethod
    def _split(x: Tensor) -> tuple[Tensor, Tensor]:
        return x[..., :-1], x[..., -1:]

    def step(self, params: Params, x: Tensor, s_prev: Tensor) -> Tensor:
        x, flag = self._split(x)
        return flag * self.inner.step(params, x, s_prev)

    def hidden(self, s: Tensor) -> Tensor:
        return self.inner.hidden(s)

    def state_jacobian(self, params: Params, x: Tensor, s_prev: Tensor) -> Tensor:
        x, flag = self._split(x)
        return flag.unsqueeze(-1) * self.inner.state_jacobian(params, x, s_prev)

    def derivatives(self, params: Params, x: Tensor, s_prev: Tensor) -> Params:
        x, flag = self._split(x)
        return {**self.inner.derivatives(params, x, s_prev), "flag": flag}

    @staticmethod
    def _inner(derivatives: Params) -> Params:
        """The inner cell's derivatives (without the flag)."""
        return {k: d for k, d in derivatives.items() if k != "flag"}

    def state_vjp_at(self, params: Params, derivatives: Params, v: Tensor) -> Tensor:
        v = v * derivatives["flag"]
        return self.inner.state_vjp_at(params, self._inner(derivatives), v)

    def param_vjp_at(
        self, params: Params, derivatives: Params, x: Tensor, s_prev: Tensor, v: Tensor
    ) -> Params:
        v = v * derivatives["flag"]
        x = self._split(x)[0]
        return self.inner.param_vjp_at(params, self._inner(derivatives), x, s_prev, v)

    def td_immediate(self, derivatives: Params, a: Tensor) -> Tensor:
        return self.inner.td_immediate(self._inner(derivatives), a)

    def synthetic_signal(self, derivatives: Params, v: Tensor) -> Tensor:
        return self.inner.synthetic_signal(self._inner(derivatives), v)

    def exact(self) -> Cell:
        return MaskedCell(self.inner.exact())

    def real_steps(self, inputs: Tensor) -> Tensor:
        """The flag channel: ``(T, *M, B)``."""
        return inputs[..., -1]


CELLS = ("linear_rnn", "tanh_rnn", "lstm", "lstm_faithful", "rate_rnn")
LSTM_MODES = {"exact": "lstm", "faithful": "lstm_faithful"}
"""The LSTM's two modes by name: the exact Jacobian, or the official code's quirks."""


def with_compiled_step(cell: Cell) -> Cell:
    """A copy of ``cell`` whose ``step`` is fused by ``torch.compile`` (fixed shapes; the
    first batch of each shape pays the compilation). Everything else is the cell's own.

    It pays where autograd differentiates the step (BPTT, TBPTT, SG; the figures are in the
    docs/benchmarks.md). Not for rules that switch grad mode within a batch (BP(λ), the
    oracle): each switch recompiles (:data:`bplambda.train.COMPILED_RULES`).
    """
    # The rules call backward with retain_graph (SG's chunks, the loss and the immediate
    # gradients from one graph), which buffers donated to a compiled backward cannot serve.
    # A fresh process has not imported this submodule yet: ``torch._functorch.config`` alone
    # raises AttributeError there.
    import torch._functorch.config as functorch_config

    functorch_config.donated_buffer = False
    compiled = copy.copy(cell)
    object.__setattr__(compiled, "step", torch.compile(cell.step, dynamic=False))
    return compiled


def make_cell(name: str, input_size: int, hidden_size: int, **options: float) -> Cell:
    """A cell by name: ``"linear_rnn"``, ``"tanh_rnn"``, ``"lstm"`` (exact),
    ``"lstm_faithful"`` (the official code's BP(λ) quirks, see :class:`FaithfulLSTM`) or
    ``"rate_rnn"`` (Liu et al.'s leaky ReLU rate unit; ``options``: ``alpha``)."""
    check_choice("cell", name, CELLS)
    if name == "rate_rnn":
        return RateRNN(input_size, hidden_size, **options)
    if options:
        raise ValueError(f"cell {name!r} takes no options; got {sorted(options)}")
    if name in ("linear_rnn", "tanh_rnn"):
        return VanillaRNN(input_size, hidden_size, name.removesuffix("_rnn"))
    return (LSTM if name == "lstm" else FaithfulLSTM)(input_size, hidden_size)


def unroll(cell: Cell, params: Params, inputs: Tensor, s0: Tensor | None = None) -> Tensor:
    """All states ``s_1 … s_T``: ``(T, *M, B, S)`` for ``inputs: (T, *M, B, I)``.

    ``s0`` defaults to zeros (the state is reset for every sequence).
    """
    s = initial_state(cell, inputs) if s0 is None else s0
    states = []
    for x in inputs:
        s = cell.step(params, x, s)
        states.append(s)
    return torch.stack(states)


def initial_state(cell: Cell, inputs: Tensor) -> Tensor:
    """Zero state ``(*M, B, S)`` matching ``inputs: (T, *M, B, I)``."""
    return inputs.new_zeros(*inputs.shape[1:-1], cell.state_size)


def previous_states(states: Tensor, s0: Tensor) -> Tensor:
    """``s_0 … s_{T-1}``: the states each step starts from, ``(T, *M, B, S)``."""
    return torch.cat([s0.unsqueeze(0), states[:-1]])
