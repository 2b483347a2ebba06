"""Sequential MNIST: loading, the split, batches and evaluation."""

from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import assert_stacked_run_equals_runs_alone

from bplambda import TrainConfig, make_rule, train
from bplambda.analysis import still_improving
from bplambda.cells import make_cell
from bplambda.evaluate import classification_metrics
from bplambda.experiments import sequential_mnist
from bplambda.stacking import init_stacked_network
from bplambda.tasks.mnist import (
    SequentialMNIST,
    as_sequences,
    load_mnist,
    split_mnist,
)

DATA = Path(__file__).resolve().parent.parent / "data"


def test_missing_files_say_where_to_put_them(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "t10k-labels-idx1-ubyte" in message


def _fake(n_train: int = 100, n_test: int = 20) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "train_images": torch.randint(0, 256, (n_train, 28, 28), generator=g, dtype=torch.uint8),
        "train_labels": torch.randint(0, 10, (n_train,), generator=g),
        "test_images": torch.randint(0, 256, (n_test, 28, 28), generator=g, dtype=torch.uint8),
        "test_labels": torch.randint(0, 10, (n_test,), generator=g),
    }


def test_split_is_seeded_disjoint_and_scaled(monkeypatch):
    monkeypatch.setattr("bplambda.tasks.mnist.VALIDATION_SIZE", 20)
    data = _fake()
    a, b = split_mnist(data, split_seed=3), split_mnist(data, split_seed=3)
    assert torch.equal(a.val_images, b.val_images)
    assert len(a.train_images) == 80 and len(a.val_images) == 20 and len(a.test_images) == 20
    assert a.train_images.min() >= 0 and a.train_images.max() <= 1
    rows = {tuple(x.flatten().tolist()) for x in a.train_images}
    assert not rows & {tuple(x.flatten().tolist()) for x in a.val_images}
    c = split_mnist(data, split_seed=3, validation_size=5)
    assert len(c.train_images) == 95 and len(c.val_images) == 5
    assert torch.equal(c.val_images, a.val_images[:5])  # the same permutation, cut elsewhere


def test_rows_are_time_steps_and_the_label_is_scored_last():
    images = torch.rand(2, 3, 28, 28)  # (K, B, rows, pixels)
    labels = torch.randint(0, 10, (2, 3))
    inputs, targets = as_sequences(images, labels)
    assert inputs.shape == (28, 2, 3, 28)
    assert torch.equal(inputs[5, 1, 2], images[1, 2, 5])
    assert targets.weights.tolist() == [0.0] * 27 + [1.0]
    assert torch.equal(targets.values[-1], labels)


def test_each_model_walks_its_own_epoch():
    data = _fake(n_train=40)
    task = SequentialMNIST(data["train_images"].float(), data["train_labels"], batch_size=10)
    generators = [torch.Generator().manual_seed(s) for s in (0, 1, 0)]
    seen = [task.sample(generators)[1].values[-1] for _ in range(4)]  # one epoch: 4 batches
    labels = torch.stack(seen)  # (4, 3, 10)
    for k in range(3):
        assert sorted(labels[:, k].flatten().tolist()) == sorted(data["train_labels"].tolist())
    assert not torch.equal(labels[:, 0], labels[:, 1])
    assert torch.equal(labels[:, 0], labels[:, 2])  # the same seed, the same data


def test_a_stacked_mnist_run_equals_one_run_per_seed():
    from bplambda import TrainConfig, make_rule, train

    data = _fake(n_train=60)
    images, labels = data["train_images"].float() / 255, data["train_labels"]
    cell = make_cell("lstm", 28, 6)
    config = TrainConfig(num_batches=8, lr=dict.fromkeys(("rnn", "readout", "synthesiser"), 1e-2),
                         log_every=1, progress=False)  # fmt: skip
    rule = make_rule("bp_lambda", lmbda=0.5, gamma=0.9, scale=0.1)

    def run(seeds):
        task = SequentialMNIST(images, labels, batch_size=10)
        return train(cell, rule, task, config, seeds=seeds, dtype="float64").table

    assert_stacked_run_equals_runs_alone(run, [3, 4], alone=[3, 4])


def test_evaluation_matches_a_direct_computation():
    cell = make_cell("lstm", 28, 5)
    params = init_stacked_network(cell, 10, [0, 1])
    data = _fake(n_test=7)
    images, labels = data["test_images"].float() / 255, data["test_labels"]
    metrics = classification_metrics(cell, params, images, labels, chunk=3)
    for k in range(2):
        s = torch.zeros(7, 10)
        single = {n: v[k] for n, v in params["rnn"].items()}
        for t in range(28):
            s = cell.step(single, images[:, t], s)
        logits = cell.hidden(s) @ params["readout"]["weight"][k].T + params["readout"]["bias"][k]
        loss = torch.nn.functional.cross_entropy(logits, labels)
        error = (logits.argmax(-1) != labels).float().mean()
        assert torch.allclose(metrics["loss"][k], loss, atol=1e-6)
        assert torch.allclose(metrics["error"][k], error)


@pytest.mark.skipif(not (DATA / "MNIST" / "raw").exists(), reason="MNIST not linked into data/")
def test_the_real_split_has_the_paper_sizes():
    data = load_mnist(DATA, download=False)
    for validation_size, sizes in ((None, (48_000, 12_000)), (5_000, (55_000, 5_000))):
        splits = split_mnist(data, validation_size=validation_size)  # BP(λ)'s, then Liu et al.'s
        assert (len(splits.train_images), len(splits.val_images)) == sizes
        assert len(splits.test_images) == 10_000


def _fake_mnist_folder(root: Path) -> Path:
    """``root/MNIST/raw`` with four (empty) files named as MNIST's: enough for has_mnist."""
    from bplambda.tasks.mnist import MNIST_FILES

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        (raw / name).touch()
    return root / "MNIST"


def test_make_data_links_the_shared_copy_over_an_empty_leftover(tmp_path):
    from bplambda.tasks.mnist import has_mnist, link_shared_mnist

    shared = _fake_mnist_folder(tmp_path / "shared")
    data = tmp_path / "data"
    (data / "MNIST" / "raw").mkdir(parents=True)  # left behind by a failed download
    assert "linked" in link_shared_mnist(data, shared)
    assert (data / "MNIST").is_symlink() and has_mnist(data)
    assert "kept" in link_shared_mnist(data, shared)  # idempotent
    (data / "MNIST").unlink()
    (data / "MNIST").mkdir()
    (data / "MNIST" / "notes.txt").write_text("mine")  # not a download leftover: never deleted
    assert "not replaced" in link_shared_mnist(data, shared)
    assert (data / "MNIST" / "notes.txt").exists()
    assert "nothing linked" in link_shared_mnist(tmp_path / "other", tmp_path / "nowhere")


def test_a_task_shared_by_runs_gives_each_run_its_own_stream_from_the_start():
    images = torch.rand(40, 28, 28)
    task = SequentialMNIST(images, torch.arange(40) % 10, batch_size=8)

    def first_batches(n: int) -> list[torch.Tensor]:
        config = TrainConfig(num_batches=n, lr={"rnn": 0.0, "readout": 0.0}, progress=False)
        seen = []
        original = task.sample

        def recording(generators):
            batch = original(generators)
            seen.append(batch[0])
            return batch

        task.sample = recording
        train(make_cell("rate_rnn", 28, 4), make_rule("bptt"), task, config, seeds=[0])
        del task.sample
        return seen

    first = first_batches(3)  # leaves the epoch (5 batches) part-way
    again = first_batches(3)
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_the_mnist_checkpoint_is_the_lowest_validation_loss_epoch():
    rows = []
    epochs = {"A": [(0.9, 0.30), (0.5, 0.20), (0.7, 0.10)], "B": [(0.4, 0.25), (0.6, 0.05)]}
    for window, (condition, per_epoch) in enumerate(epochs.items(), start=1):
        for epoch, (val_loss, test_error) in enumerate(per_epoch, start=1):
            for metric, value in (("val_loss", val_loss), ("test_error", test_error)):
                rows.append(
                    {
                        "condition": condition,
                        "family": "tbptt",
                        "lmbda": float("nan"),
                        "n": window,
                        "variant": "default",
                        "seed": 0,
                        "diverged": False,
                        "batch": 100 * epoch,
                        "t": -1,
                        "metric": metric,
                        "value": value,
                    }
                )
    best = sequential_mnist.tables(pd.DataFrame(rows), sequential_mnist.config("smoke"))[
        "best"
    ].set_index("condition")
    assert best.loc["A", "epoch"] == 2 and best.loc["A", "test_error"] == 0.20  # not 0.10
    assert best.loc["B", "epoch"] == 1 and best.loc["B", "test_error"] == 0.25  # not 0.05


def test_a_claim_says_when_most_models_were_still_improving_at_the_end():
    from bplambda.experiments.sequential_mnist import _improving_at_the_end

    epochs = pd.DataFrame({"condition": ["A"] * 3 + ["B"] * 3, "epoch": [1, 2, 3] * 2})
    best = pd.DataFrame({"condition": ["A", "A", "B", "B"], "seed": [0, 1, 0, 1],
                         "epoch": [3, 3, 3, 1]})  # fmt: skip
    flags = _improving_at_the_end({"best": best, "epochs": epochs})
    assert flags.improving.tolist() == [True, True, True, False]
    assert still_improving(flags) == "still improving: 1/2 conditions"  # B: 1 of 2, no majority
    assert still_improving(flags.assign(improving=False)) == ""


def test_the_test_error_claims_give_three_decimals():
    """At the paper's 50 epochs BP(1) and SG(5) differ by about 0.01: two decimals would show
    both as 0.09-0.10."""
    rows = []
    for condition, family, lmbda, n, errors in (("BP(1)", "bp_lambda", 1.0, float("nan"),
                                                 (0.0891, 0.0902, 0.0878)),
                                                ("SG(5)", "sg", float("nan"), 5,
                                                 (0.0991, 0.1043, 0.0952))):  # fmt: skip
        for seed, error in enumerate(errors):
            for metric, value in (("val_loss", 0.3), ("test_error", error)):
                rows.append({"condition": condition, "family": family, "lmbda": lmbda, "n": n,
                             "variant": "default", "seed": seed, "diverged": False,
                             "batch": 100, "t": -1, "metric": metric, "value": value})  # fmt: skip
    cfg = sequential_mnist.config("smoke", seeds=(0, 1, 2), windows=(5,), lambdas=(1.0,))
    claims = sequential_mnist.claims(sequential_mnist.tables(pd.DataFrame(rows), cfg), cfg)
    assert claims[0]["bplambda"].startswith("BP(1) 0.089 [0.088, 0.090] (range, 3 seeds) vs "
                                            "best SG(5) 0.100 [0.095, 0.104]")  # fmt: skip


def test_a_grid_whose_every_model_diverged_before_its_first_evaluation_is_not_testable():
    """No evaluation rows at all (each model diverged in its first epoch): each model still
    counts, as diverged, and the claims say "not testable" instead of failing the report."""
    rows = [{"condition": condition, "family": family, "lmbda": lmbda, "n": n,
             "variant": "default", "seed": seed, "diverged": True, "batch": 0, "t": -1,
             "metric": "loss", "value": 9.0}
            for condition, family, lmbda, n in (("BP(1)", "bp_lambda", 1.0, float("nan")),
                                                ("SG(5)", "sg", float("nan"), 5))
            for seed in (0, 1)]  # fmt: skip
    cfg = sequential_mnist.config("smoke", seeds=(0, 1), windows=(5,), lambdas=(1.0,))
    tables = sequential_mnist.tables(pd.DataFrame(rows), cfg)
    assert tables["test_error"].set_index("condition").diverged.to_dict() == {
        "BP(1)": 2,
        "SG(5)": 2,
    }
    (claim,) = sequential_mnist.claims(tables, cfg)
    assert "2/2 diverged vs best SG(5)" in claim["bplambda"]
    assert claim["verdict"] == "not testable (no seed on one side)"
