"""Curvature of the full network (Liu et al. 2022): HVPs against torch.func.hessian and finite
differences, λ_max against a dense eigvalsh, stacked = separate, and c₁ with an exact rule
(c₁ = 1) and a truncated one (c₁ ≠ 1). All float64, tiny sizes."""

from __future__ import annotations

import pytest
import torch
from conftest import Problem, make_problem, model_of, relative_error, targets_of

from bplambda import make_rule
from bplambda.cells import make_cell, unroll
from bplambda.curvature import (
    ConvergenceWarning,
    EigenResult,
    flatten_parameters,
    full_loss,
    hessian_operator,
    kink_free_step,
    lanczos,
    network_hessian,
    power_iteration,
    rule_curvature,
    rule_gradient_fn,
    unflatten_parameters,
)
from bplambda.readout import SequenceTargets
from bplambda.regularisation import l2_penalty

L2 = 1e-2  # Liu et al.'s reg_l2
TIGHT = {"rtol": 1e-12, "max_iter": 3000}
CELLS = {  # id: (cell name, options, loss)
    "rate_a0_ce_final": ("rate_rnn", {"alpha": 0.0}, "cross_entropy"),  # Liu's seq-MNIST
    "rate_a0.8": ("rate_rnn", {"alpha": 0.8}, "mse"),
    "tanh": ("tanh_rnn", {}, "mse"),
}


def problem(case: str, seed: int = 0, model_shape: tuple[int, ...] = (), T: int = 5) -> Problem:
    """N = 6, I = 3, B = 4; the cross-entropy case has its loss at the final step only."""
    name, options, loss = CELLS[case]
    p = make_problem(
        name, T=T, batch=4, seed=seed, loss=loss, model_shape=model_shape,
        input_size=3, hidden_size=6,
    )  # fmt: skip
    p.cell = make_cell(name, 3, 6, **options)
    if loss == "cross_entropy":
        final = torch.zeros(T, dtype=torch.float64)
        final[-1] = 1
        p.targets = SequenceTargets(p.targets.values, final, loss)
    return p


def flat_loss(p: Problem, wrt: str):
    """The oracle's view: one model's loss as a function of one flat vector, and the point."""
    fixed = {g: p.params[g] for g in ("rnn", "readout")}
    if wrt == "recurrent":
        W = fixed["rnn"]["weight_hh"]

        def f(w):
            rnn = {**fixed["rnn"], "weight_hh": w.reshape(W.shape)}
            return full_loss(p.cell, {**fixed, "rnn": rnn}, p.inputs, p.targets, L2)

        return f, W.flatten()
    return (
        lambda w: full_loss(p.cell, unflatten_parameters(w, fixed, 0), p.inputs, p.targets, L2),
        flatten_parameters(fixed, 0),
    )


def dense_hessian(p: Problem, wrt: str = "recurrent") -> torch.Tensor:
    f, w = flat_loss(p, wrt)
    return torch.func.hessian(f)(w)


def random_like(t: torch.Tensor, seed: int) -> torch.Tensor:
    return torch.randn(t.shape, generator=torch.Generator().manual_seed(seed), dtype=t.dtype)


# ----------------------------------------------------------------------------- the loss
def test_full_loss_is_the_bptt_loss_plus_liu_l2_on_weights_only():
    p = problem("tanh", model_shape=(2,))
    rnn, out = p.params["rnn"], p.params["readout"]
    expected_l2 = 0.5 * L2 * sum(w.square().sum((-2, -1)) for w in
                                 (rnn["weight_ih"], rnn["weight_hh"], out["weight"]))  # fmt: skip
    assert relative_error(l2_penalty(p.params, L2), expected_l2) < 1e-14  # biases excluded
    bptt = make_rule("bptt").gradients(p.cell, p.params, p.inputs, p.targets)
    loss = full_loss(p.cell, p.params, p.inputs, p.targets, L2)
    assert loss.shape == (2,)
    assert relative_error(loss, bptt.loss + expected_l2) < 1e-14
    W = rnn["weight_hh"].clone().requires_grad_()
    params = {**p.params, "rnn": {**rnn, "weight_hh": W}}
    (grad,) = torch.autograd.grad(full_loss(p.cell, params, p.inputs, p.targets, L2).sum(), W)
    assert relative_error(grad, bptt.grads["rnn"]["weight_hh"] + L2 * W.detach()) < 1e-12


def test_flatten_and_unflatten_are_inverse():
    p = problem("tanh", model_shape=(3,))
    groups = {g: p.params[g] for g in ("rnn", "readout")}
    flat = flatten_parameters(groups, 1)
    assert flat.shape == (3, sum(t[0].numel() for g in groups.values() for t in g.values()))
    back = unflatten_parameters(flat, groups, 1)
    assert all(torch.equal(back[g][k], groups[g][k]) for g in groups for k in groups[g])


# ----------------------------------------------------------------------------- HVPs
@pytest.mark.parametrize("method", ["double_backward", "forward_over_reverse"])
@pytest.mark.parametrize("wrt", ["recurrent", "all"])
@pytest.mark.parametrize("case", list(CELLS))
def test_hvp_equals_the_dense_hessian_times_v(case, wrt, method):
    p = problem(case)
    op = network_hessian(p.cell, p.params, p.inputs, p.targets, L2, wrt, method)
    H = dense_hessian(p, wrt)
    assert op.size == H.shape[0] and op.model_shape == ()
    v = random_like(torch.empty(op.shape, dtype=torch.float64), seed=1)
    assert relative_error(op(v).flatten(), H @ v.flatten()) < 1e-12
    if case.startswith("rate") and wrt == "recurrent":  # masked diagonal: only the L2 curvature
        diagonal = torch.eye(6, dtype=torch.bool).flatten()
        assert torch.allclose(H[diagonal][:, diagonal], L2 * torch.eye(6, dtype=torch.float64))
        assert H[diagonal][:, ~diagonal].abs().max() == 0


@pytest.mark.parametrize("case", list(CELLS))
def test_hvp_matches_finite_differences_of_the_gradient(case):
    p = problem(case)
    op = network_hessian(p.cell, p.params, p.inputs, p.targets, L2)
    f, w = flat_loss(p, "recurrent")
    v, eps = random_like(w, seed=2), 1e-5
    fd = (torch.func.grad(f)(w + eps * v) - torch.func.grad(f)(w - eps * v)) / (2 * eps)
    assert relative_error(op(v.reshape(op.shape)).flatten(), fd) < 1e-7


def test_double_backward_builds_the_gradient_graph_once():
    p = problem("rate_a0.8")
    calls = []

    def loss_fn(W):
        calls.append(1)
        rnn = {**p.params["rnn"], "weight_hh": W}
        return full_loss(p.cell, {**p.params, "rnn": rnn}, p.inputs, p.targets, L2)

    op = hessian_operator(loss_fn, p.params["rnn"]["weight_hh"])
    v = random_like(p.params["rnn"]["weight_hh"], seed=3)
    first = op(v)
    assert torch.equal(op(v), first) and len(calls) == 1


@pytest.mark.parametrize("wrt", ["recurrent", "all"])
def test_stacked_hvp_is_every_models_own_hvp(wrt):
    p = problem("rate_a0.8", model_shape=(3,))
    op = network_hessian(p.cell, p.params, p.inputs, p.targets, L2, wrt)
    assert op.model_shape == (3,)
    v = random_like(torch.empty(3, *op.shape, dtype=torch.float64), seed=4)
    stacked = op(v)
    for k in range(3):
        alone, targets = model_of(p.params, k), targets_of(p.targets, k)
        op_k = network_hessian(p.cell, alone, p.inputs[:, k], targets, L2, wrt)
        assert relative_error(stacked[k], op_k(v[k])) < 1e-13


# ----------------------------------------------------------------------------- λ_max
def spectrum(p: Problem) -> torch.Tensor:
    return torch.linalg.eigvalsh(dense_hessian(p))


def assert_eigenpair(op, result: EigenResult, expected: float) -> None:
    assert bool(result.converged.all())
    assert abs(result.eigenvalue.item() - expected) <= 1e-6 * abs(expected)
    v = result.eigenvector
    assert abs(v.norm().item() - 1) < 1e-12
    assert (op(v) - result.eigenvalue * v).norm().item() < 1e-5 * abs(expected)


def test_lambda_max_equals_dense_eigvalsh_when_the_top_eigenvalue_dominates():
    p = problem("rate_a0.8", seed=1)
    e = spectrum(p)
    assert e[-1] > 2 * e[0].abs()  # the premise: positive dominant eigenvalue
    op = network_hessian(p.cell, p.params, p.inputs, p.targets, L2)
    assert_eigenpair(op, power_iteration(op, **TIGHT), e[-1].item())
    for which in ("LA", "LM"):
        assert_eigenpair(op, lanczos(op, which, **TIGHT), e[-1].item())
    assert_eigenpair(op, lanczos(op, "SA", **TIGHT), e[0].item())


def test_a_dominant_negative_eigenvalue_keeps_its_sign():
    p = problem("tanh", seed=0)
    e = spectrum(p)
    assert e[0] < -1.5 * e[-1] and e[-1] > 0  # the premise: a negative eigenvalue dominates
    op = network_hessian(p.cell, p.params, p.inputs, p.targets, L2)
    power = power_iteration(op, **TIGHT)
    assert_eigenpair(op, power, e[0].item())  # negative, unlike Liu's ‖Hv‖
    assert_eigenpair(op, lanczos(op, "LM", **TIGHT), e[0].item())
    assert_eigenpair(op, lanczos(op, "SA", **TIGHT), e[0].item())
    assert_eigenpair(op, lanczos(op, "LA", **TIGHT), e[-1].item())
    # a shift past |λ_min| makes power iteration find the largest algebraic one
    assert_eigenpair(op, power_iteration(op, shift=-e[0].item(), **TIGHT), e[-1].item())


def test_solvers_on_stacked_quadratics_with_known_indefinite_spectra():
    """½ wᵀ A_k w with A_k = Q diag(spectrum_k) Qᵀ: the sign and per-model values must survive."""
    spectra = torch.tensor([[-5.0, 3.0, 1.0, 0.5, -0.2, 0.1],
                            [4.0, -2.0, 1.5, 0.3, 0.2, -0.1],
                            [-1.0, 0.9, -0.5, 0.4, 0.3, 0.0]], dtype=torch.float64)  # fmt: skip
    Q, _ = torch.linalg.qr(random_like(torch.empty(3, 6, 6, dtype=torch.float64), seed=5))
    A = Q @ torch.diag_embed(spectra) @ Q.mT
    op = hessian_operator(lambda w: 0.5 * torch.einsum("ki,kij,kj->k", w, A, w),
                          torch.zeros(3, 6, dtype=torch.float64))  # fmt: skip
    lm = spectra.gather(1, spectra.abs().argmax(1, keepdim=True)).squeeze(1)
    for result, expected in [
        (power_iteration(op, **TIGHT), lm),
        (lanczos(op, "LM", **TIGHT), lm),
        (lanczos(op, "LA", **TIGHT), spectra.max(1).values),
        (lanczos(op, "SA", **TIGHT), spectra.min(1).values),
    ]:
        assert result.eigenvalue.shape == (3,) and bool(result.converged.all())
        assert relative_error(result.eigenvalue, expected) < 1e-9
    assert (power_iteration(op, **TIGHT).iterations > 1).all()


@pytest.mark.parametrize("solver", [power_iteration, lanczos])
def test_stacked_models_get_each_models_own_eigenvalue(solver):
    p = problem("rate_a0.8", seed=1, model_shape=(3,))
    op = network_hessian(p.cell, p.params, p.inputs, p.targets, L2)
    stacked = solver(op, **TIGHT)
    assert stacked.eigenvalue.shape == stacked.iterations.shape == (3,)
    assert stacked.eigenvector.shape == (3, 6, 6)
    for k in range(3):
        alone, targets = model_of(p.params, k), targets_of(p.targets, k)
        single = solver(network_hessian(p.cell, alone, p.inputs[:, k], targets, L2), **TIGHT)
        assert abs(stacked.eigenvalue[k] - single.eigenvalue) <= 1e-9 * single.eigenvalue.abs()


@pytest.mark.parametrize("solver", [power_iteration, lanczos], ids=["power", "lanczos"])
def test_a_diverged_model_stops_at_once_and_leaves_the_others_alone(solver):
    p = problem("rate_a0.8", seed=1, model_shape=(3,))
    healthy = solver(network_hessian(p.cell, p.params, p.inputs, p.targets, L2), **TIGHT)
    p.params["rnn"]["weight_hh"][1] = float("nan")  # model 1 diverged
    with pytest.warns(ConvergenceWarning, match="1 of 3"):
        broken = solver(network_hessian(p.cell, p.params, p.inputs, p.targets, L2), **TIGHT)
    assert broken.converged.tolist() == [True, False, True]
    assert broken.iterations[1] <= 2 and torch.isnan(broken.eigenvalue[1])
    for k in (0, 2):
        assert broken.eigenvalue[k] == healthy.eigenvalue[k]


def test_power_iteration_and_lanczos_agree_at_the_default_tolerance():
    p = problem("rate_a0.8", seed=2, model_shape=(2,))
    op = network_hessian(p.cell, p.params, p.inputs, p.targets, L2)
    power, krylov = power_iteration(op), lanczos(op, "LM")
    assert relative_error(power.eigenvalue, krylov.eigenvalue) < 1e-3


def test_lanczos_agrees_with_scipy_eigsh():
    linalg = pytest.importorskip("scipy.sparse.linalg")
    p = problem("tanh", seed=1)
    op = network_hessian(p.cell, p.params, p.inputs, p.targets, L2)

    def matvec(x):
        return op(torch.from_numpy(x.reshape(op.shape))).flatten().numpy()

    operator = linalg.LinearOperator((op.size, op.size), matvec=matvec, dtype=float)
    for which in ("LA", "SA"):
        reference = linalg.eigsh(operator, k=1, which=which, tol=1e-12)[0][0]
        ours = lanczos(op, which, **TIGHT).eigenvalue.item()
        assert abs(ours - reference) <= 1e-8 * abs(reference)


@pytest.mark.parametrize("solver", [power_iteration, lanczos])
def test_seeded_start_and_the_unconverged_warning(solver):
    p = problem("tanh", seed=2, model_shape=(2,))
    op = network_hessian(p.cell, p.params, p.inputs, p.targets, L2)
    a, b, c = solver(op, seed=7), solver(op, seed=7), solver(op, seed=8)
    assert torch.equal(a.eigenvalue, b.eigenvalue) and torch.equal(a.eigenvector, b.eigenvector)
    assert not torch.equal(a.eigenvector, c.eigenvector)
    with pytest.warns(ConvergenceWarning, match="2 of 2 models did not converge"):
        short = solver(op, max_iter=2, rtol=1e-12)
    assert not short.converged.any() and (short.iterations == 2).all()


def test_bad_options_are_refused():
    p = problem("tanh")
    with pytest.raises(ValueError, match="wrt"):
        network_hessian(p.cell, p.params, p.inputs, p.targets, wrt="readout")
    with pytest.raises(ValueError, match="method"):
        network_hessian(p.cell, p.params, p.inputs, p.targets, method="exact")
    with pytest.raises(ValueError, match="which"):
        lanczos(network_hessian(p.cell, p.params, p.inputs, p.targets), which="BE")


# ----------------------------------------------------------------------------- c₁
def test_rule_curvature_is_one_for_bptt_and_not_for_truncated_bptt():
    p = problem("rate_a0.8", seed=1, model_shape=(2,), T=6)
    op = network_hessian(p.cell, p.params, p.inputs, p.targets, L2)
    top = lanczos(op, **TIGHT)
    W = p.params["rnn"]["weight_hh"]

    def c1(rule):
        gradient = rule_gradient_fn(rule, p.cell, p.params, p.inputs, p.targets, L2)
        return rule_curvature(gradient, W, top.eigenvector, top.eigenvalue)

    exact = c1(make_rule("bptt"))
    assert exact.shape == (2,)
    assert (exact - 1).abs().max() < 1e-6
    truncated = c1(make_rule("tbptt", window=1))  # negative control: the leak path is cut
    assert ((truncated - 1).abs() > 0.05).all()


def test_kink_free_step_flips_no_relu_unit_where_a_fixed_step_breaks_c1():
    p = problem("rate_a0_ce_final", seed=3, model_shape=(4,), T=8)
    top = lanczos(network_hessian(p.cell, p.params, p.inputs, p.targets, L2), **TIGHT)
    W, v = p.params["rnn"]["weight_hh"], top.eigenvector
    gradient = rule_gradient_fn(make_rule("bptt"), p.cell, p.params, p.inputs, p.targets, L2)
    wide = rule_curvature(gradient, W, v, top.eigenvalue, eps=0.3)
    assert ((wide - 1).abs() > 0.05).any()  # the hazard: a wide step crosses kinks

    step = kink_free_step(p.cell, p.params["rnn"], p.inputs, v, largest=0.3)
    assert step.shape == (4,) and bool((step > 0).all() and (step < 0.3).all())

    def on(weight: torch.Tensor) -> torch.Tensor:
        return unroll(p.cell, {**p.params["rnn"], "weight_hh": weight}, p.inputs) > 0

    for sign in (1, -1):
        assert torch.equal(on(W + sign * step[:, None, None] * v), on(W))

    narrow = kink_free_step(p.cell, p.params["rnn"], p.inputs, v, largest=1e-5)
    assert (rule_curvature(gradient, W, v, top.eigenvalue, narrow) - 1).abs().max() < 1e-6


def test_a_smooth_cell_gets_the_largest_step():
    p = problem("tanh", model_shape=(2,))
    v = random_like(p.params["rnn"]["weight_hh"], 1)
    step = kink_free_step(p.cell, p.params["rnn"], p.inputs, v, largest=1e-3)
    assert torch.equal(step, torch.full((2,), 1e-3, dtype=torch.float64))
