"""Hand-written Jacobians and local gradients against torch.func / autograd (float64)."""

import pytest
import torch
from conftest import make_problem, relative_error
from torch.func import jacrev

from bplambda.cells import make_cell, unroll


def _random_step_inputs(problem, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = problem.inputs[0]
    s_prev = torch.randn(*x.shape[:-1], problem.cell.state_size, generator=g, dtype=x.dtype)
    v = torch.randn_like(s_prev)
    return x, s_prev, v


def test_state_jacobian_matches_jacrev(cell_name):
    p = make_problem(cell_name)
    x, s_prev, _ = _random_step_inputs(p)
    rnn = p.params["rnn"]
    full = jacrev(lambda s: p.cell.step(rnn, x, s))(s_prev)  # (B, S, B, S)
    per_sample = torch.stack([full[b, :, b, :] for b in range(x.shape[0])])
    J = p.cell.state_jacobian(rnn, x, s_prev)
    assert J.shape == (x.shape[0], p.cell.state_size, p.cell.state_size)
    assert relative_error(J, per_sample) < 1e-12
    # samples do not interact
    off = full.clone()
    for b in range(x.shape[0]):
        off[b, :, b, :] = 0
    assert off.abs().max() == 0


def test_state_vjp_matches_jacobian_and_autograd(cell_name):
    p = make_problem(cell_name)
    x, s_prev, v = _random_step_inputs(p)
    rnn = p.params["rnn"]
    J = p.cell.state_jacobian(rnn, x, s_prev)
    vjp = p.cell.state_vjp(rnn, x, s_prev, v)
    assert relative_error(vjp, (v.unsqueeze(-2) @ J).squeeze(-2)) < 1e-12
    s = s_prev.clone().requires_grad_()
    (auto,) = torch.autograd.grad((p.cell.step(rnn, x, s) * v).sum(), s)
    assert relative_error(vjp, auto) < 1e-12


def test_param_vjp_matches_autograd(cell_name):
    p = make_problem(cell_name)
    x, s_prev, v = _random_step_inputs(p)
    rnn = {k: t.clone().requires_grad_() for k, t in p.params["rnn"].items()}
    auto = torch.autograd.grad((p.cell.step(rnn, x, s_prev) * v).sum(), list(rnn.values()))
    local = p.cell.param_vjp(p.params["rnn"], x, s_prev, v)
    for name, a in zip(rnn, auto):
        assert relative_error(local[name], a) < 1e-12, name


def test_param_vjp_sums_over_extra_time_dimension_and_keeps_models_apart(cell_name):
    K, T = 2, 4
    p = make_problem(cell_name, T=T, model_shape=(K,))
    g = torch.Generator().manual_seed(3)
    rnn = p.params["rnn"]
    s_prev = torch.randn(T, K, 3, p.cell.state_size, generator=g, dtype=torch.float64)
    v = torch.randn_like(s_prev)
    batched = p.cell.param_vjp(rnn, p.inputs, s_prev, v)
    for k in range(K):
        single = {n: t[k] for n, t in rnn.items()}
        expected = [
            p.cell.param_vjp(single, p.inputs[t, k], s_prev[t, k], v[t, k]) for t in range(T)
        ]
        for name in rnn:
            total = sum(e[name] for e in expected)
            assert relative_error(batched[name][k], total) < 1e-12


def test_lstm_state_is_hidden_and_cell():
    cell = make_cell("lstm", 2, 3)
    assert cell.state_size == 6
    s = torch.arange(6.0).reshape(1, 6)
    assert torch.equal(cell.hidden(s), s[:, :3])


def test_unroll_matches_step_loop(cell_name):
    p = make_problem(cell_name, T=4)
    states = unroll(p.cell, p.params["rnn"], p.inputs)
    s = torch.zeros_like(states[0])
    for t in range(4):
        s = p.cell.step(p.params["rnn"], p.inputs[t], s)
        assert torch.equal(states[t], s)


def test_unknown_cell_names_the_choices():
    with pytest.raises(ValueError, match="lstm"):
        make_cell("gru", 2, 3)


# ------------------------------------------------------------------ the official LSTM's quirks
def _official_step(cell, params, x, s_prev):
    """The step as the official code differentiates it: o_t does not depend on h_{t-1}."""
    H = cell.hidden_size
    h_prev, c_prev = s_prev[..., :H], s_prev[..., H:]
    z = x @ params["weight_ih"].T + h_prev @ params["weight_hh"].T + params["bias"]
    z_o = x @ params["weight_ih"].T + h_prev.detach() @ params["weight_hh"].T + params["bias"]
    i, f, g = (
        torch.sigmoid(z[..., :H]),
        torch.sigmoid(z[..., H : 2 * H]),
        torch.tanh(z[..., 2 * H : 3 * H]),
    )
    o = torch.sigmoid(z_o[..., 3 * H :])
    c = f * c_prev + i * g
    return torch.cat([o * torch.tanh(c), c], dim=-1)


def test_faithful_lstm_jacobian_omits_exactly_the_output_gate_path():
    exact = make_problem("lstm")
    cell = make_cell("lstm_faithful", 4, 3)
    x, s_prev, v = _random_step_inputs(exact)
    rnn = exact.params["rnn"]
    full = jacrev(lambda s: _official_step(cell, rnn, x, s))(s_prev)
    expected = torch.stack([full[b, :, b, :] for b in range(x.shape[0])])
    J = cell.state_jacobian(rnn, x, s_prev)
    assert relative_error(J, expected) < 1e-12
    assert (
        relative_error(cell.state_vjp(rnn, x, s_prev, v), (v.unsqueeze(-2) @ J).squeeze(-2)) < 1e-12
    )
    # only the h-h block differs from the exact Jacobian, and it really differs
    J_exact = exact.cell.state_jacobian(rnn, x, s_prev)
    H = 3
    assert relative_error(J[:, :H, :H], J_exact[:, :H, :H]) > 1e-3
    assert torch.equal(J[:, H:, :], J_exact[:, H:, :]) and torch.equal(
        J[:, :, H:], J_exact[:, :, H:]
    )
    # the step itself and the parameter gradients stay exact
    assert torch.equal(cell.step(rnn, x, s_prev), exact.cell.step(rnn, x, s_prev))


def test_faithful_lstm_signal_quirks():
    p = make_problem("lstm")
    cell = make_cell("lstm_faithful", 4, 3)
    x, s_prev, v = _random_step_inputs(p)
    rnn, H = p.params["rnn"], 3
    h_prev, c_prev = s_prev[..., :H], s_prev[..., H:]
    # (b) the TD immediate term is [a_h, a_h ⊙ ∂h/∂c]
    a = torch.cat([v[..., :H], torch.zeros_like(v[..., H:])], dim=-1)
    state = cell.step(rnn, x, s_prev)
    o = torch.sigmoid(
        (x @ rnn["weight_ih"].T + h_prev @ rnn["weight_hh"].T + rnn["bias"])[..., 3 * H :]
    )
    dh_dc = o * (1 - torch.tanh(state[..., H:]) ** 2)
    expected = torch.cat([v[..., :H], v[..., :H] * dh_dc], dim=-1)
    derivatives = cell.derivatives(rnn, x, s_prev)
    assert relative_error(cell.td_immediate(derivatives, a), expected) < 1e-12
    # (c) the synthetic h-part reaches the output gate but not the cell gates (i, f, g)
    faithful = cell.param_vjp(rnn, x, s_prev, cell.synthetic_signal(derivatives, v))
    only_c = cell.param_vjp(
        rnn, x, s_prev, torch.cat([torch.zeros_like(v[..., :H]), v[..., H:]], -1)
    )
    full = cell.param_vjp(rnn, x, s_prev, v)
    for name in ("weight_ih", "weight_hh", "bias"):
        assert relative_error(faithful[name][: 3 * H], only_c[name][: 3 * H]) < 1e-12
        assert relative_error(faithful[name][3 * H :], full[name][3 * H :]) < 1e-12
    # the exact cell leaves both signals alone
    exact = p.cell.derivatives(rnn, x, s_prev)
    assert torch.equal(p.cell.td_immediate(exact, a), a)
    assert torch.equal(p.cell.synthetic_signal(exact, v), v)
    assert c_prev.shape == v[..., H:].shape
