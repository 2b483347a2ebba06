"""`make bench`'s throughput against the number of workers: the seq-MNIST ``paper`` grid's
epoch and copy-repeat's 1,000 updates, with 1 worker × all threads, 1 × 1 and n × 1.

Each arrangement runs every condition of the grid as the notebooks do (:mod:`bplambda.workers`:
the costliest first, each to the next free worker), measuring each condition's steady time
per batch while the others run beside it; the grid's wall time is then the pool's schedule of
those times (the time the last worker finishes), scaled to a whole epoch or to 1,000 updates.
Scaling from a few batches keeps the bench short; spawning and warm-up are left out because a
real run pays them once, not per batch.

    python -m bplambda.bench_workers [--batches 20] [--workers 2]
                                     [--output results/bench/workers.csv]
"""

from __future__ import annotations

import argparse
import functools
import heapq
import multiprocessing
import time
from collections.abc import Sequence
from dataclasses import MISSING, fields, replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from bplambda.workers import limit_threads, run_units, threads_per_worker, usable_cores


def schedule(seconds: Sequence[float], workers: int) -> float:
    """The wall time of units of ``seconds`` dealt in that order to the next free of
    ``workers`` (the pool's dispatch)."""
    free = [0.0] * workers
    for s in seconds:
        heapq.heappush(free, heapq.heappop(free) + s)
    return max(free)


def _seq_mnist_unit(batches: int, pair: tuple) -> float:
    """Seconds for one epoch of one grid condition: ``batches`` training batches scaled to
    the epoch's 960, plus an evaluation of the same share of the epoch's 70,000 images."""
    import torch

    from bplambda.bench import _seconds_per_batch
    from bplambda.cells import make_cell
    from bplambda.evaluate import classification_metrics
    from bplambda.tasks.mnist import SequentialMNIST
    from bplambda.train import TrainConfig

    condition, cell_name = pair
    cfg = _mnist_paper()
    share = batches / (48_000 // cfg.batch_size)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(max(cfg.batch_size, round(70_000 * share)), 28, 28, generator=g)
    labels = torch.randint(0, 10, (len(images),), generator=g)
    task = SequentialMNIST(images, labels, cfg.batch_size)
    config = TrainConfig(num_batches=batches, lr=dict.fromkeys(("rnn", "readout", "synthesiser"),
                         cfg.lr), log_every=cfg.log_every, progress=False)  # fmt: skip
    cell = make_cell(cell_name, task.input_size, cfg.hidden_size)
    per_batch, params = _seconds_per_batch(condition, cell, task, config, torch.device("cpu"))
    start = time.perf_counter()
    classification_metrics(cell, params, images, labels)
    return (per_batch * batches + time.perf_counter() - start) / share


def _copy_repeat_unit(batches: int, pair: tuple) -> float:
    """Seconds per 1,000 updates of one copy-repeat condition held at level (5, 5), T = 33."""
    import torch

    from bplambda.bench import _seconds_per_batch
    from bplambda.cells import MaskedCell, make_cell
    from bplambda.experiments import copy_repeat_curriculum
    from bplambda.tasks.copy_repeat import CopyRepeatTask
    from bplambda.train import TrainConfig

    condition, cell_name = pair
    cfg = copy_repeat_curriculum.config("paper")
    task = CopyRepeatTask(cfg.batch_size, threshold_bits=0.0, start=(5, 5))
    config = TrainConfig(num_batches=batches, lr={"rnn": cfg.lr, "readout": cfg.lr,
                         "synthesiser": cfg.lr_synthesiser}, log_every=cfg.log_every,
                         progress=False)  # fmt: skip
    cell = MaskedCell(make_cell(cell_name, task.input_size - 1, cfg.hidden_size))
    per_batch, _ = _seconds_per_batch(condition, cell, task, config, torch.device("cpu"))
    return 1000 * per_batch


def _mnist_paper() -> SimpleNamespace:
    """Notebook 03's ``paper`` settings (without the data check of its config)."""
    from bplambda.experiments import sequential_mnist

    defaults = {
        f.name: f.default for f in fields(sequential_mnist.Config) if f.default is not MISSING
    }
    return SimpleNamespace(**{**defaults, **sequential_mnist.DEFAULTS["paper"]})


def _grids() -> dict[str, tuple]:
    """Per workload: (its units, the function timing one, the unit of its result)."""
    from bplambda.experiments import copy_repeat_curriculum
    from bplambda.experiments.grids import grid_conditions

    copy_repeat = copy_repeat_curriculum.config(
        "paper", seeds=(0, 1, 2), windows=(5,), lambdas=(0.5, 1.0)
    )
    return {
        "seq-MNIST paper grid": (grid_conditions(_mnist_paper()), _seq_mnist_unit, "min/epoch"),
        "copy-repeat (3 seeds, T = 33)": (
            grid_conditions(replace(copy_repeat, rules=("bptt", "tbptt", "sg", "bp_lambda"))),
            _copy_repeat_unit, "s/1,000 updates",
        ),
    }  # fmt: skip


def _one_process(threads: int, work, units: list) -> list[float]:
    """Every unit one after another in a fresh process with ``threads`` torch threads (this
    process's own threads stay as they are)."""
    context = multiprocessing.get_context("spawn")
    pool = context.Pool(1, initializer=limit_threads, initargs=(threads,))
    try:
        return pool.map(work, units)
    finally:
        pool.close()
        pool.join()


def worker_throughput(batches: int = 20, workers: int = 2) -> pd.DataFrame:
    """Per workload and arrangement (1 × all threads, 1 × 1, ``workers`` × 1): the grid's wall
    time and its throughput relative to one process with all threads."""
    from bplambda.experiments.grids import grid_cost, grid_title

    rows = []
    for workload, (units, timer, unit_name) in _grids().items():
        work = functools.partial(timer, batches)
        order = sorted(units, key=lambda pair: -grid_cost(pair))
        arrangements = {
            f"1 worker × {usable_cores()} threads": (1, usable_cores()),
            "1 worker × 1 thread": (1, 1),
            f"{workers} workers × 1 thread": (workers, threads_per_worker(workers)),
        }
        for name, (jobs, threads) in arrangements.items():
            print(f"  {workload}: {name}", flush=True)
            if jobs == 1:
                seconds = _one_process(threads, work, order)
            else:
                seconds = run_units(work, order, jobs, grid_title)
            wall = schedule(seconds, jobs)
            rows.append({"workload": workload, "arrangement": name, "workers": jobs,
                         "threads": threads, "wall": wall / (60 if "min" in unit_name else 1),
                         "unit": unit_name})  # fmt: skip
    table = pd.DataFrame(rows)
    first = table.groupby("workload")["wall"].transform("first")
    table["throughput_vs_1_process"] = first / table["wall"]
    return table


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--workers", type=int, default=max(2, usable_cores()))
    parser.add_argument("--output", default="results/bench/workers.csv")
    args = parser.parse_args(argv)
    table = worker_throughput(args.batches, args.workers)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.output, index=False)
    print("\nThroughput against the number of workers (grid wall time):")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return table


if __name__ == "__main__":
    main()
