"""The credit-assignment rules against autograd and against each other (float64)."""

import pytest
import torch
from conftest import assert_grads_close, assert_stacked_equals_alone, make_problem, relative_error
from torch.func import grad

from bplambda.cells import unroll
from bplambda.readout import readout, step_losses
from bplambda.rules import RULES, chunk_starts, make_rule
from bplambda.synthesiser import regression_gradient, synthesise

LOSSES = ["mse", "cross_entropy", "bce"]


def _autograd_bptt(p):
    """Reference: torch.func.grad of the whole-sequence loss."""

    def total_loss(rnn, out):
        states = unroll(p.cell, rnn, p.inputs)
        return step_losses(readout(out, p.cell.hidden(states)), p.targets).sum()

    g_rnn, g_out = grad(total_loss, argnums=(0, 1))(p.params["rnn"], p.params["readout"])
    return {"rnn": g_rnn, "readout": g_out}


@pytest.mark.parametrize("loss", LOSSES)
def test_bptt_equals_autograd(cell_name, loss):
    p = make_problem(cell_name, T=6, loss=loss)
    out = make_rule("bptt").gradients(p.cell, p.params, p.inputs, p.targets)
    assert_grads_close(out.grads, _autograd_bptt(p), 1e-12)


@pytest.mark.parametrize(
    "name, options",
    [
        ("tbptt", {"window": 6}),
        ("tbptt", {"window": 50}),
        ("sg", {"window": 6}),
        ("sg", {"window": 9, "gamma": 0.9, "scale": 0.1}),
        ("oracle", {}),
    ],
)
def test_rules_that_must_equal_bptt(cell_name, name, options):
    p = make_problem(cell_name, T=6)
    out = make_rule(name, **options).gradients(p.cell, p.params, p.inputs, p.targets)
    assert_grads_close(out.grads, _autograd_bptt(p), 1e-10, groups=("rnn", "readout"))


def test_oracle_signal_is_the_true_future_gradient_and_bptt_reports_it_too(cell_name):
    p = make_problem(cell_name, T=5)
    oracle = make_rule("oracle").gradients(p.cell, p.params, p.inputs, p.targets)
    bptt = make_rule("bptt").gradients(p.cell, p.params, p.inputs, p.targets)
    assert relative_error(oracle.future_signal, bptt.future_signal) < 1e-10


def test_chunks_are_aligned_to_the_end():
    assert chunk_starts(7, 3) == [0, 1, 4]
    assert chunk_starts(6, 3) == [0, 3]
    assert chunk_starts(6, 1) == [0, 1, 2, 3, 4, 5]
    assert chunk_starts(5, None) == [0]
    assert chunk_starts(5, 5) == [0]


def test_truncated_bptt_receives_only_within_chunk_future(cell_name):
    p = make_problem(cell_name, T=7)
    bptt = make_rule("bptt").gradients(p.cell, p.params, p.inputs, p.targets)
    tbptt = make_rule("tbptt", window=3).gradients(p.cell, p.params, p.inputs, p.targets)
    # chunk ends (s_1, s_4 and s_7) get no future gradient at all
    for t in (0, 3, 6):
        assert tbptt.future_signal[t].abs().max() == 0
    # s_3 (inside the chunk s_2 … s_4) sees L_4 through J_4 only, never L_5 … L_7
    expected = (
        tbptt.immediate[3].unsqueeze(-2)
        @ p.cell.state_jacobian(p.params["rnn"], p.inputs[3], tbptt.states[2])
    ).squeeze(-2)
    assert relative_error(tbptt.future_signal[2], expected) < 1e-12
    assert relative_error(tbptt.grads["rnn"]["weight_hh"], bptt.grads["rnn"]["weight_hh"]) > 1e-3


def test_sg_with_zero_synthesiser_is_truncated_bptt(cell_name):
    p = make_problem(cell_name, T=7)
    p.params["synthesiser"] = {k: torch.zeros_like(v) for k, v in p.params["synthesiser"].items()}
    sg = make_rule("sg", window=3).gradients(p.cell, p.params, p.inputs, p.targets)
    tbptt = make_rule("tbptt", window=3).gradients(p.cell, p.params, p.inputs, p.targets)
    assert_grads_close(sg.grads, tbptt.grads, 1e-12, groups=("rnn", "readout"))


@pytest.mark.parametrize(
    "name, options", [("tbptt", {}), ("sg", {"gamma": 0.8, "scale": 0.4}), ("sg", {})]
)
def test_a_stacked_window_grid_equals_separate_runs(cell_name, name, options):
    """One window per stacked model (a whole TBPTT(n) or SG(n) grid as one model): model by
    model the gradients, learning signals and applied steps of its own separate run, with
    windows that cut at different steps, every step, and never (n >= T)."""
    windows = (1, 2, 3, 5, 8)
    p = make_problem(cell_name, T=8, model_shape=(len(windows),))
    pairs = assert_stacked_equals_alone(
        p, make_rule(name, window=windows, **options),
        lambda k: make_rule(name, window=windows[k], **options),
    )  # fmt: skip
    for k, (stacked, out) in enumerate(pairs):
        assert relative_error(stacked.future_signal[:, k], out.future_signal) < 1e-12
        if name == "sg":
            assert torch.equal(stacked.applied[:, k], out.applied)


def test_a_window_grid_must_match_the_number_of_models():
    p = make_problem("tanh_rnn", T=4, model_shape=(2,))
    with pytest.raises(ValueError, match="one per model"):
        make_rule("tbptt", window=(1, 2, 3)).gradients(p.cell, p.params, p.inputs, p.targets)
    with pytest.raises(ValueError, match="window n=0"):
        make_rule("sg", window=(1, 0))
    with pytest.raises(ValueError, match="empty"):
        make_rule("tbptt", window=())


def _jacobian_product(p, states, start, end):
    """∂s_end/∂s_start (1-indexed states; states[k] is s_{k+1}): (B, S, S)."""
    S = p.cell.state_size
    prod = torch.eye(S, dtype=torch.float64).expand(p.inputs.shape[1], S, S)
    for tau in range(start + 1, end + 1):  # J_tau = ∂s_tau/∂s_{tau-1}
        J = p.cell.state_jacobian(p.params["rnn"], p.inputs[tau - 1], states[tau - 2])
        prod = J @ prod
    return prod


@pytest.mark.parametrize("gamma, scale", [(1.0, 1.0), (0.8, 0.3)])
def test_sg_regresses_toward_the_n_step_target(cell_name, gamma, scale):
    T, n = 8, 3  # chunks: s_0→s_2, s_2→s_5, s_5→s_8; regression at s_2 and s_5
    p = make_problem(cell_name, T=T)
    out = make_rule("sg", window=n, gamma=gamma, scale=scale).gradients(
        p.cell, p.params, p.inputs, p.targets
    )
    states = out.states
    synth = p.params["synthesiser"]
    targets = []
    for c in (2, 5):
        target = torch.zeros_like(states[0])
        for tau in range(c + 1, c + n + 1):
            a = out.immediate[tau - 1]
            target = target + gamma ** (tau - c - 1) * (
                a.unsqueeze(-2) @ _jacobian_product(p, states, c, tau)
            ).squeeze(-2)
        if c + n < T:
            g_end = synthesise(synth, states[c + n - 1])
            target = target + gamma**n * (
                g_end.unsqueeze(-2) @ _jacobian_product(p, states, c, c + n)
            ).squeeze(-2)
        targets.append(target)
    expected = regression_gradient(synth, states[[1, 4]], torch.stack(targets))
    assert_grads_close(out.grads, {"synthesiser": expected}, 1e-10, groups=("synthesiser",))
    # the injected signal: chunk ends s_2 and s_5 receive scale·g, the final step nothing
    for t in (1, 4):
        assert relative_error(out.future_signal[t], scale * synthesise(synth, states[t])) < 1e-12
    assert out.future_signal[T - 1].abs().max() == 0


def test_switches_turn_learning_and_application_off():
    p = make_problem("tanh_rnn", T=6)
    frozen = make_rule("bp_lambda", learn_synthesiser=False).gradients(
        p.cell, p.params, p.inputs, p.targets
    )
    assert "synthesiser" not in frozen.grads
    unapplied = make_rule("bp_lambda", apply_synthetic_gradient=False).gradients(
        p.cell, p.params, p.inputs, p.targets
    )
    assert unapplied.future_signal.abs().max() == 0
    assert unapplied.synthetic.abs().max() > 0
    sg_off = make_rule("sg", window=2, apply_synthetic_gradient=False).gradients(
        p.cell, p.params, p.inputs, p.targets
    )
    tbptt = make_rule("tbptt", window=2).gradients(p.cell, p.params, p.inputs, p.targets)
    assert_grads_close(sg_off.grads, tbptt.grads, 1e-12, groups=("rnn",))
    assert sg_off.grads["synthesiser"]["weight"].abs().max() > 0


NEEDED_OPTIONS = {"tbptt": {"window": 2}, "sg": {"window": 2}}
"""The options a rule cannot be made without; every other rule is made with its defaults."""
RATE_ONLY = {"eprop", "rflo", "mdgl"}


def _registered(name: str):
    return make_rule(name, **NEEDED_OPTIONS.get(name, {}))


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_registered_rule_keeps_the_contract(name):
    """Driven by the registry, so a new rule cannot skip it: gradients for exactly the groups
    it trains, with their parameters' shapes; stacked models equal separate runs; per-step
    updates refused (only online BP(λ) takes them)."""
    K, rule = 3, _registered(name)
    p = make_problem("rate_rnn" if name in RATE_ONLY else "lstm", T=5, model_shape=(K,))
    g = torch.Generator().manual_seed(1)
    own = rule.init_groups(p.cell, 2, g, torch.float64)  # a feedback matrix, say: made per model
    p.params.update({grp: {n: torch.stack([v] * K) + torch.randn(K, *v.shape, generator=g,
                     dtype=torch.float64) for n, v in t.items()} for grp, t in own.items()
                     if grp != "synthesiser"})  # fmt: skip
    stacked = rule.gradients(p.cell, p.params, p.inputs, p.targets)
    assert set(stacked.grads) == set(rule.trains)
    for group in rule.trains:
        for n, v in stacked.grads[group].items():
            assert v.shape == p.params[group][n].shape
    assert_stacked_equals_alone(p, rule, lambda k: rule)
    with pytest.raises(ValueError, match="online"):
        rule.gradients(p.cell, p.params, p.inputs, p.targets, on_step=lambda grads: None)


@pytest.mark.parametrize(
    "name, options, words",
    [
        ("backprop", {}, ["rule='backprop'", "bp_lambda"]),
        ("bp_lambda", {"lmbda": 1.5}, ["lmbda=1.5", "[0.0, 1.0]"]),
        ("bp_lambda", {"lmbda": -0.1}, ["lmbda"]),
        ("bp_lambda", {"gamma": 0.0}, ["gamma=0.0", "(0.0, 1.0]"]),
        ("bp_lambda", {"gamma": 1.1}, ["gamma"]),
        ("sg", {"window": 2, "gamma": 0}, ["gamma"]),
        ("tbptt", {"window": 0}, ["window", ">= 1"]),
        ("sg", {"window": 0}, ["window", ">= 1"]),
        ("tbptt", {"window": 2.5}, ["window"]),
        ("tbptt", {}, ["needs a window"]),
        ("bp_lambda", {"implementation": "fast"}, ["implementation='fast'", "online"]),
        ("bp_lambda", {"lambda_": 0.5}, ["lambda_", "lmbda"]),
        ("bp_lambda", {"scale": -1.0}, ["scale"]),
    ],
)
def test_bad_parameters_raise_value_errors_that_say_what_to_do(name, options, words):
    with pytest.raises(ValueError) as info:
        make_rule(name, **options)
    for word in words:
        assert word in str(info.value)


def test_only_online_bp_lambda_accepts_per_step_updates():
    p = make_problem("tanh_rnn", T=3)
    with pytest.raises(ValueError, match="online"):
        make_rule("bptt").gradients(p.cell, p.params, p.inputs, p.targets, on_step=lambda g: None)


@pytest.mark.parametrize("gamma", [1.0, 0.8])
def test_one_step_sg_is_bp_lambda_zero(cell_name, gamma):
    """Two independent implementations of the same rule: SG(1) bootstraps every step with
    the 1-step target, exactly BP(0)'s TD target, and injects s·g at every step."""
    p = make_problem(cell_name, T=6)
    sg = make_rule("sg", window=1, gamma=gamma, scale=0.4)
    bp0 = make_rule("bp_lambda", lmbda=0.0, gamma=gamma, scale=0.4)
    a = sg.gradients(p.cell, p.params, p.inputs, p.targets)
    b = bp0.gradients(p.cell, p.params, p.inputs, p.targets)
    assert_grads_close(a.grads, b.grads, 1e-10)


def test_the_readout_runs_only_on_scored_steps_with_the_same_losses_and_gradients():
    """A last-step target (one of T steps scored) and per-model targets (a padded stack)."""
    from bplambda.readout import SequenceTargets, scored_losses

    g = torch.Generator().manual_seed(0)
    T, K, B, H, classes = 6, 2, 3, 4, 5
    hidden = torch.randn(T, K, B, H, generator=g, dtype=torch.float64)
    out = {"weight": torch.randn(classes, H, generator=g, dtype=torch.float64),
           "bias": torch.randn(classes, generator=g, dtype=torch.float64)}  # fmt: skip
    labels = torch.randint(0, classes, (T, K, B), generator=g)
    last = torch.zeros(T, dtype=torch.float64).index_fill(0, torch.tensor([T - 1]), 1.0)
    per_model = torch.zeros(T, K, dtype=torch.float64)
    per_model[4:, 0], per_model[2:, 1] = 0.5, 0.25  # model 1 scores more steps than model 0
    for weights in (last, per_model):
        targets = SequenceTargets(labels, weights, "cross_entropy")
        h = [hidden.clone().requires_grad_() for _ in range(2)]
        fast = scored_losses(out, h[0], targets)
        full = step_losses(readout(out, h[1]), targets)
        assert torch.equal(fast == 0, full == 0) and relative_error(fast, full) < 1e-14
        fast.sum().backward()
        full.sum().backward()
        assert relative_error(h[0].grad, h[1].grad) < 1e-14
