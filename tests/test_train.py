"""The training loop, stacking and the toy task."""

import importlib
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from bplambda import ToyTask, TrainConfig, make_cell, make_rule, train
from bplambda.device import resolve_device, resolve_dtype, upload
from bplambda.stacking import init_network, init_stacked_network
from bplambda.tasks.toy import toy_input_code
from bplambda.train import COLUMNS


def test_toy_task_matches_the_official_generator():
    assert toy_input_code().tolist() == [1, 1, 0, 1, 0, 0, 0, 0, 0, 1]
    inputs, targets = ToyTask(seq_len=4, batch_size=3).sample([torch.Generator()] * 2)
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
        lr={"rnn": 0, "readout": 0, "synthesiser": 1e-3},
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
        "alignment_applied",
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
        lr={"rnn": 1e-3, "readout": 1e-3, "synthesiser": 1e-3},
        log_every=99,
        track_update_alignment=True,
        progress=False,
    )
    table = train(cell, make_rule("bp_lambda"), ToyTask(10), config, seeds=[0]).table
    loss = table[table.metric == "loss"].value.tolist()
    assert loss[-1] < 0.5 * loss[0]
    cos = table[table.metric == "update_alignment"].value
    assert len(cos) == 2 and (cos < 0.999).all()  # not BPTT's update, which is checked next
    bptt = train(cell, make_rule("bptt"), ToyTask(10), config, seeds=[0], dtype="float64").table
    np.testing.assert_allclose(bptt[bptt.metric == "update_alignment"].value, 1.0, atol=1e-9)


def test_update_every_step_needs_the_online_rule_and_runs_with_it():
    cell = make_cell("tanh_rnn", 10, 5)
    config = TrainConfig(num_batches=3, update_every_step=True, progress=False)
    with pytest.raises(ValueError, match="online"):
        train(cell, make_rule("bp_lambda"), ToyTask(4), config)
    online = make_rule("bp_lambda", implementation="online")
    table = train(cell, online, ToyTask(4), config).table
    assert table[table.metric == "loss"].shape[0] == 3


def _diverging_run(seeds, num_batches=60, lr=0.04):
    """Plastic linear RNN, BPTT, lr 0.04, float64: seeds 3 (batch 23) and 5 (batch 15) blow up
    past a loss of 1e3, seeds 0, 1, 2 and 4 do not (found by a scan; the test checks it)."""
    cell = make_cell("linear_rnn", 10, 30)
    config = TrainConfig(num_batches=num_batches, lr={"rnn": lr, "readout": lr}, log_every=5,
                         divergence_threshold=1e3, progress=False)  # fmt: skip
    rule = make_rule("bptt")
    return train(cell, rule, ToyTask(10), config, seeds=list(seeds), dtype="float64")


def test_a_diverging_model_is_frozen_and_marked_while_the_others_go_on():
    stacked = _diverging_run([5, 1, 3])
    assert stacked.diverged_at == [15, None, 23]
    table = stacked.table
    by_seed = table.groupby("seed")
    assert by_seed.diverged.all().to_dict() == {1: False, 3: True, 5: True}
    assert by_seed.diverged.any().to_dict() == {1: False, 3: True, 5: True}
    assert table[table.seed == 5].diverged_at.eq(15).all()
    assert table[table.seed == 1].diverged_at.isna().all()
    # rows stop at the divergence; the diverging batch's own rows show what happened
    assert by_seed.batch.max().to_dict() == {1: 59, 3: 20, 5: 15}
    loss = table[(table.metric == "loss") & (table.seed == 5)].set_index("batch").value
    assert loss[15] > 1e3 or not torch.isfinite(torch.tensor(loss[15]))
    # the healthy model is untouched by its diverging neighbours: bit for bit what it does
    # beside healthy ones in a stack of the same shape (so the kernels are the same)
    calm = _diverging_run([0, 1, 2])
    assert calm.diverged_at == [None, None, None]
    healthy = table[table.seed == 1].drop(columns="model").reset_index(drop=True)
    beside_calm = calm.table[calm.table.seed == 1].drop(columns="model").reset_index(drop=True)
    pd.testing.assert_frame_equal(healthy, beside_calm, check_exact=True)
    # the diverged model kept the parameters it had when it diverged (no update after it)
    # (the same stack trained for the 15 batches before it: batch 15's update never applied)
    before = _diverging_run([5, 1, 3], num_batches=15).params
    for group, tensors in before.items():
        for name, value in tensors.items():
            assert torch.equal(stacked.params[group][name][0], value[0]), (group, name)
            if group != "synthesiser":  # BPTT has none to train; the healthy model moved on
                assert not torch.equal(stacked.params[group][name][1], value[1]), (group, name)


def test_a_run_whose_models_all_diverge_stops_without_raising():
    result = _diverging_run([0, 1], num_batches=500, lr=1e6)
    assert all(at is not None and at <= 5 for at in result.diverged_at)
    assert result.table.batch.max() <= 5


def test_summaries_count_diverged_seeds_apart_instead_of_averaging_them():
    from bplambda.analysis import final_batch, summarise

    table = _diverging_run([5, 1, 3]).table.assign(condition="BPTT", T=10)
    final = final_batch(table[table.metric == "loss"])
    assert sorted(final.seed) == [1, 3, 5]
    summary = summarise(final, ["condition"]).iloc[0]
    assert (summary.seeds, summary.diverged) == (1, 2)
    healthy = final[final.seed == 1].value.iloc[0]
    assert summary["mean"] == pytest.approx(healthy)


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="rnn"):
        TrainConfig(num_batches=1, lr={"rnn": -1})
    with pytest.raises(ValueError, match="num_batches"):
        TrainConfig(num_batches=0)
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("float16")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda"}
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.parametrize(
    "device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no GPU here"))],
)  # fmt: skip
def test_upload_casts_floats_only_and_takes_expanded_views(device):
    floats = torch.arange(3, dtype=torch.float64)[None].expand(2, 3)  # stride 0: not pinnable
    labels = torch.tensor([1, 2])
    moved, kept = upload(floats, device, torch.float32), upload(labels, device, torch.float32)
    assert moved.dtype == torch.float32 and moved.device.type == device
    assert torch.equal(moved.cpu(), floats.float()) and kept.dtype == torch.int64
    assert torch.equal(kept.cpu(), labels)


def test_cosine_is_zero_for_a_silent_estimate_and_undefined_without_a_reference():
    from bplambda.metrics import cosine

    ref = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    est = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 2.0]])
    cos = cosine(est, ref)
    assert cos[0] == 0 and torch.isnan(cos[1]) and torch.isclose(cos[2], torch.tensor(1.0))


def test_sgd_with_l2_is_one_plain_step_on_the_rule_gradient_plus_l2_w():
    """Plain SGD with the L2 term: W ← W − lr·(∇̃ + l2·W) for weights, biases without L2;
    the L2 gradient is the autograd gradient of l2_penalty."""
    from bplambda.regularisation import l2_penalty

    cell, task, rule, lr, l2 = (
        make_cell("tanh_rnn", 10, 4),
        ToyTask(5),
        make_rule("bptt"),
        0.1,
        0.01,
    )
    config = TrainConfig(num_batches=1, lr={"rnn": lr, "readout": lr}, optimiser="sgd", l2=l2,
                         progress=False)  # fmt: skip
    before = init_stacked_network(cell, task.output_size, [3], torch.float64)
    inputs, targets = task.sample([torch.Generator().manual_seed(3)])
    grads = rule.gradients(cell, before, inputs.double(), targets.to("cpu", torch.float64)).grads
    after = train(cell, rule, task, config, seeds=[3], dtype="float64").params
    leaves = [(g, k, v.clone().requires_grad_()) for g in ("rnn", "readout")
              for k, v in before[g].items()]  # fmt: skip
    penalty = {g: {k: v for gg, k, v in leaves if gg == g} for g in ("rnn", "readout")}
    l2_grads = torch.autograd.grad(l2_penalty(penalty, l2).sum(), [v for *_, v in leaves],
                                   allow_unused=True, materialize_grads=True)  # fmt: skip
    for (group, name, value), l2_grad in zip(leaves, l2_grads):
        expected = value.detach() - lr * (grads[group][name] + l2_grad)
        assert torch.allclose(after[group][name], expected, atol=1e-12)
        assert (l2_grad.abs().sum() > 0) == name.startswith("weight")  # biases carry no L2


def test_a_rule_trains_only_its_groups_and_each_needs_a_learning_rate():
    cell, task = make_cell("linear_rnn", 10, 4), ToyTask(5)
    bptt = train(cell, make_rule("bptt"), task, TrainConfig(num_batches=1, lr={"rnn": 1e-3,
                 "readout": 1e-3}, progress=False)).params  # fmt: skip
    assert set(bptt) == {"rnn", "readout"}  # no synthesiser made for a rule without one
    sg = make_rule("sg", window=2)
    assert sg.trains == ("rnn", "readout", "synthesiser")
    assert make_rule("sg", window=2, learn_synthesiser=False).trains == ("rnn", "readout")
    with pytest.raises(ValueError, match="synthesiser"):
        train(cell, sg, task, TrainConfig(num_batches=1, lr={"rnn": 0, "readout": 0}))
    with pytest.raises(ValueError, match="optimiser"):
        TrainConfig(num_batches=1, optimiser="rmsprop")
    mixed = TrainConfig(num_batches=1, optimiser={"rnn": "sgd", "readout": "sgd"})
    assert [mixed.optimiser_of(g) for g in ("rnn", "synthesiser")] == ["sgd", "adam"]
    with pytest.raises(ValueError, match="optimiser"):
        TrainConfig(num_batches=1, optimiser={"rnn": "rmsprop"})
    with pytest.raises(ValueError, match="l2"):
        TrainConfig(num_batches=1, l2=-1)


def test_a_compiled_step_trains_as_the_eager_one_and_only_for_autograd_rules(monkeypatch):
    training = importlib.import_module("bplambda.train")  # the package's `train` is the function
    compiled = []
    real = training.with_compiled_step
    monkeypatch.setattr(training, "with_compiled_step", lambda c: compiled.append(c) or real(c))
    cell, task = make_cell("lstm", 10, 6), ToyTask(seq_len=5, batch_size=4)
    config = TrainConfig(num_batches=3, progress=False)
    for rule in (make_rule("bptt"), make_rule("sg", window=2)):
        eager = train(cell, rule, task, config, seeds=[0, 1]).params
        fused = train(cell, rule, task, replace(config, compile_step=True), seeds=[0, 1]).params
        for group, tensors in eager.items():
            for key, value in tensors.items():
                torch.testing.assert_close(fused[group][key], value, rtol=1e-5, atol=1e-6)
    assert len(compiled) == 2
    train(cell, make_rule("bp_lambda"), task, replace(config, compile_step=True), seeds=[0])
    assert len(compiled) == 2  # BP(λ) switches grad mode within a batch: it runs eager


@pytest.mark.slow
def test_a_compiled_step_can_be_made_in_a_fresh_process():
    # torch._functorch.config is a submodule that only an earlier torch.compile imports; the
    # notebook kernel of `-p compile_step True` has none (it raised AttributeError there)
    code = (
        "from bplambda.cells import make_cell, with_compiled_step; "
        "with_compiled_step(make_cell('lstm', 2, 3))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
