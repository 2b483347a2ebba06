"""Backpropagation through time within chunks: BPTT (one chunk), truncated BPTT(n) and
Jaderberg et al.'s n-step synthetic gradients, with one window per stacked model where a
window grid trains as one stacked model; the LSTM through torch's fused kernel where that is
faster (:mod:`bplambda.rules.fused`).

Two explicit switches replace the official code's flag combinations:
``learn_synthesiser`` (the synthesiser is trained) and ``apply_synthetic_gradient`` (its output
enters the RNN's learning signal).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from bplambda.bp_lambda import per_model, synthetic_gradients
from bplambda.cells import Cell, Params, initial_state
from bplambda.outputs import Diagnostics, ParamGroups, RuleOutput
from bplambda.readout import (
    SequenceTargets,
    immediate_gradients,
    scored_losses,
)
from bplambda.rules.base import (
    NetworkOnly,
    Rule,
    WithSynthesiser,
    check_one_per_model,
    check_range,
    check_scale,
    check_window,
)
from bplambda.rules.fused import Unrolled, check_kernel, fused_starts, fused_unroll
from bplambda.synthesiser import regression_gradient, synthesise


def chunk_starts(T: int, window: int | None) -> list[int]:
    """0-based step indices where chunks start, aligned to the end of the sequence.

    The first chunk has ``T mod n`` steps (``n`` if that is 0), all others ``n`` (as the
    official code). ``window=None`` or ``n >= T`` gives one chunk.
    """
    if window is None or window >= T:
        return [0]
    first = T % window or window
    return [0, *range(first, T, window)]


Windows = int | tuple[int, ...] | None
"""One window for every model (``None``: no truncation), or one per stacked model."""


@dataclass(frozen=True)
class ChunkLayout:
    """Where the chunks of every model start, as tensors on the run's device (``W``: ``()``
    for one window, ``(K,)`` for one per model).

    ``cut_steps``: the steps ``c > 0`` where some model starts a chunk (a host set, looked
    up at every step);
    ``carry_mask (C, *W)``: which models start one there; ``discount (T, *W)``: γ to the
    steps since the chunk's start; ``bootstrap (C, *W)``: ``γ^n`` where the chunk ending at
    ``c`` itself started at a carry (its n-step target bootstraps from ``g(s_c)``), else 0;
    ``applied (T, *W)``: the chunk ends ``s_{c-1}``, where ``g`` enters the learning signal.
    """

    cut_steps: frozenset[int]
    ends: Tensor
    carry_mask: Tensor
    discount: Tensor
    bootstrap: Tensor
    applied: Tensor
    per_model: bool


@functools.lru_cache(maxsize=64)
def chunk_layout(
    T: int, windows: Windows, gamma: float, dtype: torch.dtype, device: torch.device
) -> ChunkLayout:
    """The :class:`ChunkLayout` of ``windows`` over ``T`` steps, built once per call
    signature (cached), so a training loop uploads nothing per batch."""
    per_model = isinstance(windows, tuple)
    models = windows if per_model else (windows,)
    cuts = torch.zeros(T, len(models), dtype=torch.bool)
    discount = torch.ones(T, len(models), dtype=torch.float64)
    bootstrap = torch.zeros(T, len(models), dtype=torch.float64)
    for m, window in enumerate(models):
        starts = chunk_starts(T, window)
        cuts[starts[1:], m] = True
        for c, c_next in zip(starts, [*starts[1:], T]):
            discount[c:c_next, m] = gamma ** torch.arange(c_next - c, dtype=torch.float64)
        for c_previous, c in zip(starts[1:], starts[2:]):
            bootstrap[c, m] = gamma ** (c - c_previous)
    cut_steps = tuple(int(c) for c in cuts.any(-1).nonzero().flatten())
    applied = torch.cat([cuts[1:], torch.zeros_like(cuts[:1])])
    squeeze = (lambda x: x) if per_model else (lambda x: x.squeeze(-1))
    tensors = {"carry_mask": cuts[list(cut_steps)], "discount": discount,
               "bootstrap": bootstrap[list(cut_steps)], "applied": applied}  # fmt: skip
    return ChunkLayout(
        cut_steps=frozenset(cut_steps),
        ends=torch.tensor([c - 1 for c in cut_steps], dtype=torch.long, device=device),
        per_model=per_model,
        **{
            name: squeeze(value).to(device, torch.bool if value.dtype == torch.bool else dtype)
            for name, value in tensors.items()
        },
    )


def _spread(x: Tensor, ndim: int) -> Tensor:
    """``x`` with trailing singleton dimensions up to ``ndim`` dimensions."""
    return per_model(x, ndim - x.dim())


def _reference_unroll(
    cell: Cell, rnn: Params, inputs: Tensor, layout: ChunkLayout
) -> tuple[Unrolled, list[Tensor]]:
    """The hand-written step in a Python loop (a carry leaf for every model at every chunk
    start of any model; with one window per model, ``where`` keeps the others' graph); also
    every state ``s_1 … s_T`` in the graph, for the diagnostics."""
    state_ndim = inputs.dim() - 1  # (*M, B, S)
    s = initial_state(cell, inputs)
    states: list[Tensor] = []
    carries: list[Tensor] = []
    for k, x in enumerate(inputs):
        if k in layout.cut_steps:
            carry = s.detach().requires_grad_()
            if layout.per_model:
                cut = _spread(layout.carry_mask[len(carries)], state_ndim)
                s = torch.where(cut, carry, s)
            else:
                s = carry
            carries.append(carry)
        s = cell.step(rnn, x, s)
        states.append(s)
    stacked = torch.stack(states)
    unrolled = Unrolled(
        hidden=cell.hidden(stacked),
        carries=carries,
        carry_values=torch.stack(carries).detach() if carries else stacked[:0].detach(),
        ends=stacked[layout.ends],
        assemble=torch.stack,
    )
    return unrolled, states


def _model_cuts(T: int, window: Windows, models: int) -> list[list[int]]:
    """Every flattened model's chunk starts ``c > 0`` (:func:`chunk_starts` of its window)."""
    windows = window if isinstance(window, tuple) else (window,) * models
    return [chunk_starts(T, n)[1:] for n in windows]


def truncated_backprop(
    cell: Cell,
    params: ParamGroups,
    inputs: Tensor,
    targets: SequenceTargets,
    window: Windows,
    synthesiser: SynthesiserUse | None = None,
    kernel: str = "auto",
    reference: Callable[[ParamGroups], RuleOutput] | None = None,
) -> RuleOutput:
    """BPTT within chunks (state detached between them), optionally with n-step SG.

    With ``synthesiser``: ``scale·g(s_end)`` is injected at every chunk end but the last
    (``g(s_T) := 0``), and ``g`` is regressed at each chunk start ``s_c`` (but the first, the
    reset state) toward the bootstrapped n-step target
    ``Σ_{τ=c+1}^{c+n} γ^{τ-c-1} ∂L_τ/∂s_c + γ^n g(s_{c+n}) ∂s_{c+n}/∂s_c`` (docs/paper-bp-lambda.md
    §1.1); in a front-padded stack only at real states (a padding state is a zero reset state).

    ``window`` may be a tuple, one window per stacked model (inputs ``(T, K, B, I)``): at a
    step where only some models start a chunk, the others keep their graph, so a whole window
    grid trains as one stacked model.

    The LSTM runs through torch's fused kernel where :func:`fused_starts` allows (``kernel``);
    its diagnostics are then computed on first access by ``reference(params)`` (default:
    this function on the hand-written step), from a copy of ``params`` taken now. Where the
    kernel does not run, a given ``reference`` computes the whole output.
    """
    T = len(inputs)
    if isinstance(window, tuple):
        check_one_per_model("window", window, inputs)
    gamma = synthesiser.gamma if synthesiser is not None else 1.0
    layout = chunk_layout(T, window, gamma, inputs.dtype, inputs.device)
    synth = params.get("synthesiser") if synthesiser is not None else None
    cuts = _model_cuts(T, window, math.prod(inputs.shape[1:-2]))
    starts = fused_starts(cell, inputs, kernel, cuts)
    if starts is None and reference is not None:
        return reference(params)
    with torch.enable_grad():
        rnn = {k: v.detach().requires_grad_() for k, v in params["rnn"].items()}
        out = {k: v.detach().requires_grad_() for k, v in params["readout"].items()}
        if starts is None:
            unrolled, states = _reference_unroll(cell, rnn, inputs, layout)
        else:
            unrolled, states = fused_unroll(cell, rnn, inputs, cuts, starts), []
        per_step = scored_losses(out, unrolled.hidden, targets)  # (T, *M)
        objective = per_step.sum()
        bootstraps = None
        if synth is not None and layout.cut_steps:  # n-step SG: the chunk ends, g at carries
            bootstraps = synthesise(synth, unrolled.carry_values).detach()
            if synthesiser.apply:
                carry_mask = _spread(layout.carry_mask, unrolled.ends.dim())
                objective = (
                    objective + synthesiser.scale * (carry_mask * bootstraps * unrolled.ends).sum()
                )
        wrt = [*rnn.values(), *out.values(), *states]
        learn = synthesiser is not None and synthesiser.learn and bool(layout.cut_steps)
        grads = torch.autograd.grad(objective, wrt, retain_graph=learn)
        synth_grads = (
            _n_step_regression(
                synth, per_step, unrolled, bootstraps, layout, cell.real_steps(inputs)
            )  # fmt: skip
            if learn
            else None
        )
    n_rnn, n_out = len(rnn), len(out)
    result: ParamGroups = {
        "rnn": dict(zip(rnn, grads[:n_rnn])),
        "readout": dict(zip(out, grads[n_rnn : n_rnn + n_out])),
    }
    if synthesiser is not None and synthesiser.learn:
        result["synthesiser"] = synth_grads or {k: torch.zeros_like(v) for k, v in synth.items()}
    if starts is not None:
        if reference is None:
            reference = functools.partial(
                truncated_backprop, cell, inputs=inputs, targets=targets, window=window,
                synthesiser=synthesiser, kernel="reference",
            )  # fmt: skip
        return RuleOutput(result, per_step.detach().sum(0), later(reference, params))
    stacked = torch.stack(states).detach()
    loss, immediate, _ = immediate_gradients(cell, stacked, params["readout"], targets)
    synthetic = applied = None
    if synthesiser is not None:
        applied = layout.applied
        with torch.no_grad():
            synthetic = synthetic_gradients(synth, stacked)
    future = torch.stack(grads[n_rnn + n_out :]) - immediate
    return RuleOutput(result, loss, Diagnostics(stacked, immediate, future, synthetic, applied))


def later(
    reference: Callable[[ParamGroups], RuleOutput], params: ParamGroups
) -> Callable[[], Diagnostics]:
    """The diagnostics of ``reference(params)``, computed when first called, from a copy of
    ``params`` taken now (an optimiser step may change them in place before they are read)."""
    copy = {group: {k: v.detach().clone() for k, v in p.items()} for group, p in params.items()}
    return lambda: reference(copy).diagnostics


def _n_step_regression(
    synth: Params,
    per_step: Tensor,
    unrolled: Unrolled,
    bootstraps: Tensor,
    layout: ChunkLayout,
    real: Tensor | None,
) -> Params:
    """Regress ``g(s_c)`` at every chunk start toward its n-step target (see above), for the
    models that start a chunk there; ``real (T, *M, B)``: 0 on padding (a carried padding
    state is not regressed)."""
    discount = _spread(layout.discount, per_step.dim())
    objective = (per_step * discount).sum()
    bootstrap = _spread(layout.bootstrap, bootstraps.dim())
    objective = objective + (bootstrap * bootstraps * unrolled.ends).sum()
    targets = torch.zeros_like(unrolled.carry_values)
    if unrolled.carries:  # none where every chunk start is in the padding
        targets = unrolled.assemble(torch.autograd.grad(objective, unrolled.carries))
    with torch.no_grad():
        weights = _spread(layout.carry_mask, unrolled.ends.dim() - 1).to(unrolled.ends.dtype)
        if real is not None:
            weights = weights * real[layout.ends]
        return regression_gradient(synth, unrolled.carry_values, targets, weights)


@dataclass(frozen=True)
class KernelChoice:
    """``kernel``: ``"auto"`` runs the LSTM through torch's fused kernel where the cell and
    device allow it (:mod:`bplambda.rules.fused`; the same gradients to rounding),
    ``"reference"`` always runs the hand-written step (for tests and comparisons)."""

    kernel: str = field(default="auto", kw_only=True)

    def __post_init__(self) -> None:
        check_kernel(self.kernel)


@dataclass(frozen=True)
class SynthesiserUse:
    scale: float
    gamma: float
    learn: bool
    apply: bool


@dataclass(frozen=True)
class BPTT(NetworkOnly, KernelChoice, Rule):
    """Exact backpropagation through time (autograd through the whole sequence)."""

    name = "bptt"

    def batch_gradients(
        self, cell: Cell, params: ParamGroups, inputs: Tensor, targets: SequenceTargets
    ) -> RuleOutput:
        return truncated_backprop(cell, params, inputs, targets, None, kernel=self.kernel)


def true_gradients(
    cell: Cell, params: ParamGroups, inputs: Tensor, targets: SequenceTargets
) -> ParamGroups:
    """The exact gradient of the batch loss (BPTT's), per group: the reference a rule's
    update is compared with (``update_alignment``)."""
    return BPTT().gradients(cell, params, inputs, targets).grads


@dataclass(frozen=True)
class TruncatedBPTT(NetworkOnly, KernelChoice, Rule):
    """BPTT within chunks of ``window`` steps aligned to the sequence end; state detached
    between chunks, so a step receives only the future gradient from its own chunk.

    ``window`` may be a tuple with one n per stacked model (inputs ``(T, K, B, I)``), so a
    whole window grid trains as one batched model.
    """

    window: int | tuple[int, ...]
    name = "tbptt"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_window(self.window)

    def batch_gradients(
        self, cell: Cell, params: ParamGroups, inputs: Tensor, targets: SequenceTargets
    ) -> RuleOutput:
        return truncated_backprop(cell, params, inputs, targets, self.window, kernel=self.kernel)


@dataclass(frozen=True)
class NStepSyntheticGradient(WithSynthesiser, KernelChoice, Rule):
    """Jaderberg et al. (2017): truncated BPTT(n) with ``scale·g(s_end)`` injected at each
    chunk end, and ``g`` regressed at the chunk start toward the n-step bootstrapped target.

    Differences from the official code (documented in docs/differences.md): the bootstrap in the
    target is ``γ^n g`` (as the paper's n-step target), not ``scale·g``; losses inside a chunk are
    discounted by γ in the target; the regression loss is ``½‖·‖²`` (the code's MSE is 2×).

    ``window`` may be a tuple with one n per stacked model, as for :class:`TruncatedBPTT`.
    """

    window: int | tuple[int, ...]
    gamma: float = 1.0
    scale: float = 1.0
    learn_synthesiser: bool = True
    apply_synthetic_gradient: bool = True
    name = "sg"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_window(self.window)
        check_range("gamma", self.gamma, 0.0, 1.0, low_open=True)
        check_scale(self.scale)

    def batch_gradients(
        self, cell: Cell, params: ParamGroups, inputs: Tensor, targets: SequenceTargets
    ) -> RuleOutput:
        use = SynthesiserUse(
            self.scale, self.gamma, self.learn_synthesiser, self.apply_synthetic_gradient
        )
        return truncated_backprop(
            cell, params, inputs, targets, self.window, use, kernel=self.kernel
        )
