"""The fused LSTM kernel path against the hand-written reference step (float64): gradients,
loss and the lazily computed diagnostics of every rule that runs it."""

import pytest
import torch
from conftest import assert_grads_close, make_problem, relative_error

from bplambda.cells import MaskedCell, make_cell
from bplambda.readout import SequenceTargets
from bplambda.rules import make_rule
from bplambda.rules.fused import fused_starts, kernel_calls
from bplambda.stacking import init_network
from bplambda.tasks.copy_repeat import copy_repeat_batch

DIAGNOSTICS = ("states", "immediate", "future_signal", "synthetic", "applied")
RULES = [
    ("bptt", {}),
    ("oracle", {}),
    ("tbptt", {"window": 3}),
    ("sg", {"window": 3, "gamma": 0.8, "scale": 0.4}),
    ("sg", {"window": 2, "learn_synthesiser": False}),
    ("sg", {"window": 4, "apply_synthetic_gradient": False}),
    ("tbptt", {"window": (1, 3, 8)}),
    ("sg", {"window": (1, 3, 8), "gamma": 0.9}),
]


def assert_same_outputs(fused, reference, tol: float = 1e-10) -> None:
    assert set(fused.grads) == set(reference.grads)
    assert_grads_close(fused.grads, reference.grads, tol)
    assert relative_error(fused.loss, reference.loss) < tol
    for name in DIAGNOSTICS:
        a, b = getattr(fused, name), getattr(reference, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.shape == b.shape, name
            assert relative_error(a.double(), b.double()) < tol, name


def _both(name, options, p):
    return [
        make_rule(name, kernel=kernel, **options).gradients(p.cell, p.params, p.inputs, p.targets)
        for kernel in ("fused", "reference")
    ]


@pytest.mark.parametrize("cell_name", ["lstm", "lstm_faithful"])
@pytest.mark.parametrize("name, options", RULES)
def test_fused_kernel_equals_the_reference_step(cell_name, name, options):
    """Stacked (K = 3, one window per model where the window is a tuple) and unstacked."""
    shapes = [(3,)] if isinstance(options.get("window"), tuple) else [(), (3,)]
    for model_shape in shapes:
        p = make_problem(cell_name, T=8, model_shape=model_shape, loss="cross_entropy")
        assert fused_starts(p.cell, p.inputs) is not None
        fused, reference = _both(name, options, p)
        assert_same_outputs(fused, reference)


@pytest.mark.parametrize(
    "name, options",
    [
        ("bptt", {}),
        ("oracle", {}),
        ("tbptt", {"window": 2}),
        ("sg", {"window": 3, "gamma": 0.9}),  # chunk starts inside the padding
        ("sg", {"window": (2, 4), "gamma": 0.9}),
    ],
)
def test_a_front_padded_stack_runs_each_model_on_its_own_real_steps(name, options):
    cell = MaskedCell(make_cell("lstm", 10, 4))
    g = torch.Generator().manual_seed(3)
    nets = [init_network(cell, 9, seed, torch.float64, rule=make_rule("sg", window=2))
            for seed in (0, 1)]  # fmt: skip
    params = {grp: {k: torch.stack([n[grp][k] for n in nets]) for k in nets[0][grp]}
              for grp in nets[0]}  # fmt: skip
    params["synthesiser"] = {k: 0.1 * torch.randn(v.shape, generator=g, dtype=torch.float64)
                             for k, v in params["synthesiser"].items()}  # fmt: skip
    bits = torch.randint(0, 2, (2, 3, 3, 8), generator=g).float()
    inputs, targets = copy_repeat_batch(bits, torch.tensor([1, 3]), torch.tensor([2, 1]))
    targets = SequenceTargets(targets.values.double(), targets.weights.double(), "bce")
    starts = fused_starts(cell, inputs.double())
    assert starts == [len(inputs) - 6, 0]  # T = 6 and 9
    fused, reference = (
        make_rule(name, kernel=kernel, **options).gradients(cell, params, inputs.double(), targets)
        for kernel in ("fused", "reference")
    )
    assert_same_outputs(fused, reference)


def test_the_automatic_choice_keeps_the_reference_where_the_kernel_does_not_fit():
    x = torch.zeros(5, 2, 3, 4)
    for name in ("linear_rnn", "tanh_rnn", "rate_rnn"):
        assert fused_starts(make_cell(name, 4, 3), x) is None
    assert fused_starts(make_cell("lstm", 4, 3), x) == [0, 0]
    assert fused_starts(make_cell("lstm", 4, 3), x, kernel="reference") is None
    masked = MaskedCell(make_cell("lstm", 3, 3))
    x[3:, ..., -1] = 1  # front padding of 3 steps in both models
    assert fused_starts(masked, x) == [3, 3]
    x[2, 0, 1, -1] = 1  # one sequence of the batch starts earlier than the others
    assert fused_starts(masked, x) is None
    assert fused_starts(MaskedCell(make_cell("tanh_rnn", 3, 3)), x) is None


def test_lazy_diagnostics_are_those_of_the_parameters_at_the_call():
    """An optimiser step changes the parameters in place before a log may read them."""
    p = make_problem("lstm", T=6, model_shape=(2,))
    fused = make_rule("sg", window=2).gradients(p.cell, p.params, p.inputs, p.targets)
    reference = make_rule("sg", window=2, kernel="reference").gradients(
        p.cell, p.params, p.inputs, p.targets
    )
    with torch.no_grad():
        for group in p.params.values():
            for value in group.values():
                value.add_(1.0)
    assert_same_outputs(fused, reference)


def test_an_unknown_kernel_is_refused_in_one_line():
    with pytest.raises(ValueError, match="kernel='fast' is unknown"):
        make_rule("bptt", kernel="fast")


def test_auto_runs_the_step_loop_where_short_chunks_would_make_more_calls_than_steps():
    x = torch.zeros(8, 3, 2, 4)  # T = 8, three models
    cell = make_cell("lstm", 4, 3)
    bptt, every_step = [[]] * 3, [list(range(1, 8))] * 3
    assert kernel_calls(8, [0, 0, 0], bptt) == 3 and kernel_calls(8, [0, 0, 0], every_step) == 24
    assert kernel_calls(8, [0, 0, 5], [[4]]) == 5  # one window for all; a cut in padding falls
    assert fused_starts(cell, x, "auto", bptt) == [0, 0, 0]
    assert fused_starts(cell, x, "auto", every_step) is None
    assert fused_starts(cell, x, "fused", every_step) == [0, 0, 0]
