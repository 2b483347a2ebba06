"""Loss-landscape curvature of the full network (Liu et al. 2022; docs/paper-liu2022.md §4.1,
§6, §7).

- :func:`full_loss`: the *untruncated* network loss per stacked model, ``Σ_t L_t`` plus Liu's
  L2 term. Its Hessian is what is measured, whatever rule trained the net.
- :func:`network_hessian`: ``v ↦ H v`` with respect to the recurrent weights (Liu's choice,
  ``wrt="recurrent"``) or all network parameters (``wrt="all"``), as a :class:`HessianOperator`.
- :func:`power_iteration` and :func:`lanczos`: the top eigenvalue ``λ_max`` of every stacked
  model at once, both returning an :class:`EigenResult`.
- :func:`rule_curvature`: ``c₁ = ⟨v₁, H̃ v₁⟩ / λ₁``, the curvature a learning rule sees along
  the sharp direction (§4.4), by central finite differences of the rule's gradient, with a
  step from :func:`kink_free_step` that flips no ReLU unit.

Shapes: ``*M`` are the model dimensions of stacked models (e.g. ``K`` seeds); a Hessian
operator acts on vectors ``(*M, *shape)``, ``shape`` being the shape of one model's parameter
(``(H, H)`` for ``wrt="recurrent"``, ``(P,)`` flattened for ``wrt="all"``). Stacked models are
independent, so the Hessian of the *summed* per-model loss is block diagonal: one HVP of the
sum is every model's own HVP, and the solvers run all models in lockstep.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from bplambda.cells import Cell, Params, unroll
from bplambda.errors import check_choice
from bplambda.outputs import ParamGroups
from bplambda.readout import SequenceTargets, readout, step_losses
from bplambda.regularisation import l2_penalty
from bplambda.rules import Rule

NETWORK_GROUPS = ("rnn", "readout")
"""The parameter groups the network loss depends on (the synthesiser does not enter it)."""
WRT = ("recurrent", "all")
METHODS = ("double_backward", "forward_over_reverse")
WHICH = ("LA", "SA", "LM")
"""Largest algebraic, smallest algebraic, largest magnitude (what Liu's code measures)."""


class ConvergenceWarning(UserWarning):
    """An eigen-solver hit ``max_iter`` before some models converged."""


def _jvp(function: Callable, primals: tuple[Tensor, ...], tangents: tuple[Tensor, ...]) -> tuple:
    """``torch.func.jvp``, without the FutureWarning "`torch.jit.script` is deprecated" that
    torch raises from its own code the first time it loads its JVP decompositions (torch's
    internals, nothing this package calls; it printed in every notebook 05 run)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"`torch\.jit\.script` is deprecated", FutureWarning)
        return torch.func.jvp(function, primals, tangents)


# ----------------------------------------------------------------------------- the loss
def full_loss(
    cell: Cell, params: ParamGroups, inputs: Tensor, targets: SequenceTargets, l2: float = 0.0
) -> Tensor:
    """The full, untruncated loss ``Σ_t L_t + l2_penalty(params, l2)`` per model: ``(*M,)``.

    params: groups ``rnn`` and ``readout`` (others are ignored); inputs ``(T, *M, B, I)``.
    """
    states = unroll(cell, params["rnn"], inputs)
    loss = step_losses(readout(params["readout"], cell.hidden(states)), targets).sum(0)
    return loss + l2_penalty(params, l2) if l2 else loss


def flatten_parameters(params: ParamGroups, model_ndim: int) -> Tensor:
    """All tensors of ``params`` (groups in order, names in order) as one ``(*M, P)`` vector."""
    return torch.cat(
        [t.flatten(model_ndim) for group in params.values() for t in group.values()], dim=-1
    )


def unflatten_parameters(vector: Tensor, like: ParamGroups, model_ndim: int) -> ParamGroups:
    """Inverse of :func:`flatten_parameters`: ``vector (*M, P)`` shaped as ``like``."""
    sizes = [math.prod(t.shape[model_ndim:]) for g in like.values() for t in g.values()]
    pieces = iter(vector.split(sizes, dim=-1))
    return {
        group: {name: next(pieces).reshape(t.shape) for name, t in tensors.items()}
        for group, tensors in like.items()
    }


# ----------------------------------------------------------------------------- HVPs
@dataclass(frozen=True)
class HessianOperator:
    """The Hessians of stacked per-model losses as one batched linear map ``v ↦ H v``.

    matvec: ``(*M, *shape) → (*M, *shape)``; model ``m``'s block acts on ``v[m]`` alone.
    """

    matvec: Callable[[Tensor], Tensor]
    model_shape: torch.Size
    shape: torch.Size
    dtype: torch.dtype
    device: torch.device

    def __call__(self, v: Tensor) -> Tensor:
        return self.matvec(v)

    @property
    def size(self) -> int:
        """Dimension of one model's block."""
        return math.prod(self.shape)


def hessian_operator(
    loss_fn: Callable[[Tensor], Tensor], weight: Tensor, method: str = "double_backward"
) -> HessianOperator:
    """The Hessian of ``loss_fn`` at ``weight`` as a :class:`HessianOperator`.

    loss_fn: ``(*M, *shape) → (*M,)``, model ``m``'s loss depending on ``weight[m]`` only.
    method: ``"double_backward"`` builds the gradient graph once (``create_graph=True``) and
    reuses it for every HVP (one backward each); ``"forward_over_reverse"`` is
    ``torch.func.jvp(torch.func.grad(Σ loss_fn), (W,), (v,))`` (a forward and a
    forward-over-backward pass per HVP, no graph kept between HVPs).
    """
    check_choice("method", method, METHODS)
    W = weight.detach()
    if method == "double_backward":
        W.requires_grad_()
        with torch.enable_grad():
            loss = loss_fn(W)
            (g,) = torch.autograd.grad(loss.sum(), W, create_graph=True)

        def matvec(v: Tensor) -> Tensor:
            (hv,) = torch.autograd.grad(
                g, W, grad_outputs=v, retain_graph=True, materialize_grads=True
            )
            return hv

    else:
        with torch.no_grad():
            loss = loss_fn(W)
        gradient = torch.func.grad(lambda w: loss_fn(w).sum())

        def matvec(v: Tensor) -> Tensor:
            return _jvp(gradient, (W,), (v,))[1]

    model_shape = loss.shape
    return HessianOperator(matvec, model_shape, W.shape[len(model_shape) :], W.dtype, W.device)


def network_hessian(
    cell: Cell,
    params: ParamGroups,
    inputs: Tensor,
    targets: SequenceTargets,
    l2: float = 0.0,
    wrt: str = "recurrent",
    method: str = "double_backward",
) -> HessianOperator:
    """The Hessian of :func:`full_loss` (with its L2 term) for every stacked model.

    wrt: ``"recurrent"``: ``∂²L/∂W_hh²`` with all other weights fixed (Liu et al.), vectors
    ``(*M, H, H)``; ``"all"``: every ``rnn`` and ``readout`` parameter, vectors ``(*M, P)``
    ordered as :func:`flatten_parameters` (use :func:`unflatten_parameters` to split them).
    For the rate RNN the masked diagonal of ``W_hh`` carries only the L2 curvature ``l2``.
    """
    check_choice("wrt", wrt, WRT)
    fixed = {g: {k: v.detach() for k, v in params[g].items()} for g in NETWORK_GROUPS}
    if wrt == "recurrent":

        def loss_fn(W: Tensor) -> Tensor:
            rnn = {**fixed["rnn"], "weight_hh": W}
            return full_loss(cell, {**fixed, "rnn": rnn}, inputs, targets, l2)

        return hessian_operator(loss_fn, fixed["rnn"]["weight_hh"], method)
    model_ndim = fixed["rnn"]["weight_hh"].dim() - cell.param_ndim["weight_hh"]

    def flat_loss_fn(w: Tensor) -> Tensor:
        return full_loss(cell, unflatten_parameters(w, fixed, model_ndim), inputs, targets, l2)

    return hessian_operator(flat_loss_fn, flatten_parameters(fixed, model_ndim), method)


# ----------------------------------------------------------------------------- eigen-solvers
@dataclass(frozen=True)
class EigenResult:
    """One eigenpair per stacked model.

    eigenvalue: ``(*M,)``; eigenvector: ``(*M, *shape)``, unit norm per model;
    iterations: ``(*M,)`` HVPs used until the model converged (or ``max_iter``);
    converged: ``(*M,)`` bool.
    """

    eigenvalue: Tensor
    eigenvector: Tensor
    iterations: Tensor
    converged: Tensor


def _vector_dims(op: HessianOperator) -> tuple[int, ...]:
    return tuple(range(-len(op.shape), 0))


def _start_vector(op: HessianOperator, seed: int) -> Tensor:
    """``v₀ ~ N(0, I)`` normalised per model, drawn on the CPU (the same on every device)."""
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(*op.model_shape, *op.shape, generator=generator, dtype=op.dtype)
    v = v.to(op.device)
    return v / torch.linalg.vector_norm(v, dim=_vector_dims(op), keepdim=True)


def _warn_unconverged(solver: str, converged: Tensor, broken: Tensor, max_iter: int) -> None:
    missing = int((~converged).sum())
    if missing:
        why = f" ({int(broken.sum())} not finite: a diverged net)" if broken.any() else ""
        warnings.warn(
            f"{solver}: {missing} of {converged.numel()} models did not converge within "
            f"max_iter={max_iter}{why}; raise max_iter or rtol",
            ConvergenceWarning,
            stacklevel=3,
        )


def power_iteration(
    op: HessianOperator,
    max_iter: int = 500,
    rtol: float = 1e-4,
    shift: float = 0.0,
    seed: int = 0,
) -> EigenResult:
    """The largest-magnitude eigenvalue of every model's block, sign kept.

    Iterates on ``H + shift·I`` (a shift ``c`` makes the largest *algebraic* eigenvalue
    dominate when ``c`` exceeds the magnitude of the most negative one) and subtracts ``c``:
    ``λ_k = ⟨v, H v⟩`` with the unit ``v`` *before* normalising ``H v`` (Rayleigh quotient),
    then ``v ← (H + cI) v / ‖(H + cI) v‖``. A model stops when
    ``|λ_k − λ_{k−1}| ≤ rtol·|λ_k|`` (or at once, unconverged, where λ is not finite: a
    diverged net); all models run in lockstep until all have stopped or
    ``max_iter`` HVPs (a :class:`ConvergenceWarning` then names how many did not converge).
    Unlike Liu's code (``λ = ‖H v‖ ≥ 0``), a dominant negative eigenvalue stays negative.
    """
    dims = _vector_dims(op)
    v = _start_vector(op, seed)
    value = v.new_full(op.model_shape, math.nan)
    vector = v
    iterations = torch.zeros(op.model_shape, dtype=torch.long, device=op.device)
    converged = torch.zeros(op.model_shape, dtype=torch.bool, device=op.device)
    broken = torch.zeros_like(converged)  # a non-finite model (e.g. diverged): stopped at once
    previous = value
    for k in range(1, max_iter + 1):
        hv = op(v) + shift * v if shift else op(v)
        lam = (v * hv).sum(dims) - shift
        active = ~(converged | broken)
        value = torch.where(active, lam, value)
        vector = torch.where(active.reshape(*active.shape, *[1] * len(dims)), v, vector)
        iterations = torch.where(active, k, iterations)
        converged = converged | (active & ((lam - previous).abs() <= rtol * lam.abs()))
        broken = broken | ~torch.isfinite(lam)
        if (converged | broken).all():
            break
        previous = lam
        norm = torch.linalg.vector_norm(hv, dim=dims, keepdim=True)
        v = torch.where(norm > 0, hv / norm, v)
    _warn_unconverged("power_iteration", converged, broken, max_iter)
    return EigenResult(value, vector, iterations, converged)


def _pick(theta: Tensor, which: str) -> Tensor:
    """Index of the wanted Ritz value in ascending ``theta (*M, j)``: ``(*M,)``."""
    if which == "LA":
        return theta.new_full(theta.shape[:-1], theta.shape[-1] - 1, dtype=torch.long)
    if which == "SA":
        return theta.new_zeros(theta.shape[:-1], dtype=torch.long)
    return theta.abs().argmax(-1)


def lanczos(
    op: HessianOperator,
    which: str = "LA",
    max_iter: int = 100,
    rtol: float = 1e-4,
    seed: int = 0,
) -> EigenResult:
    """One extreme eigenpair of every model's block by Lanczos with full reorthogonalisation,
    all models in lockstep (batched Gram–Schmidt, batched ``eigh`` of the tridiagonals).

    which: ``"LA"`` largest algebraic, ``"SA"`` smallest, ``"LM"`` largest magnitude.
    A model stops (at once, unconverged, where its Ritz value is not finite) when its Ritz
    pair's residual ``‖H y − θ y‖ = β_j |s_j|`` is
    ``≤ rtol·|θ|`` (or the Krylov space is the whole block); at most
    ``min(max_iter, op.size)`` HVPs. Memory: the basis, ``(*M, max_iter, P)``.
    """
    check_choice("which", which, WHICH)
    M, P = op.model_shape, op.size
    steps = min(max_iter, P)
    q = _start_vector(op, seed).reshape(*M, P)
    basis = q.new_zeros(*M, steps, P)
    alpha = q.new_zeros(*M, steps)
    beta = q.new_zeros(*M, steps)
    coefficients = q.new_zeros(*M, steps)  # the Ritz vector in the basis, frozen at convergence
    value = q.new_full(M, math.nan)
    iterations = torch.zeros(M, dtype=torch.long, device=op.device)
    converged = torch.zeros(M, dtype=torch.bool, device=op.device)
    broken = torch.zeros_like(converged)  # a non-finite model: stopped, reported unconverged
    for j in range(steps):
        basis[..., j, :] = q
        w = op(q.reshape(*M, *op.shape)).reshape(*M, P)
        alpha[..., j] = (q * w).sum(-1)
        Q = basis[..., : j + 1, :]
        for _ in range(2):  # full reorthogonalisation, twice is enough
            w = w - ((Q @ w.unsqueeze(-1)).mT @ Q).squeeze(-2)
        beta[..., j] = torch.linalg.vector_norm(w, dim=-1)
        broken = broken | ~torch.isfinite(alpha[..., j]) | ~torch.isfinite(beta[..., j])
        tridiagonal = (
            torch.diag_embed(alpha[..., : j + 1])
            + torch.diag_embed(beta[..., :j], offset=1)
            + torch.diag_embed(beta[..., :j], offset=-1)
        )
        finite = torch.where(broken[..., None, None], 0.0, tridiagonal)  # eigh refuses NaN
        theta, S = torch.linalg.eigh(finite)
        index = _pick(theta, which)
        ritz = theta.gather(-1, index.unsqueeze(-1)).squeeze(-1)
        ritz = torch.where(broken, torch.nan, ritz)
        s = S.gather(-1, index.reshape(*M, 1, 1).expand(*M, j + 1, 1)).squeeze(-1)
        residual = beta[..., j] * s[..., -1].abs()
        active = ~(converged | broken)
        value = torch.where(active, ritz, value)
        iterations = torch.where(active, j + 1, iterations)
        coefficients[..., : j + 1] = torch.where(
            active.unsqueeze(-1), s, coefficients[..., : j + 1]
        )
        converged = converged | (active & ((residual <= rtol * ritz.abs()) | (j + 1 == P)))
        if (converged | broken).all():
            break
        b = beta[..., j].unsqueeze(-1)
        q = torch.where(b > 0, w / b, torch.zeros_like(w))
    _warn_unconverged("lanczos", converged, broken, steps)
    vector = (coefficients.unsqueeze(-2) @ basis).squeeze(-2).reshape(*M, *op.shape)
    return EigenResult(value, vector, iterations, converged)


# ----------------------------------------------------------------------------- rule curvature
def rule_gradient_fn(
    rule: Rule,
    cell: Cell,
    params: ParamGroups,
    inputs: Tensor,
    targets: SequenceTargets,
    l2: float = 0.0,
) -> Callable[[Tensor], Tensor]:
    """``W ↦ G̃(W)``: the rule's gradient of ``W_hh`` (all else fixed) plus the L2 gradient
    ``l2·W``, for :func:`rule_curvature`. ``W``: ``(*M, H, H)``."""

    def gradient(W: Tensor) -> Tensor:
        rnn: Params = {**params["rnn"], "weight_hh": W}
        out = rule.gradients(cell, {**params, "rnn": rnn}, inputs, targets)
        return out.grads["rnn"]["weight_hh"] + l2 * W

    return gradient


def kink_free_step(
    cell: Cell,
    rnn: Params,
    inputs: Tensor,
    direction: Tensor,
    largest: float,
    safety: float = 4.0,
    smallest: float = 1e-10,
) -> Tensor:
    """A finite-difference step along ``W_hh + ε·direction`` that crosses none of the cell's
    kinks, per model: ``(*M,)``.

    A ReLU unit whose pre-activation changes sign inside the step adds the gradient's jump
    divided by 2ε to a central difference, not curvature (measured on seq-MNIST at ε = 1e-6:
    BPTT's c₁ came out −94 instead of 1). To first order the kink ``k`` is reached at
    ``ε = |k| / |k̇|``, ``k̇`` its derivative along ``direction`` (a forward-mode JVP through
    the unrolled states); the step is the smallest such ε over every step, example and unit,
    divided by ``safety`` (for the second-order term), at most ``largest``, at least
    ``smallest`` (below it float64 rounding, ~1e-16/ε relative, would dominate).

    rnn: the cell's parameters ``(*M, ·)``; inputs: ``(T, *M, B, I)``; direction: like
    ``rnn["weight_hh"]``. A smooth cell (``cell.kinks`` is ``None``) gets ``largest``.
    """
    model_shape = direction.shape[: direction.dim() - cell.param_ndim["weight_hh"]]

    def states(weight: Tensor) -> Tensor:
        return unroll(cell, {**rnn, "weight_hh": weight}, inputs)

    s, s_dot = _jvp(states, (rnn["weight_hh"].detach(),), (direction.detach(),))
    if cell.kinks(s) is None:
        return inputs.new_full(model_shape, largest)
    value, tangent = _jvp(cell.kinks, (s,), (s_dot,))
    reach = (value.abs() / tangent.abs()).where(tangent != 0, torch.inf)
    model_dims = len(model_shape)
    per_model = reach.movedim(0, model_dims).flatten(model_dims).amin(-1)
    return (per_model / safety).clamp(min=smallest, max=largest)


def rule_curvature(
    gradient_fn: Callable[[Tensor], Tensor],
    weight: Tensor,
    direction: Tensor,
    eigenvalue: Tensor,
    eps: float | Tensor = 1e-3,
) -> Tensor:
    """``c₁ = ⟨v, (G̃(W+εv) − G̃(W−εv)) / 2ε⟩ / (‖v‖² λ)`` per model: ``(*M,)``.

    gradient_fn: ``(*M, *shape) → (*M, *shape)``, a rule's gradient ``G̃`` of ``weight``
    (e.g. :func:`rule_gradient_fn`); weight, direction: ``(*M, *shape)`` (``direction`` is
    the sharp direction ``v₁``, e.g. ``EigenResult.eigenvector``); eigenvalue: ``(*M,)``;
    eps: one step, or one per model ``(*M,)`` (e.g. :func:`kink_free_step`, needed where the
    cell has kinks). Central finite differences, not double backprop: a rule's
    stop-gradients would also block the tangent (docs/paper-liu2022.md §6). Meant for float64 (in
    float32 the difference is dominated by rounding). ``c₁ = 1`` for the exact gradient of
    the measured loss.
    """
    dims = tuple(range(eigenvalue.dim(), weight.dim()))
    v, W = direction.detach(), weight.detach()
    step = torch.as_tensor(eps, dtype=W.dtype, device=W.device)
    step = step.reshape(step.shape + (1,) * (W.dim() - step.dim()))
    difference = (gradient_fn(W + step * v) - gradient_fn(W - step * v)) / (2 * step)
    return (v * difference).sum(dims) / ((v * v).sum(dims) * eigenvalue)
