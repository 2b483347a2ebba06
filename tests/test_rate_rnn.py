"""Liu et al.'s rate RNN: its own equations, initialisation and the mask (the generic
Jacobian and VJP oracles run on it through conftest's CELL_NAMES)."""

import math

import pytest
import torch
from conftest import make_problem, relative_error

from bplambda import make_rule
from bplambda.cells import RateRNN, make_cell
from bplambda.stacking import init_network
from bplambda.tasks import DelayedMatch
from bplambda.train import TrainConfig, train


def test_the_step_is_the_leaky_rate_equation_without_autapses():
    cell = make_cell("rate_rnn", 3, 4, alpha=0.8)
    g = torch.Generator().manual_seed(0)
    params = {"weight_ih": torch.randn(4, 3, generator=g, dtype=torch.float64),
              "weight_hh": torch.randn(4, 4, generator=g, dtype=torch.float64)}  # fmt: skip
    x = torch.randn(2, 3, generator=g, dtype=torch.float64)
    v_prev = torch.randn(2, 4, generator=g, dtype=torch.float64)
    W = params["weight_hh"] - torch.diag(torch.diag(params["weight_hh"]))  # M = 1 − I
    expected = 0.8 * v_prev + 0.2 * (x @ params["weight_ih"].T + torch.relu(v_prev) @ W.T)
    assert relative_error(cell.step(params, x, v_prev), expected) < 1e-14
    assert torch.equal(cell.hidden(v_prev), torch.relu(v_prev))
    # the diagonal of W_hh has no effect, and receives no local gradient
    bumped = {**params, "weight_hh": params["weight_hh"] + 5 * torch.eye(4, dtype=torch.float64)}
    assert torch.equal(cell.step(bumped, x, v_prev), cell.step(params, x, v_prev))
    grad = cell.param_vjp(params, x, v_prev, torch.ones(2, 4, dtype=torch.float64))
    assert torch.diag(grad["weight_hh"]).abs().max() == 0


def test_the_initialisation_follows_liu_et_al():
    cell = RateRNN(input_size=28, hidden_size=128)
    params = cell.init_params(torch.Generator().manual_seed(0), torch.float64)
    assert set(params) == {"weight_ih", "weight_hh"}  # no recurrent bias
    assert torch.diag(params["weight_hh"]).abs().max() == 0
    off = params["weight_hh"][~torch.eye(128, dtype=torch.bool)]
    assert off.var().item() == pytest.approx(2 / 128, rel=0.05)
    assert params["weight_ih"].var().item() == pytest.approx(2 / 28, rel=0.05)
    with pytest.raises(ValueError, match="alpha"):
        RateRNN(2, 2, alpha=1.0)
    with pytest.raises(ValueError, match="no options"):
        make_cell("lstm", 2, 2, alpha=0.5)
    assert math.isclose(make_cell("rate_rnn", 2, 2, alpha=0.5).alpha, 0.5)


def test_its_readout_starts_as_liu_et_al_glorot_uniform_with_a_zero_bias():
    """Liu et al.'s readout is TF's default, Glorot-uniform with a zero bias; the LSTM's (the
    BP(λ) paper's) stays nn.Linear's, bias included."""
    H, outputs = 128, 10
    rate = init_network(RateRNN(28, H), outputs, seed=0, dtype=torch.float64)["readout"]
    bound = math.sqrt(6 / (H + outputs))
    assert torch.equal(rate["bias"], torch.zeros(outputs, dtype=torch.float64))
    assert rate["weight"].abs().max() <= bound
    assert rate["weight"].var().item() == pytest.approx(bound**2 / 3, rel=0.05)  # U(±b)
    lstm = init_network(make_cell("lstm", 28, H), outputs, seed=0, dtype=torch.float64)["readout"]
    assert lstm["bias"].abs().min() > 0 and lstm["weight"].abs().max() <= 1 / math.sqrt(H)


def test_dales_law_signs_every_recurrent_weight_by_its_presynaptic_unit_through_training():
    """Under Dale's law the first 80% of the units excite and the rest inhibit: W_hh's columns
    start with their unit's sign (the inhibitory ones scaled to balance), and training keeps
    them (an update that crosses zero is set back to zero)."""
    cell = RateRNN(2, 20, alpha=0.9, excitatory_fraction=0.8)
    assert cell.unit_types().tolist() == [0] * 16 + [1] * 4
    weight = cell.init_params(torch.Generator().manual_seed(0), torch.float64)["weight_hh"]
    assert weight[:, :16].min() >= 0 and weight[:, 16:].max() <= 0
    ratio = (weight[:, 16:].abs().mean() / weight[:, :16].abs().mean()).item()
    assert ratio == pytest.approx(4, rel=0.3)  # n_E / n_I: balanced on average
    task = DelayedMatch(delay=5, cue_len=3, sigma=1.0, batch_size=8)
    config = TrainConfig(num_batches=30, lr={"rnn": 0.5, "readout": 0.1}, optimiser="sgd",
                         progress=False)  # fmt: skip
    trained = train(cell, make_rule("bptt"), task, config, seeds=[0], dtype="float64")
    final = trained.params["rnn"]["weight_hh"][0]
    assert final[:, :16].min() >= 0 and final[:, 16:].max() <= 0
    assert (final == 0).sum() > 20  # weights that would have crossed zero (the diagonal's 20)
    assert not torch.equal(final, weight)
    with pytest.raises(ValueError, match="excitatory_fraction"):
        RateRNN(2, 4, excitatory_fraction=0.95)


@pytest.mark.parametrize("name, options", [("bptt", {}), ("tbptt", {"window": 2}),
                                           ("sg", {"window": 2}), ("bp_lambda", {}),
                                           ("oracle", {})])  # fmt: skip
def test_every_existing_rule_runs_on_it(name, options):
    p = make_problem("rate_rnn", T=6)
    out = make_rule(name, **options).gradients(p.cell, p.params, p.inputs, p.targets)
    assert set(out.grads["rnn"]) == {"weight_ih", "weight_hh"}
    assert all(torch.isfinite(v).all() for v in out.grads["rnn"].values())
