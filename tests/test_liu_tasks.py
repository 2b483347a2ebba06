"""Liu et al. 2022's tasks: pattern generation, delayed match-to-sample, noisy seq-MNIST."""

import math

import pytest
import torch

from bplambda.tasks import DelayedMatch, PatternGeneration
from bplambda.tasks.delayed_match import gaussian_bump
from bplambda.tasks.mnist import MNISTSplits, SequentialMNIST, as_sequences, noisy_images
from bplambda.tasks.pattern_generation import sum_of_sines


def _generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def _small_pattern(**options) -> PatternGeneration:
    return PatternGeneration(**{"seq_len": 40, "input_size": 6, "batch_size": 3, **options})


def _small_match(**options) -> DelayedMatch:
    sizes = {"delay": 20, "cue_len": 10, "sigma": 2.5, "batch_size": 16, "eval_size": 8}
    return DelayedMatch(**{**sizes, **options})


def _small_mnist() -> SequentialMNIST:
    g = torch.Generator().manual_seed(0)

    def images(n: int) -> torch.Tensor:
        return torch.rand(n, 28, 28, generator=g)

    def labels(n: int) -> torch.Tensor:
        return torch.randint(0, 10, (n,), generator=g)

    splits = MNISTSplits(images(30), labels(30), images(10), labels(10), images(12), labels(12))
    return SequentialMNIST.from_splits(splits, batch_size=5)


# ----------------------------------------------------------------------------- pattern generation
def test_pattern_generation_layout():
    task = _small_pattern()
    inputs, targets = task.sample(_generators(0, 1))
    assert inputs.shape == (40, 2, 3, 6) and inputs.dtype == torch.float32
    assert targets.values.shape == (40, 2, 3, 1) and targets.values.dtype == torch.float32
    assert targets.kind == "mse" and torch.equal(targets.weights, torch.full((40,), 1 / 40))
    assert set(inputs.unique().tolist()) <= {0.0, 1.0}
    frozen = task.frozen_input[:, None, None].expand_as(inputs)
    assert torch.equal(inputs, frozen)  # identical copies for every model and example
    assert torch.equal(targets.values[:, 1, 2, 0], task.target)


def test_the_target_is_the_sum_of_sines():
    amplitudes = torch.tensor([0.7, 1.9, 1.2, 0.5])
    phases = torch.tensor([0.3, 5.0, 2.2, 4.1])
    periods = (1000.0, 500.0, 333.0, 200.0)
    y = sum_of_sines(1000, amplitudes, periods, phases)
    explicit = [
        sum(
            a * math.sin(2 * math.pi * t / P + phi)
            for a, P, phi in zip(amplitudes.tolist(), periods, phases.tolist())
        )
        for t in range(1000)
    ]
    torch.testing.assert_close(y, torch.tensor(explicit), rtol=0, atol=1e-5)
    task = PatternGeneration(seq_len=300, input_size=2, seed=4)
    assert task.amplitudes.min() >= 0.5 and task.amplitudes.max() <= 2.0
    assert task.phases.min() >= 0 and task.phases.max() < 2 * math.pi
    assert torch.equal(task.target, sum_of_sines(300, task.amplitudes, task.periods, task.phases))
    other = PatternGeneration(seq_len=300, input_size=2, seed=5)
    assert not torch.equal(task.target, other.target)  # the target is drawn from the seed


def test_inputs_spike_at_the_poisson_rate():
    task = PatternGeneration()  # 1000 steps × 100 channels: the mean has sd 7e-4
    assert task.frozen_input.shape == (1000, 100)
    assert abs(task.frozen_input.mean().item() - 0.05) < 0.005
    denser = PatternGeneration(seq_len=200, rate=0.3)
    assert abs(denser.frozen_input.mean().item() - 0.3) < 0.02
    test_inputs = task.evaluation_set("test", size=4)[0]
    assert abs(test_inputs.mean().item() - 0.05) < 0.005  # resampling keeps the rate


def test_the_pattern_test_set_resamples_a_fraction_of_the_input():
    task = _small_pattern(seq_len=500, input_size=40, test_noise=0.5)
    train, _ = task.evaluation_set("train", size=2)
    test, targets = task.evaluation_set("test", size=10, seed=1)
    assert train.shape[1] == 1 and torch.equal(train[:, 0], task.frozen_input)  # one sequence
    changed = (test != task.frozen_input[:, None]).float().mean().item()
    expected = 0.5 * 2 * 0.05 * 0.95  # resampled, and then different
    assert abs(changed - expected) < 0.2 * expected
    assert torch.equal(targets.values[:, 3, 0], task.target)
    assert task.evaluation_set("train")[0].shape == (500, 1, 40)  # the whole training set
    assert task.evaluation_set("test")[0].shape == (500, task.eval_size, 40)
    same = _small_pattern(test_noise=0.0)
    assert torch.equal(same.evaluation_set("test", 3)[0],
                       same.evaluation_set("train")[0].expand(-1, 3, -1))  # fmt: skip


# ----------------------------------------------------------------------------- delayed match
def test_delayed_match_layout():
    task = _small_match()
    assert task.seq_len == 10 + 20 + 10
    inputs, targets = task.sample(_generators(0, 1))
    assert inputs.shape == (40, 2, 16, 2) and inputs.dtype == torch.float32
    assert targets.values.shape == (40, 2, 16) and targets.values.dtype == torch.int64
    assert targets.kind == "cross_entropy"
    assert targets.weights.tolist() == [0.0] * 39 + [1.0]
    assert torch.equal(targets.values, targets.values[-1].expand_as(targets.values))


def test_the_label_is_match_and_the_cues_sit_where_documented():
    task = _small_match(batch_size=64)
    inputs, targets = task.sample(_generators(3))
    first = inputs[:10, ..., 0].max(0).values > 1.0  # a present cue peaks near 2
    second = inputs[-10:, ..., 1].max(0).values > 1.0
    assert first.any() and (~first).any() and second.any() and (~second).any()
    assert torch.equal(targets.values[-1], (first == second).long())
    quiet = torch.cat([inputs[10:, ..., 0], inputs[:-10, ..., 1]])
    assert quiet.max() < 0.1  # no cue outside the windows
    assert abs(quiet.mean().item() - 0.02) < 2e-3 and abs(quiet.std().item() - 0.01) < 2e-3


def test_the_bump_rides_on_the_baseline_at_the_window_centres():
    task = _small_match(delay=20)
    cues = torch.tensor([[1, 1], [0, 0], [1, 0]])
    inputs, targets = task.trials(cues, torch.zeros(40, 3, 2))
    bump = gaussian_bump(10, 2.0, 2.5)
    assert torch.equal(inputs[:, 1], torch.full((40, 2), 0.02))  # no cue: the baseline only
    torch.testing.assert_close(inputs[:10, 0, 0], 0.02 + bump)
    torch.testing.assert_close(inputs[30:, 0, 1], 0.02 + bump)
    assert torch.equal(inputs[10:, 0, 0], torch.full((30,), 0.02))
    assert torch.equal(inputs[:30, 0, 1], torch.full((30,), 0.02))
    assert targets.values[-1].tolist() == [1, 1, 0]
    assert bump.argmax().item() in (4, 5) and torch.allclose(bump, bump.flip(0))  # centred
    wide = gaussian_bump(100, 2.0, 25.0)  # the defaults: σ = 25 steps (on the code's grid)
    assert 1.999 < wide.max().item() <= 2.0
    assert abs(wide[round(49.5 + 25)].item() / 2.0 - math.exp(-0.5)) < 0.02


def test_the_delay_moves_the_second_cue():
    cues = torch.tensor([[0, 1]])
    for delay in (20, 45):
        task = _small_match(delay=delay)
        inputs, _ = task.trials(cues, torch.zeros(task.seq_len, 1, 2))
        assert task.seq_len == 20 + delay
        assert inputs[:, 0, 1].argmax().item() in (10 + delay + 4, 10 + delay + 5)
    longer = _small_match(test_delay=45)
    assert longer.evaluation_set("test", 2)[0].shape == (65, 2, 2)
    assert longer.evaluation_set("train", 2)[0].shape == (40, 2, 2)


def test_a_finite_training_set_is_what_every_batch_draws_from_and_what_train_measures():
    """With ``train_size`` the batches are trials of one fixed set (the same for every model,
    as a data set), ``"train"`` measures that set, and the tests are fresh trials: a gap can
    show. ``"test_noisy"`` carries ``noisy_test_std``."""
    task = DelayedMatch(delay=6, cue_len=4, sigma=1.0, batch_size=5, train_size=7,
                        noisy_test_std=0.3)  # fmt: skip
    fixed, labels = task.training_set
    assert fixed.shape == (14, 7, 2)
    inputs, targets = task.sample(_generators(3, 4))
    for k in range(2):
        for b in range(5):
            same = (fixed == inputs[:, k, b : b + 1]).all(dim=(0, 2))
            assert same.any()  # a trial of the training set, with its label
            assert targets.values[-1, k, b] == labels.values[-1, same.nonzero()[0, 0]]
    train = task.evaluation_set("train")[0]
    assert torch.equal(train, fixed) and torch.equal(
        task.evaluation_set("train", 3)[0], fixed[:, :3]
    )
    test = task.evaluation_set("test", 50)[0]
    assert not any((fixed[:, i : i + 1] == test).all(dim=(0, 2)).any() for i in range(7))
    clean, noisy = task.evaluation_set("test", 400)[0], task.evaluation_set("test_noisy", 400)[0]
    delay_window = slice(4, 10)  # between the cues: baseline plus noise only
    assert clean[delay_window].std().item() == pytest.approx(0.01, rel=0.1)
    assert noisy[delay_window].std().item() == pytest.approx(0.3, rel=0.1)
    with pytest.raises(ValueError, match="train_size"):
        DelayedMatch(train_size=0)


# ----------------------------------------------------------------------------- every task
TASKS = {"pattern": _small_pattern, "match": _small_match, "mnist": _small_mnist}


@pytest.mark.parametrize("make", TASKS.values(), ids=TASKS.keys())
def test_sample_is_per_seed_and_stacked_equals_separate(make):
    inputs, targets = make().sample(_generators(3, 4, 3))
    assert torch.equal(inputs[:, 0], inputs[:, 2])
    for k, seed in enumerate((3, 4)):
        alone_inputs, alone_targets = make().sample(_generators(seed))
        assert torch.equal(inputs[:, k], alone_inputs[:, 0])
        assert torch.equal(targets.values[:, k], alone_targets.values[:, 0])


def test_seeds_draw_different_trials():
    inputs, targets = _small_match().sample(_generators(3, 4))
    assert not torch.equal(inputs[:, 0], inputs[:, 1])


@pytest.mark.parametrize("make", TASKS.values(), ids=TASKS.keys())
def test_evaluation_sets_are_fixed_and_held_out(make):
    task = make()
    assert {"train", "test"} <= set(task.SPLITS)
    for split in task.SPLITS:
        inputs, targets = task.evaluation_set(split, size=4, seed=2)
        again_inputs, again_targets = make().evaluation_set(split, size=4, seed=2)
        assert torch.equal(inputs, again_inputs) and torch.equal(
            targets.values, again_targets.values
        )
        n = 1 if (split, type(task).__name__) == ("train", "PatternGeneration") else 4
        assert inputs.shape[1:] == (n, task.input_size) and inputs.dtype == torch.float32
        assert targets.values.shape[:2] == (inputs.shape[0], n)
        assert targets.weights.shape == (inputs.shape[0],)
    train, test = task.evaluation_set("train", 4, 2)[0], task.evaluation_set("test", 4, 2)[0]
    assert not torch.equal(train, test)
    with pytest.raises(ValueError, match="'train'.*'test'"):
        task.evaluation_set("tset")


# ----------------------------------------------------------------------------- seq-MNIST
def test_noisy_images_are_seeded_clipped_and_have_sd_sigma():
    clean = torch.full((20, 28, 28), 0.5)
    noisy = noisy_images(clean, 0.2, seed=1)
    assert noisy.min() >= 0 and noisy.max() <= 1
    assert torch.equal(noisy, noisy_images(clean, 0.2, seed=1))
    assert not torch.equal(noisy, noisy_images(clean, 0.2, seed=2))
    assert 0.19 < (noisy - clean).std().item() < 0.205  # clipping at ±2.5σ: about 0.198
    edges = noisy_images(torch.tensor([0.0, 1.0]).repeat(500), 0.2, seed=1)
    assert edges.min() == 0.0 and edges.max() == 1.0  # clipped, not wrapped


def test_mnist_held_out_splits():
    task = _small_mnist()
    assert task.SPLITS == ("train", "val", "test", "test_noisy")
    whole_inputs, whole_targets = task.evaluation_set("test")
    expected_inputs, expected_targets = as_sequences(*task.held_out["test"])
    assert torch.equal(whole_inputs, expected_inputs)
    assert torch.equal(whole_targets.values, expected_targets.values)
    clean_inputs, clean_targets = task.evaluation_set("test", size=6, seed=3)
    noisy_inputs, noisy_targets = task.evaluation_set("test_noisy", size=6, seed=3)
    assert torch.equal(noisy_targets.values, clean_targets.values)  # the same images
    clean_images = clean_inputs.movedim(0, 1)
    assert torch.equal(noisy_inputs.movedim(0, 1), noisy_images(clean_images, 0.2, seed=3))
    assert task.evaluation_set("val")[0].shape == (28, 10, 28)
    with pytest.raises(ValueError, match="size=13"):
        task.evaluation_set("test", size=13)
    bare = SequentialMNIST(torch.rand(10, 28, 28), torch.zeros(10, dtype=torch.long), 5)
    assert bare.evaluation_set("train")[0].shape == (28, 10, 28)
    with pytest.raises(ValueError, match="from_splits"):
        bare.evaluation_set("test_noisy")
