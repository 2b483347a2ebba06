"""e-prop, RFLO and MDGL (docs/paper-liu2022.md §2) against autograd and explicit transcriptions of
their equations, in float64 on small random rate RNNs; each with a negative control."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import assert_grads_close, relative_error

from bplambda import make_rule
from bplambda.cells import make_cell
from bplambda.readout import SequenceTargets, readout, step_losses
from bplambda.rules.eligibility import cell_type_average, contiguous_types
from bplambda.stacking import init_stacked_network

N_IN, H, N_OUT, B, T = 3, 6, 2, 4, 7
DT = torch.float64


def _problem(alpha: float, last_step_only: bool, seed: int = 0, seeds=(0,), rule=None):
    """A stacked rate RNN (weights scaled up so units switch on and off), random inputs and
    an MSE target at every step (random positive weights) or at the last step only."""
    g = torch.Generator().manual_seed(seed)
    cell = make_cell("rate_rnn", N_IN, H, alpha=alpha)
    params = init_stacked_network(cell, N_OUT, list(seeds), DT, rule=rule)
    params["rnn"] = {k: 1.5 * v for k, v in params["rnn"].items()}
    K = len(seeds)
    inputs = torch.randn(T, K, B, N_IN, generator=g, dtype=DT)
    values = torch.randn(T, K, B, N_OUT, generator=g, dtype=DT)
    weights = torch.rand(T, generator=g, dtype=DT) + 0.1
    if last_step_only:
        weights = torch.zeros(T, dtype=DT)
        weights[-1] = 1.0
    return cell, params, inputs, SequenceTargets(values, weights, "mse")


def _mask() -> torch.Tensor:
    return 1 - torch.eye(H, dtype=DT)


def _detached_autograd(cell, params, inputs, targets):
    """The TF code's three-factor rule: autograd with ``z_{t-1}`` detached in the recurrent
    input only (the leak path stays)."""
    rnn = {k: v.clone().requires_grad_() for k, v in params["rnn"].items()}
    out = {k: v.clone().requires_grad_() for k, v in params["readout"].items()}
    v = torch.zeros(*inputs.shape[1:-1], H, dtype=DT)
    states = []
    for x in inputs:
        drive = x @ rnn["weight_ih"].mT + torch.relu(v).detach() @ (rnn["weight_hh"] * _mask()).mT
        v = cell.alpha * v + (1 - cell.alpha) * drive
        states.append(v)
    loss = step_losses(readout(out, torch.relu(torch.stack(states))), targets).sum()
    grads = torch.autograd.grad(loss, [*rnn.values(), *out.values()])
    return {"rnn": dict(zip(rnn, grads[:2])), "readout": dict(zip(out, grads[2:]))}


def _forward(cell, params, inputs):
    """(v, z, ψ, z_prev) of the model's forward pass, each ``(T, K, B, H)``."""
    rnn = params["rnn"]
    v = torch.zeros(*inputs.shape[1:-1], H, dtype=DT)
    states = []
    for x in inputs:
        v = cell.step(rnn, x, v)
        states.append(v)
    v = torch.stack(states)
    z = torch.relu(v)
    return v, z, (v > 0).to(DT), torch.cat([torch.zeros_like(z[:1]), z[:-1]])


def _output_errors(params, z, targets):
    out = {k: v.clone().requires_grad_() for k, v in params["readout"].items()}
    y = readout(out, z).requires_grad_()
    y.retain_grad()
    step_losses(y, targets).sum().backward()
    return y.grad


def _trace_reference(cell, params, inputs, targets, learning_signal, psi_inside=False):
    """docs/paper-liu2022.md §2 written out with forward eligibility traces, one step at a time:
    ``ε_t = α ε_{t-1} + (1−α) pre_t`` (RFLO: ``(1−α) ψ_{t,j} pre_{t,i}``, a ``(B, H, pre)``
    trace), update ``Σ_t Σ_b ℓ_{t,j} ψ_{t,j} ε_{t,i}`` (RFLO: ``ℓ_{t,j} p_{t,ji}``)."""
    alpha = cell.alpha
    v, z, psi, z_prev = _forward(cell, params, inputs)
    L = learning_signal(psi, _output_errors(params, z, targets))
    grads = {}
    for name, pre in (("weight_hh", z_prev), ("weight_ih", inputs)):
        total = 0
        trace = torch.zeros(*pre.shape[1:-1], H, pre.shape[-1], dtype=DT)
        for t in range(len(inputs)):
            if psi_inside:
                trace = alpha * trace + (1 - alpha) * psi[t, ..., :, None] * pre[t, ..., None, :]
                total = total + (L[t, ..., :, None] * trace).sum(-3)
            else:
                trace = alpha * trace + (1 - alpha) * pre[t, ..., None, :]  # same for every j
                total = total + ((L[t] * psi[t])[..., :, None] * trace).sum(-3)
        grads[name] = total * (_mask() if name == "weight_hh" else 1)
    return grads


def _symmetric(params):
    return lambda psi, errors: errors @ params["readout"]["weight"]


@pytest.mark.parametrize("alpha", [0.0, 0.8])
@pytest.mark.parametrize("last_step_only", [False, True])
def test_eprop_is_autograd_with_the_recurrent_input_detached(alpha, last_step_only):
    cell, params, inputs, targets = _problem(alpha, last_step_only)
    got = make_rule("eprop").gradients(cell, params, inputs, targets).grads
    assert_grads_close(got, _detached_autograd(cell, params, inputs, targets), 1e-12)
    exact = make_rule("bptt").gradients(cell, params, inputs, targets).grads
    assert relative_error(got["rnn"]["weight_hh"], exact["rnn"]["weight_hh"]) > 1e-3  # control


@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_eprop_equals_its_forward_trace_transcription(alpha):
    cell, params, inputs, targets = _problem(alpha, last_step_only=False)
    got = make_rule("eprop").gradients(cell, params, inputs, targets).grads["rnn"]
    reference = _trace_reference(cell, params, inputs, targets, _symmetric(params))
    assert_grads_close({"rnn": got}, {"rnn": reference}, 1e-12)


@pytest.mark.parametrize("name, window", [("eprop", 1), ("mdgl", 2)])
def test_without_leak_and_with_a_last_step_loss_eprop_and_mdgl_are_truncated_bptt(name, window):
    """At α = 0 with a loss at the last step only (seq-MNIST), e-prop's learning signal is the
    immediate one (TBPTT(1)) and MDGL's adds exactly the one hop back that TBPTT(2) takes:
    notebook 05's identities."""
    cell, params, inputs, targets = _problem(0.0, last_step_only=True)
    rule = make_rule(name).gradients(cell, params, inputs, targets).grads
    assert_grads_close(rule, make_rule("tbptt", window=window).gradients(
        cell, params, inputs, targets).grads, 1e-12)  # fmt: skip
    controls = [(0.8, True)] + [(0.0, False)] * (window > 1)  # a leak; a loss at every step,
    for alpha, last_step_only in controls:  # where TBPTT(2)'s chunks drop the hop at their ends
        cell, params, inputs, targets = _problem(alpha, last_step_only)
        rule = make_rule(name).gradients(cell, params, inputs, targets).grads["rnn"]
        tbptt = make_rule("tbptt", window=window).gradients(cell, params, inputs, targets)
        assert relative_error(rule["weight_hh"], tbptt.grads["rnn"]["weight_hh"]) > 1e-3


def _one_hop(params, weight, alpha):
    """The same formula with the sum over j as a matrix product (checked against the loop)."""

    def signal(psi, errors):
        L = errors @ params["readout"]["weight"]
        out = L.clone()
        out[:-1] += (1 - alpha) * torch.einsum("tkbj,kjp->tkbp", psi[1:] * L[1:], weight)
        return out

    return signal


@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_mdgl_cell_specific_equals_the_formula(alpha):
    cell, params, inputs, targets = _problem(alpha, last_step_only=False)
    weight = params["rnn"]["weight_hh"] * _mask()
    got = make_rule("mdgl").gradients(cell, params, inputs, targets).grads["rnn"]
    reference = _trace_reference(cell, params, inputs, targets, _one_hop(params, weight, alpha))
    assert_grads_close({"rnn": got}, {"rnn": reference}, 1e-12)
    # the one-hop term as a plain double loop over units, once
    _, z, psi, _ = _forward(cell, params, inputs)
    errors = _output_errors(params, z, targets)
    L = errors @ params["readout"]["weight"]
    loop = L.clone()
    for t in range(T - 1):
        for p in range(H):
            loop[t, 0, :, p] += (1 - alpha) * sum(
                weight[0, j, p] * psi[t + 1, 0, :, j] * L[t + 1, 0, :, j] for j in range(H)
            )
    assert relative_error(_one_hop(params, weight, alpha)(psi, errors), loop) < 1e-14
    eprop = make_rule("eprop").gradients(cell, params, inputs, targets).grads["rnn"]
    assert relative_error(got["weight_hh"], eprop["weight_hh"]) > 1e-3  # the term matters


def test_mdgl_cell_type_averages_the_weights_over_blocks_of_types():
    cell, params, inputs, targets = _problem(0.8, last_step_only=False)
    weight = params["rnn"]["weight_hh"] * _mask()
    one_type = make_rule("mdgl", variant="cell_type", cell_types=1)
    got = one_type.gradients(cell, params, inputs, targets).grads["rnn"]
    mean = weight.mean(dim=(-2, -1), keepdim=True).expand_as(weight)  # one block: one number
    reference = _trace_reference(cell, params, inputs, targets, _one_hop(params, mean, 0.8))
    assert_grads_close({"rnn": got}, {"rnn": reference}, 1e-12)
    specific = make_rule("mdgl").gradients(cell, params, inputs, targets).grads["rnn"]
    assert relative_error(got["weight_hh"], specific["weight_hh"]) > 1e-3
    blocks = cell_type_average(weight, contiguous_types(H, 2))  # units 0-2 and 3-5
    assert torch.allclose(blocks[0, :3, 3:], weight[0, :3, 3:].mean().expand(3, 3))
    assert torch.allclose(cell_type_average(weight, contiguous_types(H, H)), weight)  # exact
    with pytest.raises(ValueError, match="cell_types"):
        make_rule("mdgl", variant="cell_type", cell_types=H + 1).gradients(
            cell, params, inputs, targets
        )


def test_under_dales_law_cell_type_mdgl_averages_over_the_e_and_i_populations():
    """With Dale's law the types are the excitatory and inhibitory populations, whose averaged
    weights keep their signs: cell-type MDGL then differs from e-prop, and equals the formula
    with the E/I block means written out by hand."""
    alpha = 0.8
    cell = make_cell("rate_rnn", N_IN, H, alpha=alpha, excitatory_fraction=0.8)  # 5 E, 1 I
    _, _, inputs, targets = _problem(alpha, last_step_only=False)
    params = init_stacked_network(cell, N_OUT, [0], DT)
    params["rnn"] = {k: 1.5 * v for k, v in params["rnn"].items()}
    weight = cell.recurrent_weight(params["rnn"])
    by_hand = torch.empty_like(weight)
    exc, inh = slice(0, 5), slice(5, 6)
    for rows, cols in itertools.product((exc, inh), (exc, inh)):
        by_hand[0, rows, cols] = weight[0, rows, cols].mean()
    assert by_hand[0, :, exc].min() > 0 and by_hand[0, exc, inh].max() < 0  # the signs survive
    got = make_rule("mdgl", variant="cell_type").gradients(cell, params, inputs, targets)
    reference = _trace_reference(cell, params, inputs, targets, _one_hop(params, by_hand, alpha))
    assert_grads_close({"rnn": got.grads["rnn"]}, {"rnn": reference}, 1e-12)
    eprop = make_rule("eprop").gradients(cell, params, inputs, targets).grads["rnn"]
    assert relative_error(got.grads["rnn"]["weight_hh"], eprop["weight_hh"]) > 1e-2


@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_rflo_with_w_out_as_feedback_is_eprop_with_psi_inside_the_filter(alpha):
    cell, params, inputs, targets = _problem(alpha, last_step_only=False)
    rflo = make_rule("rflo", feedback="symmetric").gradients(cell, params, inputs, targets)
    reference = _trace_reference(cell, params, inputs, targets, _symmetric(params), psi_inside=True)
    assert_grads_close({"rnn": rflo.grads["rnn"]}, {"rnn": reference}, 1e-12)
    eprop = make_rule("eprop").gradients(cell, params, inputs, targets).grads["rnn"]
    difference = relative_error(rflo.grads["rnn"]["weight_hh"], eprop["weight_hh"])
    assert difference > 1e-3 if alpha > 0 else difference < 1e-12  # without a leak: the same


@pytest.mark.parametrize("name", ["eprop", "rflo", "mdgl"])
def test_random_feedback_is_seeded_per_model_and_differs_from_symmetric(name):
    rule = make_rule(name, feedback="random")
    cell, params, inputs, targets = _problem(0.8, False, seeds=(3, 4), rule=rule)
    feedback = params["feedback"]["weight"]
    assert feedback.shape == (2, N_OUT, H) and not torch.equal(feedback[0], feedback[1])
    again = init_stacked_network(cell, N_OUT, [4], DT, rule=rule)["feedback"]["weight"][0]
    assert torch.equal(again, feedback[1])  # seed 4's matrix, wherever it sits in a stack
    random = rule.gradients(cell, params, inputs, targets)
    symmetric = make_rule(name, feedback="symmetric").gradients(cell, params, inputs, targets)
    assert relative_error(random.grads["rnn"]["weight_hh"],
                          symmetric.grads["rnn"]["weight_hh"]) > 1e-2  # fmt: skip
    assert_grads_close(random.grads, symmetric.grads, 1e-14, groups=("readout",))  # exact
    if name != "mdgl":  # L_t = e_t B: the model's own matrix in the transcription
        reference = _trace_reference(cell, params, inputs, targets,
                                     lambda psi, errors: errors @ feedback,
                                     psi_inside=name == "rflo")  # fmt: skip
        assert_grads_close({"rnn": random.grads["rnn"]}, {"rnn": reference}, 1e-12)
    for k in range(2):  # stacked = separate
        alone = {g: {n: v[k : k + 1] for n, v in p.items()} for g, p in params.items()}
        single = rule.gradients(cell, alone, inputs[:, k : k + 1], SequenceTargets(
            targets.values[:, k : k + 1], targets.weights, "mse"))  # fmt: skip
        for n, v in single.grads["rnn"].items():
            assert relative_error(random.grads["rnn"][n][k], v[0]) < 1e-13


@pytest.mark.parametrize("name", ["eprop", "rflo", "mdgl"])
def test_the_rules_refuse_cells_without_the_rate_structure(name):
    cell = make_cell("tanh_rnn", N_IN, H)
    params = init_stacked_network(cell, N_OUT, [0], DT, rule=make_rule(name))
    inputs = torch.randn(T, 1, B, N_IN, dtype=DT)
    targets = SequenceTargets(torch.randn(T, 1, B, N_OUT, dtype=DT), torch.ones(T, dtype=DT), "mse")
    with pytest.raises(ValueError, match="rate_rnn"):
        make_rule(name).gradients(cell, params, inputs, targets)
    with pytest.raises(ValueError, match="feedback"):
        make_rule(name, feedback="transposed")
    with pytest.raises(ValueError, match="variant"):
        make_rule("mdgl", variant="cell_group")


@pytest.mark.parametrize("name", ["eprop", "rflo", "mdgl"])
def test_the_rules_train_a_stacked_rate_rnn_through_the_trainer(name):
    from bplambda import TrainConfig, train
    from bplambda.tasks import DelayedMatch

    task = DelayedMatch(delay=10, cue_len=5, sigma=2.0, batch_size=8)
    cell = make_cell("rate_rnn", task.input_size, 8, alpha=0.9)
    config = TrainConfig(num_batches=3, lr={"rnn": 0.01, "readout": 0.01}, optimiser="sgd",
                         l2=1e-2, log_every=1, track_alignment=True, progress=False)  # fmt: skip
    rule = make_rule(name, feedback="random")
    both = train(cell, rule, task, config, seeds=[0, 1], dtype="float64")
    alone = train(cell, rule, task, config, seeds=[1], dtype="float64")
    assert set(both.params) == {"rnn", "readout", "feedback"}
    for group in ("rnn", "readout", "feedback"):
        for n, v in alone.params[group].items():
            assert torch.allclose(both.params[group][n][1], v[0], atol=1e-12)
    assert {"loss", "alignment_signal"} <= set(both.table.metric)
