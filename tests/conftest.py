"""Small random float64 problems shared by the tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from bplambda.cells import Cell, make_cell
from bplambda.compare_results import results_only
from bplambda.outputs import ParamGroups, RuleOutput
from bplambda.readout import SequenceTargets, init_readout
from bplambda.rules import Rule

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


def model_of(groups: ParamGroups, k: int) -> ParamGroups:
    """Model ``k`` of stacked groups (every tensor's leading dim indexed)."""
    return {g: {n: v[k] for n, v in group.items()} for g, group in groups.items()}


def targets_of(targets: SequenceTargets, k: int) -> SequenceTargets:
    """Model ``k``'s targets of stacked ones (values ``(T, K, ...)``; weights are shared)."""
    return SequenceTargets(targets.values[:, k], targets.weights, targets.kind)


def assert_stacked_equals_alone(
    p: Problem, stacked: Rule, alone: Callable[[int], Rule], tol: float = 1e-10
) -> list[tuple[RuleOutput, RuleOutput]]:
    """``stacked`` on ``p`` (``K`` models, ``model_shape=(K,)``) gives every model the
    gradients (relative ``tol``) and loss (1e-12) that rule ``alone(k)`` gives model ``k`` on its
    own inputs and targets. Returns ``(stacked output, model k's output alone)`` per ``k`` for
    further checks."""
    together = stacked.gradients(p.cell, p.params, p.inputs, p.targets)
    pairs = []
    for k in range(p.inputs.shape[1]):
        single = model_of(p.params, k)
        out = alone(k).gradients(p.cell, single, p.inputs[:, k], targets_of(p.targets, k))
        assert_grads_close(model_of(together.grads, k), out.grads, tol)
        assert relative_error(together.loss[k], out.loss) < 1e-12
        pairs.append((together, out))
    return pairs


def assert_stacked_run_equals_runs_alone(
    run: Callable[[list[int]], pd.DataFrame], seeds: Sequence[int], alone: Sequence[int]
) -> None:
    """The table of ``run(seeds)`` (the seeds stacked) holds, for every seed of ``alone``, the
    rows of ``run([seed])`` (all but the stack index ``model``; relative 1e-9)."""
    both = run(list(seeds))
    for seed in alone:
        picked = both[both.seed == seed].drop(columns="model").reset_index(drop=True)
        pd.testing.assert_frame_equal(picked, run([seed]).drop(columns="model"), rtol=1e-9)


SAME_TABLES_RTOL = 1e-12
"""How far a merged float64 value may be from a single run's, relatively: a shard's models
run alone where the single run stacks them, which moves a value by a few units in its last
place (at most 3e-15 measured on notebook 01's smoke sweep). float32's rounding (about 1e-5
after training) fails here, where pandas' default tolerance (1e-5) would let it pass."""


def assert_same_tables(merged: Path, single: Path) -> None:
    """A merged sweep's folder holds the tables of a single run's, row for row (a merge lists
    the rows shard by shard, so both are sorted first; wall times and provenance left out),
    every number equal to within :data:`SAME_TABLES_RTOL` (float64 runs)."""

    def sorted_rows(table: pd.DataFrame) -> pd.DataFrame:
        return table.sort_values(list(table.columns), kind="stable").reset_index(drop=True)

    names = sorted(p.name for p in single.glob("*.csv"))
    assert names and names == sorted(p.name for p in merged.glob("*.csv"))
    for name in names:
        a, b = (sorted_rows(results_only(pd.read_csv(f / name))) for f in (merged, single))
        pd.testing.assert_frame_equal(a, b, rtol=SAME_TABLES_RTOL, atol=0.0)


@pytest.fixture(params=CELL_NAMES)
def cell_name(request: pytest.FixtureRequest) -> str:
    return request.param
