"""The LSTM through torch's fused kernel (``torch._VF.lstm``, the kernel behind ``nn.LSTM``:
oneDNN on a CPU, cuDNN on a GPU), for the rules that differentiate the unrolled network.

The hand-written step (:class:`~bplambda.cells.LSTM`) costs about ten small operations per
step, each recorded by autograd; the kernel runs a whole sequence, forward and backward, in one
call per model. It computes the same function: gates ordered (i, f, g, o), ``c_t = f c_{t-1} +
i g``, ``h_t = o tanh(c_t)``, one bias (passed as ``b_ih``, with a zero ``b_hh``). It exposes
``h_t`` for every step but ``c_t`` only at the end, so the rules running it keep their per-step
diagnostics lazy (:class:`~bplambda.outputs.RuleOutput`).

Stacked models (``*M``) run one kernel call each, on their own slice of the weights; in a
front-padded stack (:class:`~bplambda.cells.MaskedCell`) each model runs only its own real
steps (its state is zero on the padding, exactly as the masked step holds it).

The choice is automatic (:func:`fused_starts`, and no more calls than steps:
:func:`kernel_calls`); ``kernel="reference"`` forces the hand-written step (the tests compare
the two).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bplambda.cells import LSTM, Cell, FaithfulLSTM, MaskedCell, Params

KERNELS = ("auto", "fused", "reference")
"""``"auto"``: the fused kernel where :func:`fused_starts` allows it and it is the faster;
``"fused"``: the kernel wherever it can run; ``"reference"``: always the hand-written step."""

FUSED_CELLS = (LSTM, FaithfulLSTM)
"""The cells the kernel computes. The faithful LSTM steps exactly as the LSTM (its quirks are
in BP(λ)'s Jacobian only), so autograd through the kernel is exact for both. Exact types: a
subclass may change the step."""

FUSED_DEVICES = ("cpu", "cuda")


def check_kernel(kernel: str) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"kernel={kernel!r} is unknown; choose one of {list(KERNELS)}")


def fused_starts(
    cell: Cell, inputs: Tensor, kernel: str = "auto", cuts: Sequence[list[int]] | None = None
) -> list[int] | None:
    """Where each model's real steps begin (models flattened: ``prod(*M)`` entries, one for
    unstacked inputs), or ``None`` where the reference path runs: ``kernel="reference"``, a
    cell the kernel does not compute, a device without it, a :class:`MaskedCell` whose
    padding is not a per-model prefix (the same for every batch element), or (``"auto"``)
    more kernel calls than steps for the chunk starts ``cuts`` of every model
    (:func:`kernel_calls`).

    inputs: ``(T, *M, B, I)``. A masked stack reads its padding on the host (one sync).
    """
    inner = cell.inner if isinstance(cell, MaskedCell) else cell
    if kernel == "reference" or type(inner) not in FUSED_CELLS:
        return None
    if inputs.device.type not in FUSED_DEVICES:
        return None
    T, models = len(inputs), math.prod(inputs.shape[1:-2])
    starts = [0] * models if not isinstance(cell, MaskedCell) else _padding(cell, inputs)
    if starts is None or (kernel == "auto" and kernel_calls(T, starts, cuts or [[]]) > T):
        return None
    return starts


def _padding(cell: MaskedCell, inputs: Tensor) -> list[int] | None:
    """Each model's first real step in a front-padded stack; ``None`` where the padding is not
    a per-model prefix."""
    T, models, batch = len(inputs), math.prod(inputs.shape[1:-2]), inputs.shape[-2]
    real = cell.real_steps(inputs).reshape(T, models, batch)
    count = real[:, :, 0].sum(0)  # (models,) real steps
    step = torch.arange(T, device=inputs.device, dtype=real.dtype).unsqueeze(1)
    prefix = (step >= T - count).to(real.dtype)  # (T, models): padding first, then real
    front_padded = (real == prefix.unsqueeze(-1)).all().to(count.dtype)
    *counts, ok = torch.cat([count, front_padded.unsqueeze(0)]).tolist()
    return [T - int(c) for c in counts] if ok else None


def model_slices(cell: Cell, rnn: Params, inputs: Tensor) -> tuple[list[Params], Tensor]:
    """Each model's weights (views of ``rnn``'s stacked tensors, so gradients reach them) and
    the inputs the LSTM sees (a mask flag dropped), models flattened: ``(T, K, B, I)``."""
    T, batch = len(inputs), inputs.shape[-2]
    models = math.prod(inputs.shape[1:-2])
    if isinstance(cell, MaskedCell):
        inputs = inputs[..., :-1]
    flat = {name: value.reshape(models, *value.shape[value.dim() - 1 - (name != "bias") :])
            for name, value in rnn.items()}  # fmt: skip
    per_model = [{name: value[k] for name, value in flat.items()} for k in range(models)]
    return per_model, inputs.reshape(T, models, batch, inputs.shape[-1])


def lstm_sequence(
    rnn: Params, x: Tensor, h0: Tensor, c0: Tensor, train: bool = True
) -> tuple[Tensor, Tensor, Tensor]:
    """One model through the kernel: ``x (T, B, I)``, ``h0, c0 (B, H)`` → hidden
    ``(T, B, H)``, ``h_T`` and ``c_T`` ``(B, H)``; ``train=False`` where no graph is needed."""
    weights = (rnn["weight_ih"], rnn["weight_hh"], rnn["bias"], torch.zeros_like(rnn["bias"]))
    hidden, h, c = torch._VF.lstm(
        x, (h0.unsqueeze(0), c0.unsqueeze(0)), weights, True, 1, 0.0, train, False, False
    )
    return hidden, h[0], c[0]


@dataclass(frozen=True)
class Segment:
    """One kernel call of one model: steps ``start … stop-1`` (0-based inputs)."""

    start: int
    stop: int


def segments(T: int, start: int, cuts: list[int]) -> list[Segment]:
    """The calls a model with real steps from ``start`` and chunks starting at ``cuts`` makes
    (cuts inside the padding fall away: the state there is zero anyway)."""
    bounds = [start, *(c for c in cuts if c > start), T]
    return [Segment(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def kernel_calls(T: int, starts: list[int], cuts: Sequence[list[int]]) -> int:
    """The kernel calls a batch makes: one per model and chunk. Each call has a fixed cost
    that the step loop, batched over all models, pays once per step instead, so where a
    stack has more calls than steps (short windows, many models) the step loop is faster
    (``make bench``'s peer table)."""
    if len(cuts) == 1:  # one window for every model
        cuts = list(cuts) * len(starts)
    return sum(len(segments(T, start, model)) for start, model in zip(starts, cuts))


@dataclass(frozen=True)
class Unrolled:
    """A forward pass with its graph, what truncated backprop builds its objective from
    (``C`` chunk starts ``c > 0`` of any model, in increasing order).

    hidden: ``(T, *M, B, H)``, what the readout sees.
    carries: the leaves the graph starts from at the chunk starts.
    carry_values: ``(C, *M, B, S)`` their values (zero where a model does not start a chunk).
    ends: ``(C, *M, B, S)`` the states ``s_{c-1}`` before every chunk start, in the graph.
    assemble: gradients with respect to ``carries`` → ``(C, *M, B, S)``.
    """

    hidden: Tensor
    carries: list[Tensor]
    carry_values: Tensor
    ends: Tensor
    assemble: Callable[[Sequence[Tensor]], Tensor]


def fused_unroll(
    cell: Cell, rnn: Params, inputs: Tensor, cuts: Sequence[list[int]], starts: list[int]
) -> Unrolled:
    """Every model through the kernel, a call per chunk (the state detached between them).

    cuts: per flattened model, the chunk starts ``c > 0`` (:func:`chunk_starts` of its
    window); starts: per model, its first real step (:func:`fused_starts`).
    """
    T, model_shape = len(inputs), inputs.shape[1:-2]
    per_model, x = model_slices(cell, rnn, inputs)
    batch, H, S = x.shape[2], cell.hidden_size, cell.state_size
    index = {c: j for j, c in enumerate(sorted({c for model in cuts for c in model}))}
    zero_state = x.new_zeros(batch, S)
    hidden, ends, carries, slots = [], [], [], []
    for k, (weights, start) in enumerate(zip(per_model, starts)):
        own_hidden = [x.new_zeros(min(start, T), batch, H)]  # padding: zero state
        own_ends = [zero_state] * len(index)
        h = c = zero_state[:, :H]
        for segment in segments(T, start, cuts[k]):
            if segment.start > start:  # a chunk start: the state goes on detached
                own_ends[index[segment.start]] = torch.cat([h, c], dim=-1)
                h, c = (v.detach().requires_grad_() for v in (h, c))
                carries += [h, c]
                slots.append((index[segment.start], k))
            out, h, c = lstm_sequence(weights, x[segment.start : segment.stop, k], h, c)
            own_hidden.append(out)
        hidden.append(torch.cat(own_hidden))
        ends.append(torch.stack(own_ends) if index else zero_state.new_zeros(0, batch, S))
    ends_shape = (len(index), *model_shape, batch, S)

    def assemble(grads: Sequence[Tensor]) -> Tensor:
        out = x.new_zeros(len(index), len(per_model), batch, S)
        for (j, k), h, c in zip(slots, grads[::2], grads[1::2]):
            out[j, k] = torch.cat([h, c], dim=-1)
        return out.reshape(ends_shape)

    return Unrolled(
        hidden=torch.stack(hidden, dim=1).reshape(T, *model_shape, batch, H),
        carries=carries,
        carry_values=assemble([v.detach() for v in carries]),
        ends=torch.stack(ends, dim=1).reshape(ends_shape),
        assemble=assemble,
    )
