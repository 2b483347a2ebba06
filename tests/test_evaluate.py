"""Held-out evaluation: the training loss, forward only, chunked, per stacked model."""

import pytest
import torch
from conftest import model_of

from bplambda.cells import make_cell, unroll
from bplambda.evaluate import classification_metrics, evaluation_metrics
from bplambda.readout import SequenceTargets, readout, step_losses
from bplambda.rules import make_rule
from bplambda.stacking import init_stacked_network

T, N, N_IN, HIDDEN, N_OUT = 6, 7, 3, 4, 3
SEEDS = [0, 1]


def _problem(cell_name: str, kind: str, seed: int = 0):
    """A stacked float64 model (K = 2) and a shared data set with two unscored steps."""
    cell = make_cell(cell_name, N_IN, HIDDEN)
    params = init_stacked_network(cell, N_OUT, SEEDS, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(T, N, N_IN, generator=g, dtype=torch.float64)
    weights = torch.rand(T, generator=g, dtype=torch.float64) + 0.1
    weights[[0, 3]] = 0.0
    if kind == "cross_entropy":
        values = torch.randint(0, N_OUT, (T, N), generator=g)
    else:
        values = torch.randn(T, N, N_OUT, generator=g, dtype=torch.float64)
    return cell, params, inputs, SequenceTargets(values, weights, kind)


def _stacked(t: torch.Tensor) -> torch.Tensor:
    """``(T, N, ...)`` → ``(T, K, N, ...)``, one copy per model."""
    return t.unsqueeze(1).expand(t.shape[0], len(SEEDS), *t.shape[1:])


@pytest.mark.parametrize("kind", ["mse", "cross_entropy"])
@pytest.mark.parametrize("cell_name", ["rate_rnn", "lstm"])
def test_the_evaluation_loss_is_the_training_loss(cell_name, kind):
    cell, params, inputs, targets = _problem(cell_name, kind)
    metrics = evaluation_metrics(cell, params, inputs, targets)
    x = _stacked(inputs)
    stacked = SequenceTargets(_stacked(targets.values), targets.weights, kind)
    outputs = readout(params["readout"], cell.hidden(unroll(cell, params["rnn"], x)))
    training = step_losses(outputs, stacked).sum(0)
    assert metrics["loss"].shape == (len(SEEDS),)
    torch.testing.assert_close(metrics["loss"], training, rtol=1e-13, atol=0)
    bptt = make_rule("bptt").gradients(cell, params, x, stacked).loss
    torch.testing.assert_close(metrics["loss"], bptt, rtol=1e-13, atol=0)
    assert ("error" in metrics) == (kind == "cross_entropy")


@pytest.mark.parametrize("kind", ["mse", "cross_entropy"])
def test_the_loss_comes_with_its_standard_error_over_the_examples(kind):
    cell, params, inputs, targets = _problem("rate_rnn", kind)
    metrics = evaluation_metrics(cell, params, inputs, targets)
    one = [SequenceTargets(targets.values[:, i : i + 1], targets.weights, kind) for i in range(N)]
    each = torch.stack([evaluation_metrics(cell, params, inputs[:, i : i + 1], one[i])["loss"]
                        for i in range(N)])  # fmt: skip
    torch.testing.assert_close(metrics["loss"], each.mean(0), rtol=1e-12, atol=0)
    expected = each.std(0) / N**0.5  # (K,): the examples' spread over √N
    torch.testing.assert_close(metrics["loss_se"], expected, rtol=1e-9, atol=0)


@pytest.mark.parametrize("kind", ["mse", "cross_entropy"])
def test_chunking_does_not_change_the_result(kind):
    cell, params, inputs, targets = _problem("rate_rnn", kind)
    whole = evaluation_metrics(cell, params, inputs, targets, chunk=N)
    for chunk in (1, 3):
        chunked = evaluation_metrics(cell, params, inputs, targets, chunk=chunk)
        for name in whole:
            torch.testing.assert_close(chunked[name], whole[name], rtol=1e-13, atol=0)


def test_stacked_equals_per_model_and_model_dims_may_be_many():
    cell, params, inputs, targets = _problem("lstm", "cross_entropy")
    stacked = evaluation_metrics(cell, params, inputs, targets)
    for k in range(len(SEEDS)):
        alone = model_of(params, k)
        single = evaluation_metrics(cell, alone, inputs, targets)
        assert single["loss"].shape == ()
        for name in stacked:
            torch.testing.assert_close(single[name], stacked[name][k], rtol=1e-13, atol=0)
    grid = {g: {n: v.expand(3, *v.shape) for n, v in group.items()} for g, group in params.items()}
    in_a_grid = evaluation_metrics(cell, grid, inputs, targets)  # *M = (3, K)
    assert in_a_grid["loss"].shape == (3, len(SEEDS))
    for name in stacked:
        torch.testing.assert_close(in_a_grid[name], stacked[name].expand(3, -1))


def test_the_error_counts_the_scored_steps_only():
    cell, params, inputs, targets = _problem("rate_rnn", "cross_entropy")
    metrics = evaluation_metrics(cell, params, inputs, targets)
    outputs = readout(params["readout"], cell.hidden(unroll(cell, params["rnn"], _stacked(inputs))))
    wrong = outputs.argmax(-1) != _stacked(targets.values)  # (T, K, N)
    scored = targets.weights != 0
    torch.testing.assert_close(metrics["error"], wrong[scored].double().mean(dim=(0, 2)))
    changed = targets.values.clone()
    changed[0] = (changed[0] + 1) % N_OUT  # an unscored step: nothing changes
    same = evaluation_metrics(
        cell, params, inputs, SequenceTargets(changed, targets.weights, "cross_entropy")
    )
    assert all(torch.equal(same[n], metrics[n]) for n in metrics)
    changed[-1] = (changed[-1] + 1) % N_OUT  # a scored step: both change
    other = evaluation_metrics(
        cell, params, inputs, SequenceTargets(changed, targets.weights, "cross_entropy")
    )
    assert not torch.equal(other["loss"], metrics["loss"])
    assert not torch.equal(other["error"], metrics["error"])


def test_last_step_classification_keeps_its_wrapper():
    cell, params, inputs, targets = _problem("lstm", "cross_entropy")
    labels = targets.values[-1]
    last = torch.zeros(T, dtype=torch.float64)
    last[-1] = 1.0
    expected = evaluation_metrics(
        cell, params, inputs, SequenceTargets(targets.values, last, "cross_entropy")
    )
    wrapped = classification_metrics(cell, params, inputs.movedim(0, 1), labels, chunk=2)
    for name in ("loss", "error"):
        torch.testing.assert_close(wrapped[name], expected[name], rtol=1e-13, atol=0)


def test_per_model_weights_are_refused():
    cell, params, inputs, targets = _problem("rate_rnn", "mse")
    per_model = SequenceTargets(
        targets.values, _stacked(targets.weights.unsqueeze(-1))[..., 0], "mse"
    )
    with pytest.raises(ValueError, match=r"weights \(T,\)"):
        evaluation_metrics(cell, params, inputs, per_model)


def test_generalisation_scores_train_and_every_test_split_and_their_gaps():
    from bplambda.evaluate import generalisation
    from bplambda.tasks.mnist import SequentialMNIST

    g = torch.Generator().manual_seed(0)
    images = {s: torch.rand(12, 28, 28, generator=g) for s in ("train", "val", "test")}
    labels = {s: torch.randint(0, 10, (12,), generator=g) for s in images}
    task = SequentialMNIST(images["train"], labels["train"], 4,
                           {s: (images[s], labels[s]) for s in ("val", "test")})  # fmt: skip
    cell = make_cell("rate_rnn", 28, HIDDEN)
    params = init_stacked_network(cell, 10, SEEDS, dtype=torch.float64)
    metrics = generalisation(cell, params, task, size=8, seed=3)
    splits = ("train", "test", "test_noisy")
    assert {f"{s}_{m}" for s in splits for m in ("loss", "error")} <= set(metrics)
    for split in ("test", "test_noisy"):
        for m in ("loss", "error"):
            gap = metrics[f"gap_{split}_{m}"]
            assert torch.equal(gap, metrics[f"{split}_{m}"] - metrics[f"train_{m}"])
            assert gap.shape == (2,)
        se = metrics[f"{split}_loss_se"].hypot(metrics["train_loss_se"])
        assert torch.equal(metrics[f"gap_{split}_loss_se"], se) and (se > 0).all()
    inputs, targets = task.evaluation_set("test_noisy", 8, 3)
    direct = evaluation_metrics(cell, params, inputs, targets)["loss"]
    assert torch.equal(metrics["test_noisy_loss"], direct)
    assert not torch.equal(metrics["test_noisy_loss"], metrics["test_loss"])  # noise matters
