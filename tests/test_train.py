"""The training loop, stacking and the toy task."""

import pandas as pd
import pytest
import torch

from bplambda import ToyTask, TrainConfig, make_cell, make_rule, train
from bplambda.device import resolve_device, resolve_dtype
from bplambda.stacking import init_network, init_stacked_network
from bplambda.tasks.toy import toy_input_code
from bplambda.train import COLUMNS


def test_toy_task_matches_the_official_generator():
    assert toy_input_code().tolist() == [1, 1, 0, 1, 0, 0, 0, 0, 0, 1]
    inputs, targets = ToyTask(seq_len=4, batch_size=3).sample(torch.Generator(), (2,))
    assert inputs.shape == (4, 2, 3, 10)
    assert inputs[1:].abs().max() == 0
    assert targets.weights.tolist() == [0, 0, 0, 1]
    assert targets.values[-1, ..., 1].eq(1).all() and targets.values[-1, ..., 0].eq(0).all()


def test_stacked_init_equals_single_inits():
    cell = make_cell("lstm", 3, 4)
    stacked = init_stacked_network(cell, 2, [5, 7])
    for k, seed in enumerate([5, 7]):
        single = init_network(cell, 2, seed)
        for group, tensors in single.items():
            for name, value in tensors.items():
                assert torch.equal(stacked[group][name][k], value)
    with pytest.raises(ValueError, match="seeds"):
        init_stacked_network(cell, 2, [])


def _toy_run(lmbda, seeds=(0, 1), num_batches=60, **kwargs):
    cell = make_cell("linear_rnn", 10, 30)
    config = TrainConfig(
        num_batches=num_batches,
        lr_rnn=0,
        lr_readout=0,
        lr_synthesiser=1e-3,
        track_alignment=True,
        log_every=10,
        progress=False,
        **kwargs,
    )
    return train(cell, make_rule("bp_lambda", lmbda=lmbda), ToyTask(10), config, seeds=list(seeds))


def test_train_returns_a_tidy_table_and_is_repeatable():
    a = _toy_run(1.0)
    b = _toy_run(1.0)
    assert list(a.table.columns) == COLUMNS
    assert set(a.table.metric) == {
        "loss",
        "alignment_synthetic",
        "alignment_signal",
        "future_gradient_norm",
    }
    assert set(a.table.seed) == {0, 1}
    pd.testing.assert_frame_equal(a.table, b.table)


def test_stacked_training_equals_one_seed_at_a_time():
    both = _toy_run(0.5, seeds=(3, 4), num_batches=20).table
    alone = _toy_run(0.5, seeds=(4,), num_batches=20).table
    picked = both[both.seed == 4].reset_index(drop=True)
    pd.testing.assert_series_equal(picked.value, alone.value, rtol=1e-5)


def test_the_synthesiser_learns_to_align_better_with_lambda_one_than_zero():
    def final(lmbda):
        t = _toy_run(lmbda, num_batches=200).table
        last = t[(t.metric == "alignment_synthetic") & (t.batch == t.batch.max())]
        return last.value.mean()

    assert final(1.0) > final(0.0) + 0.1


def test_plastic_rnn_lowers_the_loss_and_tracks_update_alignment():
    cell = make_cell("linear_rnn", 10, 30)
    config = TrainConfig(
        num_batches=100,
        lr_rnn=1e-3,
        lr_readout=1e-3,
        lr_synthesiser=1e-3,
        log_every=99,
        track_update_alignment=True,
        progress=False,
    )
    table = train(cell, make_rule("bp_lambda"), ToyTask(10), config, seeds=[0]).table
    loss = table[table.metric == "loss"].value.tolist()
    assert loss[-1] < 0.5 * loss[0]
    cos = table[table.metric == "update_alignment"].value
    assert len(cos) == 2 and (cos.abs() <= 1).all()


def test_update_every_step_needs_the_online_rule_and_runs_with_it():
    cell = make_cell("tanh_rnn", 10, 5)
    config = TrainConfig(num_batches=3, update_every_step=True, progress=False)
    with pytest.raises(ValueError, match="online"):
        train(cell, make_rule("bp_lambda"), ToyTask(4), config)
    online = make_rule("bp_lambda", implementation="online")
    table = train(cell, online, ToyTask(4), config).table
    assert table[table.metric == "loss"].shape[0] == 3


def test_divergence_is_reported_clearly():
    cell = make_cell("linear_rnn", 10, 30)
    config = TrainConfig(num_batches=50, lr_rnn=1e6, lr_readout=1e6, progress=False)
    with pytest.raises(FloatingPointError, match="not finite"):
        train(cell, make_rule("bptt"), ToyTask(10), config)


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="lr_rnn"):
        TrainConfig(num_batches=1, lr_rnn=-1)
    with pytest.raises(ValueError, match="num_batches"):
        TrainConfig(num_batches=0)
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float16")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_cosine_is_zero_for_a_silent_estimate_and_undefined_without_a_reference():
    from bplambda.metrics import cosine

    ref = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    est = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 2.0]])
    cos = cosine(est, ref)
    assert cos[0] == 0 and torch.isnan(cos[1]) and torch.isclose(cos[2], torch.tensor(1.0))
