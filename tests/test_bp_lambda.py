"""BP(λ): online traces vs the λ-return forward view, and both against exact oracles."""

import itertools

import pytest
import torch
from conftest import (
    CELL_NAMES,
    assert_grads_close,
    assert_stacked_equals_alone,
    make_problem,
    relative_error,
)
from torch.func import jacrev

from bplambda.bp_lambda import backward_sweep, online_bp_lambda
from bplambda.cells import make_cell, unroll
from bplambda.readout import immediate_gradients, readout, step_losses
from bplambda.rules import make_rule
from bplambda.synthesiser import synthesise


@pytest.mark.parametrize(
    "cell_name, lmbda, gamma, T",
    list(itertools.product(CELL_NAMES, [0.0, 0.3, 1.0], [0.9, 1.0], [1, 2, 7])),
)
def test_online_traces_equal_lambda_return(cell_name, lmbda, gamma, T):
    p = make_problem(cell_name, T=T)
    options = {"lmbda": lmbda, "gamma": gamma, "scale": 0.7}
    online = make_rule("bp_lambda", implementation="online", **options)
    forward = make_rule("bp_lambda", implementation="lambda_return", **options)
    a = online.gradients(p.cell, p.params, p.inputs, p.targets)
    b = forward.gradients(p.cell, p.params, p.inputs, p.targets)
    if T == 1:  # no state has a regression target: both updates are exactly zero
        assert all(v.abs().max() == 0 for v in a.grads["synthesiser"].values())
        assert all(v.abs().max() == 0 for v in b.grads["synthesiser"].values())
    else:
        assert_grads_close(a.grads, b.grads, 1e-10, groups=("synthesiser",))
    assert_grads_close(a.grads, b.grads, 1e-10, groups=("rnn", "readout"))
    assert relative_error(a.states, b.states) < 1e-12
    assert relative_error(a.synthetic, b.synthetic) < 1e-12


def test_online_equals_lambda_return_for_stacked_models():
    p = make_problem("lstm", T=5, model_shape=(2,))
    options = {"lmbda": 0.5, "gamma": 0.9}
    a = make_rule("bp_lambda", implementation="online", **options)
    b = make_rule("bp_lambda", **options)
    ga = a.gradients(p.cell, p.params, p.inputs, p.targets).grads
    gb = b.gradients(p.cell, p.params, p.inputs, p.targets).grads
    assert_grads_close(ga, gb, 1e-10)


def _autograd_future_gradients(p):
    """∂(Σ_{τ>t} L_τ)/∂s_t by autograd, one t at a time."""
    rnn = {k: v.clone().requires_grad_() for k, v in p.params["rnn"].items()}
    with torch.enable_grad():
        s = torch.zeros(*p.inputs.shape[1:-1], p.cell.state_size, dtype=torch.float64)
        states = []
        for x in p.inputs:
            s = p.cell.step(rnn, x, s)
            states.append(s)
        per_step = step_losses(
            readout(p.params["readout"], p.cell.hidden(torch.stack(states))), p.targets
        )
        T = len(states)
        future = []
        for t in range(T):
            if t == T - 1:
                future.append(torch.zeros_like(states[t]))
            else:
                (g,) = torch.autograd.grad(per_step[t + 1 :].sum(), states[t], retain_graph=True)
                future.append(g)
    return torch.stack(future)


def test_lambda_one_gamma_one_return_is_the_true_future_gradient(cell_name):
    p = make_problem(cell_name, T=6)
    rnn = p.params["rnn"]
    states = unroll(p.cell, rnn, p.inputs)
    _, immediate, _ = immediate_gradients(p.cell, states, p.params["readout"], p.targets)
    synthetic = synthesise(p.params["synthesiser"], states)  # must be ignored at λ = 1
    returns = backward_sweep(p.cell, rnn, p.inputs, states, immediate, synthetic, gamma=1, lmbda=1)
    expected = _autograd_future_gradients(p)
    assert relative_error(returns, expected) < 1e-12
    # negative control: at λ = 0 the bootstrap enters and the return is a different vector
    biased = backward_sweep(p.cell, rnn, p.inputs, states, immediate, synthetic, gamma=1, lmbda=0)
    assert relative_error(biased, expected) > 1e-3


def test_lambda_zero_and_one_give_different_updates(cell_name):
    p = make_problem(cell_name, T=5)
    zero = make_rule("bp_lambda", lmbda=0.0).gradients(p.cell, p.params, p.inputs, p.targets)
    one = make_rule("bp_lambda", lmbda=1.0).gradients(p.cell, p.params, p.inputs, p.targets)
    for name in ("weight", "bias"):
        err = relative_error(zero.grads["synthesiser"][name], one.grads["synthesiser"][name])
        assert err > 1e-3


@pytest.mark.parametrize("implementation", ["online", "lambda_return"])
def test_zero_synthesiser_gives_exactly_the_immediate_gradient_update(cell_name, implementation):
    p = make_problem(cell_name, T=5)
    p.params["synthesiser"] = {k: torch.zeros_like(v) for k, v in p.params["synthesiser"].items()}
    rule = make_rule("bp_lambda", scale=1.0, implementation=implementation)
    out = rule.gradients(p.cell, p.params, p.inputs, p.targets)
    # immediate-only: Σ_t ∂L_t/∂s_t · ∂s_t/∂Ψ|local, built independently step by step
    rnn = {k: v.clone().requires_grad_() for k, v in p.params["rnn"].items()}
    s_prev = torch.zeros(*p.inputs.shape[1:-1], p.cell.state_size, dtype=torch.float64)
    total = 0.0
    for t, x in enumerate(p.inputs):
        s = p.cell.step(rnn, x, s_prev.detach())
        out_t = readout(p.params["readout"], p.cell.hidden(s)).unsqueeze(0)
        targets_t = type(p.targets)(
            p.targets.values[t : t + 1], p.targets.weights[t : t + 1], "mse"
        )
        total = total + step_losses(out_t, targets_t).sum()
        s_prev = s
    expected = dict(zip(rnn, torch.autograd.grad(total, list(rnn.values()))))
    assert_grads_close(out.grads, {"rnn": expected}, 1e-12, groups=("rnn",))
    assert out.future_signal.abs().max() == 0
    # control: the same rule with the trained (random) synthesiser changes the update
    q = make_problem(cell_name, T=5)
    trained = rule.gradients(q.cell, q.params, q.inputs, q.targets)
    assert relative_error(trained.grads["rnn"]["weight_hh"], expected["weight_hh"]) > 1e-3


# ------------------------------------------------------------------ Algorithm 1, per-step updates
def _algorithm_1_reference(p, gamma, lmbda, scale, lr_synth, lr_rnn):
    """Algorithm 1 written plainly from the paper, with autograd for every derivative."""
    cell = p.cell
    rnn = {k: v.clone() for k, v in p.params["rnn"].items()}
    theta = {k: v.clone() for k, v in p.params["synthesiser"].items()}
    T = len(p.inputs)
    B = p.inputs.shape[1]
    S = cell.state_size
    s = torch.zeros(B, S, dtype=torch.float64)
    trace = None  # per sample: d g(s) / d θ accumulated, (B, S, P)
    J_prev = None

    def g_of(th, state):
        return state @ th["weight"].T + th["bias"]

    def dg_dtheta(th, state):  # (B, S, P), P = S*S + S
        jac = jacrev(lambda w, b: g_of({"weight": w, "bias": b}, state), argnums=(0, 1))(
            th["weight"], th["bias"]
        )
        return torch.cat([jac[0].reshape(B, S, -1), jac[1].reshape(B, S, -1)], dim=-1)

    for k in range(T):
        x = p.inputs[k]
        s_new = cell.step(rnn, x, s)
        J = jacrev(cell.step, argnums=2)(rnn, x, s).diagonal(dim1=0, dim2=2).permute(2, 0, 1)
        h = s_new.clone().requires_grad_()
        loss_t = (
            p.targets.weights[k]
            * ((readout(p.params["readout"], cell.hidden(h)) - p.targets.values[k]) ** 2).mean()
        )
        (a,) = torch.autograd.grad(loss_t, h)
        terminal = k == T - 1
        if k >= 1:
            fresh = dg_dtheta(theta, s)
            trace = (
                fresh
                if trace is None
                else gamma * lmbda * torch.einsum("bij,bjp->bip", J_prev, trace) + fresh
            )
            g_next = torch.zeros_like(s_new) if terminal else g_of(theta, s_new)
            delta = torch.einsum("bi,bij->bj", a + gamma * g_next, J) - g_of(theta, s)
            step = torch.einsum("bi,bip->p", delta, trace) / B
            theta["weight"] = theta["weight"] + lr_synth * step[: S * S].reshape(S, S)
            theta["bias"] = theta["bias"] + lr_synth * step[S * S :]
        J_prev = J
        g = torch.zeros_like(s_new) if terminal else g_of(theta, s_new)
        signal = a + scale * g
        local = {kk: v.clone().requires_grad_() for kk, v in rnn.items()}
        grads = torch.autograd.grad((cell.step(local, x, s) * signal).sum(), list(local.values()))
        rnn = {kk: v - lr_rnn * gr for (kk, v), gr in zip(rnn.items(), grads)}
        s = s_new
    return rnn, theta


@pytest.mark.parametrize("cell_name", ["tanh_rnn", "lstm"])
def test_per_step_updates_follow_algorithm_1(cell_name):
    p = make_problem(cell_name, T=5)
    gamma, lmbda, scale, lr_synth, lr_rnn = 0.9, 0.6, 0.5, 0.3, 0.2
    expected_rnn, expected_theta = _algorithm_1_reference(p, gamma, lmbda, scale, lr_synth, lr_rnn)
    params = {g: {k: v.clone() for k, v in group.items()} for g, group in p.params.items()}

    def sgd(grads):
        for group, lr in (("synthesiser", lr_synth), ("rnn", lr_rnn)):
            for name, value in grads.get(group, {}).items():
                params[group][name].sub_(lr * value)

    with torch.no_grad():
        online_bp_lambda(
            p.cell, params, p.inputs, p.targets, gamma=gamma, lmbda=lmbda, scale=scale, on_step=sgd
        )
    for name in expected_theta:
        assert relative_error(params["synthesiser"][name], expected_theta[name]) < 1e-12
    for name in expected_rnn:
        assert relative_error(params["rnn"][name], expected_rnn[name]) < 1e-12
    # control: per-step updates really differ from one update per sequence
    seq = {g: {k: v.clone() for k, v in group.items()} for g, group in p.params.items()}
    out = make_rule("bp_lambda", gamma=gamma, lmbda=lmbda, scale=scale).gradients(
        p.cell, seq, p.inputs, p.targets
    )
    once = seq["synthesiser"]["weight"] - lr_synth * out.grads["synthesiser"]["weight"]
    assert relative_error(once, params["synthesiser"]["weight"]) > 1e-6


@pytest.mark.parametrize("implementation", ["online", "lambda_return"])
def test_a_lambda_grid_stacked_as_models_equals_separate_runs(implementation):
    lambdas = (0.0, 0.4, 1.0)
    p = make_problem("tanh_rnn", T=5, model_shape=(3,))
    rule = make_rule("bp_lambda", lmbda=lambdas, gamma=0.9, implementation=implementation)
    assert_stacked_equals_alone(
        p, rule, lambda k: make_rule("bp_lambda", lmbda=lambdas[k], gamma=0.9)
    )


def test_a_lambda_grid_must_match_the_number_of_models():
    p = make_problem("tanh_rnn", T=3, model_shape=(2,))
    with pytest.raises(ValueError, match="one per model"):
        make_rule("bp_lambda", lmbda=(0.0, 0.5, 1.0)).gradients(
            p.cell, p.params, p.inputs, p.targets
        )
    with pytest.raises(ValueError, match="lmbda=2.0"):
        make_rule("bp_lambda", lmbda=(0.0, 2.0))


def test_faithful_lstm_online_equals_lambda_return_and_differs_from_exact():
    p = make_problem("lstm", T=6)
    faithful = make_cell("lstm_faithful", 4, 3)
    options = {"lmbda": 0.5, "gamma": 0.9, "scale": 0.5}
    online = make_rule("bp_lambda", implementation="online", **options)
    forward = make_rule("bp_lambda", **options)
    a = online.gradients(faithful, p.params, p.inputs, p.targets)
    b = forward.gradients(faithful, p.params, p.inputs, p.targets)
    assert_grads_close(a.grads, b.grads, 1e-10)
    exact = forward.gradients(p.cell, p.params, p.inputs, p.targets)
    for group in ("rnn", "synthesiser"):
        assert (
            relative_error(
                b.grads[group]["weight_hh" if group == "rnn" else "weight"],
                exact.grads[group]["weight_hh" if group == "rnn" else "weight"],
            )
            > 1e-3
        )
