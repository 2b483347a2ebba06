"""Independent units of work (a notebook's conditions) spread over single-threaded worker
processes, with results in the units' order whatever the number of workers.

At this project's model sizes torch's intra-op threads buy little, while a second process
doubles the throughput: ``jobs`` workers each get ``max(1, cores // jobs)`` threads. With
``jobs=1`` the units run one after another in the calling process, exactly as a plain loop.

A worker's output (progress bars, warnings, the traceback of a failure) goes to a log file
per unit; the first unit that fails stops the run with :class:`WorkerError`, one line naming
the unit, the error and its log. The units that finished before are kept by their callers'
state stores (:mod:`bplambda.resume`), so the next run reuses them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bplambda.core_slots import core_slot

U = TypeVar("U")
R = TypeVar("R")

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class WorkerError(RuntimeError):
    """A unit of work raised in a worker; the message names it, the error and its log."""


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def threads_per_worker(jobs: int) -> int:
    """The torch threads of each of ``jobs`` workers: the usable cores shared out, at least 1."""
    return max(1, usable_cores() // jobs)


def limit_threads(threads: int) -> None:
    """Run torch (and the OpenMP/MKL runtimes, for libraries that start later) on ``threads``
    threads; a worker calls this before its first torch operation."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


def check_jobs(jobs: object) -> int:
    """``jobs`` as a positive int, or a one-line ValueError."""
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} is invalid; pass a number of worker processes >= 1")
    return jobs


def log_name(label: str) -> str:
    """A file name from a unit's label: ``"SG(1) T=10"`` → ``SG1_T10.log``."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", re.sub(r"[()=]", "", label)).strip("_") + ".log"


def _run_logged(work: Callable[[U], R], unit: U, log: Path | None) -> tuple[R | None, str | None]:
    """``(work(unit), None)``, or ``(None, "Error: message")`` with the traceback in ``log``;
    the unit's own output goes to ``log`` too (where one is given)."""
    if log is None:
        try:
            return work(unit), None
        except Exception as error:  # reported by the parent, with the unit's name
            traceback.print_exc()
            return None, f"{type(error).__name__}: {error}"
    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        open(log, "w", encoding="utf-8") as stream,
        contextlib.redirect_stdout(stream),
        contextlib.redirect_stderr(stream),
    ):
        try:
            return work(unit), None
        except Exception as error:
            traceback.print_exc(file=stream)
            return None, f"{type(error).__name__}: {error}"


def _in_worker(
    task: tuple[Callable[[U], R], int, U, Path | None],
) -> tuple[int, R | None, str | None, float]:
    """One unit in a worker: ``(index, result, error, seconds)``; the seconds count from when
    the unit got its core slot (:mod:`bplambda.core_slots`)."""
    work, index, unit, log = task
    with core_slot():
        start = time.perf_counter()
        result, error = _run_logged(work, unit, log)
        return index, result, error, time.perf_counter() - start


def _in_this_process(work: Callable[[U], R], unit: U) -> R:
    """``work(unit)`` here, holding a core slot while it computes."""
    with core_slot():
        return work(unit)


def run_units(
    work: Callable[[U], R],
    units: Sequence[U],
    jobs: int = 1,
    label: Callable[[U], str] = str,
    log_dir: Path | None = None,
    cost: Callable[[U], float] | None = None,
) -> list[R]:
    """``[work(u) for u in units]``, spread over ``jobs`` worker processes.

    ``work`` must be picklable (a module-level function, or a ``functools.partial`` of one)
    and so must the units and results. ``label(unit)`` names a unit in progress lines and
    errors; ``log_dir`` (workers only) receives one log per unit. ``cost(unit)``: a rough
    relative cost; the workers take the costliest units first, so that a long one does not
    start last while the others idle. With ``jobs=1`` everything
    runs here, output and errors as usual. Wherever a unit runs it first takes a core slot
    (:mod:`bplambda.core_slots`), which limits the units computing at once across the notebooks
    of one `make reproduce`. A failed unit raises :class:`WorkerError` once the
    pool is stopped (the other running units are ended; what they saved stays).
    """
    check_jobs(jobs)
    if jobs == 1 or len(units) <= 1:
        return [_in_this_process(work, unit) for unit in units]
    workers = min(jobs, len(units))
    results: list[Any] = [None] * len(units)
    context = multiprocessing.get_context("spawn")  # no inherited torch threads or CUDA state
    pool = context.Pool(workers, initializer=limit_threads, initargs=(threads_per_worker(jobs),))
    logs = [None if log_dir is None else Path(log_dir) / log_name(label(u)) for u in units]
    started = time.perf_counter()
    finished = False
    try:
        order = sorted(range(len(units)), key=lambda i: -cost(units[i]) if cost else 0)
        tasks = [(work, index, units[index], logs[index]) for index in order]
        print(f"{len(units)} units of work on {workers} workers (logs: {log_dir})", flush=True)
        for done, outcome in enumerate(pool.imap_unordered(_in_worker, tasks), start=1):
            index, result, error, seconds = outcome
            where = f" (log: {logs[index]})" if logs[index] is not None else ""
            if error is not None:
                raise WorkerError(f"{label(units[index])} failed: {error}{where}")
            results[index] = result
            print(
                f"[{done}/{len(units)}] {label(units[index])} done in {seconds:.0f} s "
                f"({time.perf_counter() - started:.0f} s so far)",
                flush=True,
            )
        finished = True
    finally:
        if finished:
            pool.close()  # lets the workers exit on their own
        else:
            pool.terminate()  # a failure or an interrupt: the running units are ended
        pool.join()
    return results
