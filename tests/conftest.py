"""Small random float64 problems shared by the tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from bplambda.cells import Cell, make_cell
from bplambda.outputs import ParamGroups
from bplambda.readout import SequenceTargets, init_readout

CELL_NAMES = ["linear_rnn", "tanh_rnn", "lstm", "rate_rnn"]
CELL_OPTIONS = {"rate_rnn": {"alpha": 0.8}}  # a leak, so its Jacobian path is exercised too


@dataclass
class Problem:
    cell: Cell
    params: ParamGroups
    inputs: torch.Tensor
    targets: SequenceTargets


def make_problem(
    cell_name: str,
    T: int = 5,
    batch: int = 3,
    seed: int = 0,
    loss: str = "mse",
    model_shape: tuple[int, ...] = (),
    input_size: int = 4,
    hidden_size: int = 3,
    output_size: int = 2,
) -> Problem:
    """A random problem: weights scaled up so Jacobians are far from trivial, a random
    synthesiser, and a loss at every step with random positive weights."""
    g = torch.Generator().manual_seed(seed)
    dt = torch.float64
    cell = make_cell(cell_name, input_size, hidden_size, **CELL_OPTIONS.get(cell_name, {}))

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*model_shape, *shape, generator=g, dtype=dt)

    rnn = {k: rand(*v.shape) * 0.7 for k, v in cell.init_params(g, dt).items()}
    readout = {k: rand(*v.shape) for k, v in init_readout(hidden_size, output_size, g, dt).items()}
    S = cell.state_size
    synth = {"weight": rand(S, S) * 0.3, "bias": rand(S) * 0.3}
    inputs = rand(T, batch, input_size).movedim(len(model_shape), 0)
    weights = torch.rand(T, generator=g, dtype=dt) + 0.1
    if loss == "cross_entropy":
        labels = torch.randint(0, output_size, (T, *model_shape, batch), generator=g)
        targets = SequenceTargets(labels, weights, loss)
    else:
        values = rand(T, batch, output_size).movedim(len(model_shape), 0)
        if loss == "bce":
            values = (values > 0).to(dt)
        targets = SequenceTargets(values, weights, loss)
    return Problem(cell, {"rnn": rnn, "readout": readout, "synthesiser": synth}, inputs, targets)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = max(a.norm().item(), b.norm().item())
    return 0.0 if scale == 0 else ((a - b).norm() / scale).item()


def assert_grads_close(
    a: ParamGroups, b: ParamGroups, tol: float, groups: tuple[str, ...] | None = None
) -> None:
    for group in groups or tuple(b):
        for name in b[group]:
            err = relative_error(a[group][name], b[group][name])
            assert err <= tol, f"{group}.{name}: relative error {err:.3e} > {tol:.0e}"


@pytest.fixture(params=CELL_NAMES)
def cell_name(request: pytest.FixtureRequest) -> str:
    return request.param
