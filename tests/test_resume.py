"""Runs that survive interruption: a resumed run equals an uninterrupted one (in process, and
after a SIGKILL of a real smoke run in a subprocess), finished runs are reused unless a
parameter changed or ``force`` is set, and keys ignore what does not change a result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from bplambda import TrainConfig, make_rule, train
from bplambda.cells import MaskedCell, make_cell
from bplambda.experiments import copy_repeat_curriculum, runs
from bplambda.experiments.runs import state_store
from bplambda.resume import ResumeFile, fingerprint
from bplambda.tasks.copy_repeat import CopyRepeatTask
from bplambda.tasks.mnist import SequentialMNIST
from bplambda.train import Evaluation

ROOT = Path(__file__).resolve().parent.parent


class SimulatedKillError(Exception):
    """Stands in for a kill: raised from inside the training loop."""


def _mnist_like() -> tuple[SequentialMNIST, object]:
    """An epoch of 5 batches, so the run resumes mid-epoch (the order is task state)."""
    images = torch.rand(40, 28, 28, generator=torch.Generator().manual_seed(0))
    return SequentialMNIST(images, torch.arange(40) % 10, batch_size=8), make_cell(
        "rate_rnn", 28, 6
    )


def _copy_repeat() -> tuple[CopyRepeatTask, object]:
    """A curriculum (task state) with a low threshold, so levels change during the run."""
    task = CopyRepeatTask(batch_size=4, threshold_bits=0.7)
    return task, MaskedCell(make_cell("lstm", task.input_size - 1, 6))


def stop_after(calls: int):
    """An ``evaluate`` that raises :class:`SimulatedKillError` at its call number ``calls + 1``
    (never for ``calls < 0``), after the training state of ``calls`` batches was saved."""
    made = []

    def evaluate(params):
        if len(made) == calls:
            raise SimulatedKillError
        made.append(calls)
        return {"norm": params["rnn"]["weight_hh"].flatten(1).norm(dim=1)}

    return evaluate


@pytest.mark.parametrize("make", [_mnist_like, _copy_repeat], ids=["mnist", "copy_repeat"])
@pytest.mark.parametrize("rule", ["bptt", "bp_lambda"])
def test_a_run_interrupted_and_resumed_equals_an_uninterrupted_one(tmp_path, make, rule):
    config = TrainConfig(num_batches=12, log_every=2, progress=False,
                         lr={"rnn": 1e-2, "readout": 1e-2, "synthesiser": 1e-3})  # fmt: skip
    task, cell = make()
    whole = train(cell, make_rule(rule), task, config, seeds=[0, 1])

    resume = ResumeFile(tmp_path / "run.pt", key="k", every_seconds=0)
    task, cell = make()
    with pytest.raises(SimulatedKillError):  # after the state of batch 7 was saved
        train(cell, make_rule(rule), task, config, seeds=[0, 1], resume=resume,
              evaluation=Evaluation(stop_after(7), every=1))  # fmt: skip
    assert torch.load(resume.path, weights_only=True)["batch"] == 7

    task, cell = make()  # a fresh process: nothing but the saved state carries over
    resumed = train(cell, make_rule(rule), task, config, seeds=[0, 1], resume=resume,
                    evaluation=Evaluation(stop_after(-1), every=1))  # fmt: skip
    unevaluated = resumed.table[resumed.table.metric != "norm"].reset_index(drop=True)
    pd.testing.assert_frame_equal(unevaluated, whole.table, check_exact=True)
    for group, values in whole.params.items():
        for name, value in values.items():
            assert torch.equal(resumed.params[group][name], value), (group, name)
    assert resumed.seconds > 0


def test_a_saved_state_with_another_key_or_forced_is_not_resumed(tmp_path):
    config = TrainConfig(num_batches=3, progress=False)
    task, cell = _mnist_like()
    saved = ResumeFile(tmp_path / "run.pt", key="old", every_seconds=0)
    with pytest.raises(SimulatedKillError):
        train(cell, make_rule("bptt"), task, config, resume=saved,
              evaluation=Evaluation(stop_after(1), every=1))  # fmt: skip
    assert ResumeFile(saved.path, key="new").load() is None
    assert ResumeFile(saved.path, key="old", force=True).load() is None
    assert ResumeFile(saved.path, key="old").load()["batch"] == 1


def test_keys_follow_the_parameters_and_ignore_where_results_go():
    a = copy_repeat_curriculum.config("smoke", output_dir="/tmp/a")
    assert fingerprint(a) == fingerprint(
        copy_repeat_curriculum.config("smoke", output_dir="/tmp/b")
    )
    assert fingerprint(a) == fingerprint(copy_repeat_curriculum.config("smoke", force=True,
                                                               output_dir="/tmp/a"))  # fmt: skip
    assert fingerprint(a) != fingerprint(copy_repeat_curriculum.config("smoke", lr=0.5,
                                                               output_dir="/tmp/a"))  # fmt: skip


def test_a_finished_condition_is_reused_unless_forced_or_changed(tmp_path, monkeypatch):
    cfg = copy_repeat_curriculum.config("smoke", updates=4, output_dir=tmp_path)
    first = copy_repeat_curriculum.run(cfg, state_store(cfg))
    saved = [p.name for p in (tmp_path / "state").iterdir()]
    assert len(saved) == len(set(first.condition)) and all(n.endswith(".done.pt") for n in saved)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(runs, "train", no_training)
    again = copy_repeat_curriculum.run(cfg, state_store(cfg))
    pd.testing.assert_frame_equal(again, first)
    for changed in ({"force": True}, {"lr": 0.5}):
        other = copy_repeat_curriculum.config("smoke", updates=4, output_dir=tmp_path, **changed)
        with pytest.raises(AssertionError, match="trained again"):
            copy_repeat_curriculum.run(other, state_store(other))


SCRIPT = """
import sys
from bplambda.experiments import copy_repeat_curriculum
from bplambda.experiments.runs import StateStore, state_store
cfg = copy_repeat_curriculum.config("smoke", updates=60, rules=["bp_lambda"],
                                    output_dir=sys.argv[1])
store = StateStore(state_store(cfg).folder, cfg, every_seconds=0)
copy_repeat_curriculum.run(cfg, store).to_csv(sys.argv[2], index=False)
"""


def _run(folder: Path, table: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(folder), str(table)], cwd=ROOT,
                            start_new_session=True)  # fmt: skip


@pytest.mark.slow
def test_a_smoke_run_killed_mid_way_resumes_to_the_tables_of_an_uninterrupted_run(tmp_path):
    state = tmp_path / "killed" / "state" / "BP1.pt"
    run = _run(tmp_path / "killed", tmp_path / "killed.csv")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        if state.exists() and torch.load(state, weights_only=True)["batch"] >= 10:
            break
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    assert not (tmp_path / "killed.csv").exists()
    assert _run(tmp_path / "killed", tmp_path / "killed.csv").wait() == 0
    assert _run(tmp_path / "whole", tmp_path / "whole.csv").wait() == 0
    killed, whole = (pd.read_csv(tmp_path / f"{n}.csv") for n in ("killed", "whole"))
    timing = ["seconds_per_1000_updates"]
    pd.testing.assert_frame_equal(killed[~killed.metric.isin(timing)],
                                  whole[~whole.metric.isin(timing)], check_exact=True)  # fmt: skip
    assert not state.exists() and state.with_suffix(".done.pt").exists()
