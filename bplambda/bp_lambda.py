"""The paper's mathematics in one place: TD errors, eligibility traces, λ-returns.

Notation (docs/paper-bp-lambda.md §1–2): ``lmbda`` is λ, ``gamma`` is γ, ``scale`` is the SG
scale s;

- states ``s_1 … s_T`` (``s_0 = 0``), ``J_t = ∂s_t/∂s_{t-1}``, immediate ``a_t = ∂L_t/∂s_t``;
- synthetic gradient ``g_t = g(s_t)`` with the terminal ``g_T := 0``;
- TD error ``δ_t = (a_t + γ g_t) J_t − g_{t-1}``;
- trace ``e_t = γλ J_t e_{t-1} + ∂g(s_t)/∂θ``; the synthesiser moves along ``Σ_t δ_{t+1} e_t``;
- λ-return ``G^λ_t = (a_{t+1} + γ[(1−λ) g_{t+1} + λ G^λ_{t+1}]) J_{t+1}``, ``G^λ_T := 0``.

The synthesiser regresses ``g(s_t)`` for ``t = 1 … T−1`` (``s_0`` is the constant reset state
and ``s_T`` is terminal), as the official code does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from bplambda.cells import (
    Cell,
    MaskedCell,
    Params,
    derivatives_of_all_steps,
    initial_state,
    previous_states,
)
from bplambda.outputs import Diagnostics, ParamGroups, RuleOutput
from bplambda.readout import SequenceTargets, immediate_gradients
from bplambda.synthesiser import regression_gradient, synthesise

Coefficient = float | Tensor
"""A scalar, or one value per model ``(*M,)`` (e.g. a λ grid stacked with the seeds)."""


def per_model(value: Coefficient, trailing: int) -> Coefficient:
    """Reshape a per-model coefficient ``(*M,)`` to broadcast over ``trailing`` more dims."""
    if isinstance(value, Tensor):
        return value.reshape(*value.shape, *([1] * trailing))
    return value


def backward_sweep(
    cell: Cell,
    rnn: Params,
    inputs: Tensor,
    states: Tensor,
    immediate: Tensor,
    synthetic: Tensor | None = None,
    gamma: Coefficient = 1.0,
    lmbda: Coefficient = 1.0,
    derivatives: Params | None = None,
) -> Tensor:
    """λ-returns ``G^λ_t`` for every state ``s_t``: ``(T, *M, B, S)`` (``G^λ_T = 0``).

    One backward pass of vector-Jacobian products, O(B·S²) per step. With ``synthetic=None``
    (or λ = 1) no bootstrap enters and the result is the true discounted future gradient
    ``Σ_{τ>t} γ^{τ-t-1} ∂L_τ/∂s_t`` (with γ = 1: exactly BPTT's ``∂L_{>t}/∂s_t``).

    inputs ``(T, *M, B, I)``; states, immediate, synthetic ``(T, *M, B, S)``; ``synthetic[-1]``
    must be the terminal zero. ``gamma`` and ``lmbda`` may be per-model tensors ``(*M,)``.
    ``derivatives``: the cell's derivatives of all ``T`` steps (``cell.derivatives(rnn,
    inputs, [s_0, …, s_{T-1}])``), where the caller has them; computed here otherwise.
    """
    gamma, lmbda = per_model(gamma, 2), per_model(lmbda, 2)
    observed = immediate
    if synthetic is not None and not (isinstance(lmbda, float) and lmbda == 1):
        observed = immediate + gamma * (1 - lmbda) * synthetic
    decay = gamma * lmbda
    if not isinstance(decay, Tensor):  # a fill on the device, not an upload (a host sync)
        decay = states.new_full((), decay)
    if derivatives is None:  # of all steps at once
        prev = previous_states(states, initial_state(cell, inputs))
        derivatives = derivatives_of_all_steps(cell, rnn, inputs, prev)
    returns = [torch.zeros_like(states[-1])]
    for k in range(len(states) - 2, -1, -1):
        target = torch.addcmul(observed[k + 1], decay, returns[-1])
        at_k = {name: value[k + 1] for name, value in derivatives.items()}  # J_{k+2}
        returns.append(cell.state_vjp_at(rnn, at_k, target))
    return torch.stack(returns[::-1])


def true_future_gradients(
    cell: Cell,
    rnn: Params,
    inputs: Tensor,
    states: Tensor,
    immediate: Tensor,
    derivatives: Params | None = None,
) -> Tensor:
    """BPTT's ``∂L_{>t}/∂s_t`` for ``t = 1 … T``: ``(T, *M, B, S)``."""
    return backward_sweep(cell, rnn, inputs, states, immediate, derivatives=derivatives)


def synthetic_gradients(synth: Params, states: Tensor) -> Tensor:
    """``g(s_t)`` for every step with the terminal ``g(s_T) := 0``: ``(T, *M, B, S)``."""
    g = synthesise(synth, states)
    g[-1].zero_()  # a kernel; assigning a Python scalar syncs a GPU with the host
    return g


def lambda_return_gradient(
    cell: Cell,
    rnn: Params,
    synth: Params,
    inputs: Tensor,
    states: Tensor,
    immediate: Tensor,
    synthetic: Tensor,
    gamma: Coefficient,
    lmbda: Coefficient,
    derivatives: Params | None = None,
) -> Params:
    """The forward view: gradient of ``Σ_{t<T} mean_b ½‖G^λ_t − g(s_t)‖²`` (targets fixed).

    With θ fixed within the sequence this equals, exactly, minus the summed online update
    ``Σ_t mean_b δ_{t+1} e_t`` of Algorithm 1 (docs/paper-bp-lambda.md §2.4). It is **not** an
    online algorithm (it needs the whole sequence before the backward sweep); it exists because it
    costs O(B·S²) per step instead of the traces' O(B·S⁴). In a front-padded stack
    (:class:`~bplambda.cells.MaskedCell`) only real states are regressed: a padding state is
    the zero reset state of a sequence that has not started (s_0 is never regressed either).
    """
    returns = backward_sweep(
        cell, rnn, inputs, states, immediate, synthetic, gamma, lmbda, derivatives
    )
    real = cell.real_steps(inputs)
    weights = None if real is None else real[:-1]
    return regression_gradient(synth, states[:-1], returns[:-1], weights)


def _add_synthesiser_input_gradient(trace: Tensor, s: Tensor) -> None:
    """``trace += ∂g(s)/∂θ`` in place: adds ``[s; 1]`` on the diagonal ``trace[..., k, k, :]``."""
    s_hat = torch.cat([s, torch.ones_like(s[..., :1])], dim=-1)
    trace.diagonal(dim1=-3, dim2=-2).add_(s_hat.unsqueeze(-1))


def _trace_update(trace: Tensor, delta: Tensor) -> Params:
    """Synthesiser gradient ``−mean_b δ e``.

    delta: ``(*M, B, S)``; trace: ``(*M, B, S, S, S+1)``.
    """
    *model, batch, size, _, width = trace.shape
    flat_trace = trace.reshape(*model, batch * size, size * width)
    update = (delta.reshape(*model, 1, batch * size) @ flat_trace).reshape(*model, size, width)
    update = -update / batch
    return {"weight": update[..., :-1], "bias": update[..., -1]}


def online_bp_lambda(
    cell: Cell,
    params: ParamGroups,
    inputs: Tensor,
    targets: SequenceTargets,
    *,
    gamma: Coefficient,
    lmbda: Coefficient,
    scale: float,
    learn_synthesiser: bool = True,
    apply_synthetic_gradient: bool = True,
    on_step: Callable[[ParamGroups], None] | None = None,
) -> RuleOutput:
    """Accumulate BP(λ) exactly as Algorithm 1: one pass forward in time, eligibility traces.

    params: ``{"rnn", "readout", "synthesiser"}``. The trace has shape ``(*M, B, S, S, S+1)``
    (bias folded in as the last input), so a step costs O(B·S⁴).

    ``on_step=None`` sums every step's gradients and returns them (the official code: one
    optimiser step per sequence). Otherwise ``on_step(grads_t)`` is called during the pass,
    first with the synthesiser's step gradient and then with the RNN's and readout's, and is
    expected to update ``params`` in place (Algorithm 1: every step, the RNN update using the
    freshly updated θ); the returned ``grads`` are then the sums of what was passed.
    """
    if isinstance(cell, MaskedCell):
        raise ValueError(
            "implementation='online' does not support front-padded stacks (MaskedCell): its "
            "traces would regress padding states; use implementation='lambda_return'"
        )
    rnn, readout_params, synth = params["rnn"], params["readout"], params["synthesiser"]
    T = len(inputs)
    s_prev = initial_state(cell, inputs)
    size = s_prev.shape[-1]
    trace = inputs.new_zeros(*s_prev.shape, size, size + 1)
    decay = per_model(gamma * lmbda, 4)  # broadcasts over (B, S, S, S+1)
    gamma_s = per_model(gamma, 2)  # broadcasts over (B, S)
    totals: ParamGroups = {}

    def emit(grads: ParamGroups) -> None:
        for group, tensors in grads.items():
            bucket = totals.setdefault(group, {})
            for name, value in tensors.items():
                bucket[name] = bucket[name] + value if name in bucket else value.clone()
        if on_step is not None:
            on_step(grads)

    if learn_synthesiser:
        totals["synthesiser"] = {name: torch.zeros_like(value) for name, value in synth.items()}
    states, immediates, synthetics, futures, losses = [], [], [], [], []
    J_prev = None
    for k in range(T):
        x = inputs[k]
        s = cell.step(rnn, x, s_prev)
        step_targets = SequenceTargets(
            targets.values[k : k + 1], targets.weights[k : k + 1], targets.kind
        )
        loss, a, readout_grads = immediate_gradients(
            cell, s.unsqueeze(0), readout_params, step_targets
        )
        a = a[0]
        terminal = k == T - 1
        derivatives = cell.derivatives(rnn, x, s_prev)
        if learn_synthesiser:
            J = cell.state_jacobian(rnn, x, s_prev)
            if J_prev is not None:  # s_prev is s_k with k ≥ 1: a regression target exists
                trace = decay * (J_prev @ trace.flatten(-2)).reshape(trace.shape)
                _add_synthesiser_input_gradient(trace, s_prev)
                g_next = torch.zeros_like(s) if terminal else synthesise(synth, s)
                a_td = cell.td_immediate(derivatives, a)
                td_target = ((a_td + gamma_s * g_next).unsqueeze(-2) @ J).squeeze(-2)
                emit({"synthesiser": _trace_update(trace, td_target - synthesise(synth, s_prev))})
            J_prev = J
        g = torch.zeros_like(s) if terminal else synthesise(synth, s)
        future = (
            cell.synthetic_signal(derivatives, scale * g)
            if apply_synthetic_gradient
            else torch.zeros_like(g)
        )
        rnn_grads = cell.param_vjp_at(rnn, derivatives, x, s_prev, a + future)
        emit({"rnn": rnn_grads, "readout": readout_grads})
        for store, value in ((states, s), (immediates, a), (synthetics, g), (futures, future)):
            store.append(value)
        losses.append(loss)
        s_prev = s
    diagnostics = Diagnostics(
        states=torch.stack(states),
        immediate=torch.stack(immediates),
        future_signal=torch.stack(futures),
        synthetic=torch.stack(synthetics),
        applied=torch.arange(T, device=inputs.device) < T - 1,  # g(s_T) := 0
    )
    return RuleOutput(totals, torch.stack(losses).sum(0), diagnostics)
