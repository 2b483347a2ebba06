"""The worker pool: results in the units' order, one-line failures naming the unit and its log,
and finished conditions kept for the next run."""

import functools
import itertools
import os
import time

import pandas as pd
import pytest

from bplambda.bench_workers import schedule
from bplambda.core_slots import SLOTS_VARIABLE, make_slots
from bplambda.experiments import copy_repeat_curriculum
from bplambda.experiments.conditions import condition_title
from bplambda.experiments.copy_repeat_curriculum import _copy_repeat_condition
from bplambda.experiments.grids import grid_conditions
from bplambda.experiments.runs import run_all, state_store
from bplambda.workers import WorkerError, check_jobs, log_name, run_units, threads_per_worker


def _square_in_a_worker(x: int) -> tuple[int, int, str]:
    """The unit's square, the worker's pid and its torch thread count (spawned: picklable)."""
    import torch

    return x * x, os.getpid(), f"{torch.get_num_threads()}/{os.environ['OMP_NUM_THREADS']}"


def _interval(x: int) -> tuple[float, float]:
    """When the unit started and ended: it sleeps a little, as if it computed."""
    start = time.time()
    time.sleep(0.5)
    return start, time.time()


@pytest.mark.parametrize("slots", [1, 2])
def test_units_compute_only_while_they_hold_a_core_slot(tmp_path, monkeypatch, slots):
    """Under one shared slot two workers take turns; under two they run side by side."""
    monkeypatch.setenv(SLOTS_VARIABLE, str(make_slots(tmp_path, slots)))
    intervals = sorted(run_units(_interval, list(range(4)), jobs=2))
    overlaps = sum(later[0] < earlier[1] for earlier, later in itertools.pairwise(intervals))
    assert (overlaps == 0) if slots == 1 else (overlaps > 0)


def _fail_on_three(x: int) -> int:
    print(f"working on {x}")
    if x == 3:
        raise RuntimeError("three is not allowed")
    return x


def test_results_keep_the_units_order_and_workers_are_single_threaded():
    units = list(range(6))
    results = run_units(_square_in_a_worker, units, jobs=2)
    assert [r[0] for r in results] == [x * x for x in units]
    assert os.getpid() not in {r[1] for r in results}
    threads = threads_per_worker(2)
    assert {r[2] for r in results} == {f"{threads}/{threads}"}
    # one job: a plain loop in this process
    assert {r[1] for r in run_units(_square_in_a_worker, units, jobs=1)} == {os.getpid()}


def test_a_failing_unit_is_named_with_its_error_and_log(tmp_path):
    with pytest.raises(WorkerError) as raised:
        run_units(_fail_on_three, [1, 2, 3, 4], jobs=2, label=lambda x: f"unit {x}",
                  log_dir=tmp_path)  # fmt: skip
    message = str(raised.value)
    log = tmp_path / log_name("unit 3")
    assert message == f"unit 3 failed: RuntimeError: three is not allowed (log: {log})"
    assert "\n" not in message
    text = log.read_text()
    assert "working on 3" in text and "Traceback" in text and "three is not allowed" in text


@pytest.mark.parametrize("jobs", [0, -1, 1.5, True, "2"])
def test_a_bad_worker_count_is_refused(jobs):
    with pytest.raises(ValueError, match="jobs="):
        check_jobs(jobs)


@pytest.mark.parametrize("jobs", [0, -1, 1.5])
def test_a_notebook_refuses_a_bad_worker_count(jobs):
    with pytest.raises(ValueError, match="jobs"):
        copy_repeat_curriculum.config("smoke", jobs=jobs)


def _copy_repeat_but_sg_fails(cfg, store, pair):
    if condition_title(pair[0]).startswith("SG("):
        raise RuntimeError("injected failure")
    return _copy_repeat_condition(cfg, store, pair)


@pytest.mark.slow
def test_the_conditions_finished_before_a_failure_are_reused(tmp_path):
    cfg = copy_repeat_curriculum.config("smoke", updates=4, output_dir=tmp_path, jobs=2)
    store = state_store(cfg)
    work = functools.partial(_copy_repeat_but_sg_fails, cfg, store)
    with pytest.raises(WorkerError, match=r"^SG\(2\) failed: RuntimeError: injected failure"):
        run_all(work, grid_conditions(cfg), cfg, lambda pair: condition_title(pair[0]))
    saved = {p.name: p.stat().st_mtime_ns for p in store.folder.glob("*.done.pt")}
    assert saved and not any(name.startswith("SG") for name in saved)
    table = copy_repeat_curriculum.run(cfg, store)  # the finished ones are read, not trained again
    assert set(table.condition) >= {"BPTT", "TBPTT(2)", "SG(2)"}
    for name, mtime in saved.items():
        assert (store.folder / name).stat().st_mtime_ns == mtime
    single = copy_repeat_curriculum.config("smoke", updates=4, output_dir=tmp_path / "one", jobs=1)
    alone = copy_repeat_curriculum.run(single, state_store(single))
    timing = ["seconds_per_1000_updates"]
    pd.testing.assert_frame_equal(
        table[~table.metric.isin(timing)].reset_index(drop=True),
        alone[~alone.metric.isin(timing)].reset_index(drop=True),
    )


def test_the_bench_schedules_units_as_the_pool_deals_them():
    assert schedule([3.0, 1.0, 1.0, 1.0], 2) == 3.0  # the long one first: the rest beside it
    assert schedule([1.0, 1.0, 3.0], 2) == 4.0  # the long one last: it starts after the first
    assert schedule([1.0, 2.0, 3.0], 1) == 6.0
