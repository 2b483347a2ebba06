"""Copy-repeat: generator layout, curriculum, and padding that changes nothing."""

import math

import pandas as pd
import pytest
import torch
from conftest import assert_grads_close, assert_stacked_run_equals_runs_alone, relative_error
from torch.func import jacrev

from bplambda.cells import MaskedCell, make_cell
from bplambda.readout import SequenceTargets
from bplambda.rules import make_rule
from bplambda.stacking import init_network
from bplambda.tasks.copy_repeat import (
    CopyRepeatTask,
    copy_repeat_batch,
    next_level,
    sequence_length,
)


def test_curriculum_follows_the_official_sequence():
    N, R = torch.tensor([1]), torch.tensor([1])
    seen = []
    for _ in range(9):
        seen.append((int(N), int(R), int(sequence_length(N, R))))
        N, R = next_level(N, R, torch.tensor([True]))
    assert seen == [(1, 1, 5), (2, 1, 7), (2, 2, 9), (3, 2, 12), (3, 3, 15), (4, 3, 19),
                    (4, 4, 23), (5, 4, 28), (5, 5, 33)]  # fmt: skip
    unchanged = next_level(N, R, torch.tensor([False]))
    assert (int(unchanged[0]), int(unchanged[1])) == (int(N), int(R))


def test_layout_for_two_by_two():
    bits = torch.tensor([[[1.0, 0, 1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 0, 1, 1, 0]]]).unsqueeze(1)
    inputs, targets = copy_repeat_batch(bits, torch.tensor([2]), torch.tensor([2]))
    x, y, w = inputs[:, 0, 0], targets.values[:, 0, 0], targets.weights[:, 0]
    assert x.shape == (9, 11) and y.shape == (9, 9)
    assert x[:, -1].tolist() == [1.0] * 9  # no padding
    assert x[0, 8] == 1 and x[0].sum() == 2  # start delimiter (+ the flag)
    assert torch.equal(x[1, :8], bits[0, 0, 0]) and torch.equal(x[2, :8], bits[0, 0, 1])
    assert x[3, 9] == pytest.approx(0.2) and x[3, :9].abs().sum() == 0
    assert x[4:, :10].abs().sum() == 0
    assert y[:4].abs().sum() == 0
    for t, k in zip(range(4, 8), [0, 1, 0, 1]):
        assert torch.equal(y[t, :8], bits[0, 0, k]) and y[t, 8] == 0
    assert y[8, :8].abs().sum() == 0 and y[8, 8] == 1
    assert w.tolist() == pytest.approx([0, 0, 0, 0, 0.2, 0.2, 0.2, 0.2, 0.2])


def test_models_at_different_levels_are_front_padded():
    g = torch.Generator().manual_seed(0)
    bits = torch.randint(0, 2, (2, 3, 3, 8), generator=g).float()
    N, R = torch.tensor([1, 3]), torch.tensor([1, 2])  # T = 5 and 12
    inputs, targets = copy_repeat_batch(bits, N, R)
    assert inputs.shape[0] == 12
    alone_x, alone_y = copy_repeat_batch(bits[:1], N[:1], R[:1])
    assert inputs[:7, 0].abs().sum() == 0 and targets.weights[:7, 0].abs().sum() == 0
    assert torch.equal(inputs[7:, 0], alone_x[:, 0])
    assert torch.equal(targets.values[7:, 0], alone_y.values[:, 0])
    assert torch.equal(targets.weights[7:, 0], alone_y.weights[:, 0])


def test_observe_moves_only_the_models_below_threshold():
    task = CopyRepeatTask(batch_size=4)
    task.sample([torch.Generator().manual_seed(0)] * 3)
    bits = torch.tensor([0.1, 0.2, 0.05]) * math.log(2)  # bits per element → nats
    task.observe(bits)
    assert task.metrics()["T"].tolist() == [7, 5, 7]


def test_a_start_level_with_threshold_zero_holds_every_model_there():
    task = CopyRepeatTask(batch_size=2, threshold_bits=0.0, start=(5, 5))
    assert task.seq_len == 33
    for _ in range(2):
        inputs, _ = task.sample([torch.Generator().manual_seed(0)] * 2)
        task.observe(torch.zeros(2))
    assert inputs.shape[0] == 33 and task.metrics()["T"].tolist() == [33, 33]
    task.reset()
    assert task.sample([torch.Generator()])[0].shape[0] == 33
    with pytest.raises(ValueError, match="start"):
        CopyRepeatTask(start=(0, 1))


@pytest.mark.parametrize(
    "name, options",
    [("sg", {"window": 2, "gamma": 0.9}), ("bp_lambda", {"lmbda": 0.5, "gamma": 0.9})],
)
def test_a_stacked_copy_repeat_run_equals_one_run_per_seed(name, options):
    """Each model draws its own bits and keeps its own curriculum (the seeds below reach
    different levels); with the padding masked it trains exactly as alone."""

    from bplambda import TrainConfig, train

    cell = MaskedCell(make_cell("lstm", 10, 8))
    config = TrainConfig(num_batches=40, lr={"rnn": 3e-2, "readout": 3e-2, "synthesiser": 1e-2},
                         log_every=1, progress=False)  # fmt: skip
    rule = make_rule(name, **options)

    def run(seeds):
        task = CopyRepeatTask(batch_size=4, threshold_bits=0.8)
        return train(cell, rule, task, config, seeds=seeds, dtype="float64").table

    both = run([0, 1, 2])
    levels = both[(both.metric == "T") & (both.batch == both.batch.max())].value
    assert levels.nunique() > 1, "the seeds should sit at different levels"
    assert_stacked_run_equals_runs_alone(run, [0, 1, 2], alone=[0, 2])


def test_masked_cell_jacobian_and_padding_flag():
    inner = make_cell("lstm", 3, 2)
    cell = MaskedCell(inner)
    g = torch.Generator().manual_seed(1)
    params = {k: v.double() * 3 for k, v in inner.init_params(g).items()}
    x = torch.randn(4, 4, generator=g, dtype=torch.float64)
    x[:, -1] = torch.tensor([1.0, 0.0, 1.0, 0.0])
    s = torch.randn(4, 4, generator=g, dtype=torch.float64)
    full = jacrev(lambda sp: cell.step(params, x, sp))(s)
    expected = torch.stack([full[b, :, b, :] for b in range(4)])
    assert relative_error(cell.state_jacobian(params, x, s), expected) < 1e-12
    assert cell.step(params, x, s)[1].abs().max() == 0


@pytest.mark.parametrize(
    "name, options",
    [
        ("bptt", {}),
        ("tbptt", {"window": 2}),
        ("sg", {"window": 2, "gamma": 0.9}),
        ("sg", {"window": 3, "gamma": 0.9}),  # a chunk start falls inside the padding
        ("bp_lambda", {"lmbda": 0.5, "gamma": 0.9}),
    ],
)
def test_padding_changes_no_gradient_of_any_group(name, options):
    """A short sequence padded in front inside a stack trains exactly as it would alone: the
    RNN, the readout and the synthesiser (never regressed at padding states)."""
    cell = MaskedCell(make_cell("lstm", 10, 4))
    net = {grp: {k: v.double() for k, v in p.items()} for grp, p in
           init_network(cell, 9, 0, rule=make_rule(name, **options)).items()}  # fmt: skip
    for group in set(net) - {"rnn", "readout"}:  # the synthesiser, where the rule has one
        net[group] = {k: 0.1 * torch.ones_like(v) for k, v in net[group].items()}
    stacked = {grp: {k: torch.stack([v, v]) for k, v in p.items()} for grp, p in net.items()}
    g = torch.Generator().manual_seed(2)
    bits = torch.randint(0, 2, (2, 3, 2, 8), generator=g).float()
    N, R = torch.tensor([1, 2]), torch.tensor([1, 2])
    inputs, targets = copy_repeat_batch(bits, N, R)
    inputs, targets = (
        inputs.double(),
        SequenceTargets(targets.values.double(), targets.weights.double(), "bce"),
    )
    alone_x, alone_y = copy_repeat_batch(bits[:1], N[:1], R[:1])
    alone_y = SequenceTargets(alone_y.values[:, 0].double(), alone_y.weights[:, 0].double(), "bce")
    rule = make_rule(name, **options)
    both = rule.gradients(cell, stacked, inputs, targets)
    alone = rule.gradients(cell, net, alone_x[:, 0].double(), alone_y)
    first = {grp: {k: v[0] for k, v in p.items()} for grp, p in both.grads.items()}
    assert set(first) == set(alone.grads)
    assert_grads_close(first, alone.grads, 1e-10)
    assert relative_error(both.loss[0], alone.loss) < 1e-12


def test_online_traces_refuse_a_padded_stack():
    cell = MaskedCell(make_cell("lstm", 10, 4))
    net = init_network(cell, 9, seed=0)
    inputs, targets = copy_repeat_batch(
        torch.ones(1, 2, 1, 8), torch.tensor([1]), torch.tensor([1])
    )
    stacked = {grp: {k: v.unsqueeze(0) for k, v in p.items()} for grp, p in net.items()}
    with pytest.raises(ValueError, match="lambda_return"):
        make_rule("bp_lambda", implementation="online").gradients(cell, stacked, inputs, targets)


def test_largest_solved_length_is_the_previous_level():
    import pandas as pd

    from bplambda.experiments.copy_repeat_curriculum import solved_length

    N, R, previous = torch.tensor([1]), torch.tensor([1]), 0
    for _ in range(8):
        assert solved_length(pd.Series([int(N)]), pd.Series([int(R)]))[0] == previous
        previous = int(sequence_length(N, R))
        N, R = next_level(N, R, torch.tensor([True]))


def test_copy_repeat_counts_a_model_whose_solved_length_still_grew_as_improving():
    from bplambda.experiments.copy_repeat_curriculum import _improving_at_the_end

    def levels(condition, seed, solved):
        return [{"condition": condition, "seed": seed, "batch": b, "metric": "solved_T",
                 "value": v} for b, v in solved]  # fmt: skip

    rows = (levels("BPTT", 0, [(0, 0), (60, 9), (90, 15)])  # grew after 60 of 90
            + levels("SG(5)", 0, [(0, 0), (60, 9), (90, 9)]))  # fmt: skip
    flags = _improving_at_the_end(pd.DataFrame(rows)).set_index("condition").improving
    assert flags["BPTT"] and not flags["SG(5)"]


def _trained_levels(condition, seed, levels, every=50, diverged=False):
    """Run-table rows of one BP(1) model's level ``T``, logged every ``every`` updates from 0."""
    return [{"condition": condition, "family": "bp_lambda", "lmbda": 1.0, "n": None,
             "variant": "default", "seed": seed, "diverged": diverged, "batch": every * i,
             "t": -1, "metric": "T", "value": T} for i, T in enumerate(levels)]  # fmt: skip


def test_level_stays_count_the_updates_from_one_level_to_the_next():
    from bplambda.experiments.copy_repeat_curriculum import level_stays

    stays = level_stays(pd.DataFrame(_trained_levels("BP(1)", 0, [5, 5, 7, 7, 7])))
    # logged at 0, 50, …, 200: T = 7 from update 100 to the last (the 201st)
    assert stays[["T", "reached", "updates", "last"]].values.tolist() == [
        [5, 0, 100, False],
        [7, 100, 101, True],
    ]


def test_plateaus_take_each_seeds_last_and_longest_stay_and_set_a_diverged_seed_apart():
    from bplambda.experiments.copy_repeat_curriculum import level_plateaus, level_stays

    table = pd.DataFrame(
        _trained_levels("BP(1)", 0, [5, 7, 7, 7, 9, 9])  # longest at 7 (150), last at 9 (51)
        + _trained_levels("BP(1)", 1, [5, 5, 7, 7, 7, 7])  # longest = last: 7 (151)
        + _trained_levels("BP(1)", 2, [5, 5, 5, 5, 5, 5], diverged=True)
    )
    plateaus = level_plateaus(level_stays(table), table).set_index("stay")
    assert plateaus.loc["last", "mean"] == pytest.approx((51 + 151) / 2)
    assert plateaus.loc["longest", "mean"] == pytest.approx((150 + 151) / 2)
    assert plateaus.loc["last", "levels"] == "7, 9"
    assert plateaus.loc["longest", "levels"] == "7, 7"
    assert (plateaus.seeds == 2).all() and (plateaus.diverged == 1).all()


def test_the_claim_is_not_testable_where_every_truncated_model_diverged():
    """A diverged model's solved length never enters a mean, so with every truncated model
    diverged there is no best rival: the claim says so instead of failing the report."""
    from bplambda.experiments.copy_repeat_curriculum import claims, config, tables

    def model(condition, family, lmbda, n, seed, diverged):
        labels = {"condition": condition, "family": family, "lmbda": lmbda, "n": n,
                  "variant": "default", "seed": seed, "diverged": diverged, "t": -1}  # fmt: skip
        return [
            {**labels, "batch": batch, "metric": metric, "value": value}
            for batch in (0, 50)
            for metric, value in (("N", 2), ("R", 1), ("T", 5))
        ]

    rows = [row for seed in (0, 1, 2)
            for row in model("BP(1)", "bp_lambda", 1.0, None, seed, False)
            + model("TBPTT(2)", "tbptt", None, 2, seed, True)]  # fmt: skip
    cfg = config("smoke", seeds=[0, 1, 2])
    (claim,) = claims(tables(pd.DataFrame(rows), cfg), cfg)
    assert "TBPTT(2)" in claim["bplambda"] and "3/3 diverged" in claim["bplambda"]
    assert claim["verdict"] == "not testable (no seed on one side)"
