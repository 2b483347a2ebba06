"""Waiting on a sweep's submitted jobs (:mod:`bplambda.sweep` ``--wait``): each shard's wait
ends when its job has returned its result or when the scheduler says it ended without one, so
that no one waits on a dead job.

submitit's own ``job.result()`` asks SLURM's accounting (``sacct``) for the job's state less
and less often (at last every ten minutes), and where ``sacct`` cannot tell (a cluster without
accounting, a job it has lost) it waits for ever on a job that died without writing its
result. Here every job still waited on is asked every ``poll_s`` seconds (one ``sacct`` call
for all of them): a job that ended (failed, cancelled, timed out, out of memory, completed
without a result) ends its shard's wait with its state and submitit's error, which carries
the job's traceback or the end of its log. A job in no state that can still lead to a result
(one that neither ``sacct`` nor ``squeue`` knows any more, one pre-empted and not requeued)
ends it after ``grace_s`` seconds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

POLL_SECONDS = 10.0
"""How often the jobs still waited on are asked for their state."""
GRACE_SECONDS = 120.0
"""How long a job may stay in a state that cannot lead to its result, or stay unknown to the
scheduler, before its wait ends: long enough for a requeue, or for accounting to catch up
with a job that has just started."""
QUEUED = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "RESIZING", "REQUEUED",
    "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD", "SIGNALING", "STAGE_OUT", "STOPPED",
})  # fmt: skip
"""SLURM's states of a job that can still write its result (``sacct``/``squeue`` spell them
so). The others end a job: submitit counts most of them as done; PREEMPTED (requeued jobs go
on as REQUEUED or PENDING) and UNKNOWN (submitit's word where ``sacct`` names no state) wait
for :data:`GRACE_SECONDS`."""

VANISHED = "VANISHED"
"""The state of a job that neither ``sacct`` nor ``squeue`` lists."""


class SubmittedJob(Protocol):
    """What the wait needs of a submitit job (``submitit.Job``): its id, whether it is done
    (its result written, or an end of it reported), its last known state, its result (raises
    what the job raised, or submitit's error for a job that ended without a result), its info
    refreshed from the scheduler, and its log's paths."""

    job_id: str
    paths: Any

    @property
    def state(self) -> str: ...

    def done(self, force_check: bool = False) -> bool: ...

    def result(self) -> Any: ...

    def get_info(self, mode: str = "force") -> dict[str, str]: ...


@dataclass(frozen=True)
class Ending:
    """How a shard's job ended: ``state`` as the scheduler last reported it; ``error`` None
    when it returned its result, else why there is none (its traceback, its log's end, or how
    long it has been in a state without one); ``log``: its output file."""

    name: str
    job_id: str
    state: str
    error: str | None
    log: Path

    def describe(self) -> str:
        if self.error is None:
            return f"shard {self.name}: done (job {self.job_id})"
        return (f"shard {self.name} failed: job {self.job_id} ended {self.state} without its "
                f"result; its log: {self.log}\n{self.error}")  # fmt: skip


def squeue_state(job_id: str) -> str | None:
    """The state ``squeue`` lists for ``job_id``; None for a job it no longer lists (or where it
    cannot be asked: the state stays unknown)."""
    try:
        listed = subprocess.run(["squeue", "--noheader", "--jobs", job_id, "--format", "%T"],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    states = listed.stdout.split()
    return states[0] if listed.returncode == 0 and states else None


def wait_for_jobs(
    jobs: Sequence[tuple[str, SubmittedJob]],
    poll_s: float = POLL_SECONDS,
    grace_s: float = GRACE_SECONDS,
    listed_state: Callable[[str], str | None] = squeue_state,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Ending]:
    """Each ``(shard name, job)``'s :class:`Ending`, in the order they end.

    ``listed_state(job_id)``: the queue's state of a job whose accounting state is unknown
    (:func:`squeue_state`: a cluster without ``sacct`` still tells a running job from a
    vanished one). ``clock`` and ``sleep`` are the wall clock's, replaceable in tests.
    """
    waiting = dict(jobs)
    unsettled_since: dict[str, float] = {}

    def settled(name: str) -> bool:  # after grace_s in an unsettled state
        return clock() - unsettled_since.setdefault(name, clock()) >= grace_s

    while waiting:
        next(iter(waiting.values())).get_info(mode="force")  # one sacct call for all jobs
        for name, job in list(waiting.items()):
            if job.done():
                ending = _outcome(name, job)
                if ending.error is not None and queued(ending.state) and not settled(name):
                    continue  # it wrote its error and is ending: report the state SLURM gives it
            else:
                state = _stuck_state(job, listed_state)
                if state is None:
                    unsettled_since.pop(name, None)
                    continue
                if not settled(name):
                    continue
                ending = Ending(name, job.job_id, state, f"it stayed {state} for "
                                f"{grace_s:.0f} s", Path(job.paths.stdout))  # fmt: skip
            del waiting[name]
            yield ending
        if waiting:
            sleep(poll_s)


def queued(state: str) -> bool:
    """Whether a job in ``state`` (as sacct spells it, e.g. "CANCELLED by 0") may still run."""
    return state.split()[0] in QUEUED


def _outcome(name: str, job: SubmittedJob) -> Ending:
    """A done job's :class:`Ending`: its result, or submitit's error (what the job raised, or
    that it wrote no result, with its state and log's end)."""
    try:
        job.result()
    except Exception as error:
        return Ending(name, job.job_id, job.state, str(error), Path(job.paths.stdout))
    return Ending(name, job.job_id, job.state, None, Path(job.paths.stdout))


def _stuck_state(job: SubmittedJob, listed_state: Callable[[str], str | None]) -> str | None:
    """None for a job not done that is queued or running; else its state, which cannot lead
    to a result (e.g. PREEMPTED and not requeued, or listed by neither sacct nor squeue)."""
    state = job.state
    if state == "UNKNOWN":  # accounting names no state: ask the queue
        state = listed_state(job.job_id) or VANISHED
    return None if queued(state) else state


def failed_jobs(jobs: Sequence[tuple[str, SubmittedJob]], **wait_options: Any) -> list[str]:
    """Waits on every ``(shard name, job)`` (:func:`wait_for_jobs`), printing each shard's end
    as it comes; returns the names of those that ended without their result."""
    failed = []
    for ending in wait_for_jobs(jobs, **wait_options):
        print(ending.describe(), file=sys.stderr if ending.error else sys.stdout, flush=True)
        if ending.error is not None:
            failed.append(ending.name)
    return failed
