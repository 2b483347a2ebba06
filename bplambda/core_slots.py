"""A limit on the units of work that compute at once, shared by every process of a run.

`make reproduce` runs two notebooks at once so that one notebook's serial parts (kernel start,
tables, figures) overlap the other's training; each notebook spreads its conditions over
``jobs`` workers (:mod:`bplambda.workers`). Without a shared limit the two notebooks would run
``2 × jobs`` single-threaded workers on ``jobs`` cores. The limit is a folder of ``jobs`` slot
files named by the environment variable :data:`SLOTS_VARIABLE`, which the notebook kernels and
their workers inherit: a unit computes only while it holds an exclusive lock on one slot file.
The operating system drops a lock when its process ends, so a worker that dies frees its slot.
Without the variable (a notebook run on its own) :func:`core_slot` does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

SLOTS_VARIABLE = "BPLAMBDA_CORE_SLOTS"
POLL_SECONDS = 0.05
_held: list[int] = []  # the slot this process holds, so a nested unit does not wait on itself


def make_slots(folder: Path, count: int) -> Path:
    """Create ``count`` slot files in ``folder``; export ``folder`` in :data:`SLOTS_VARIABLE`
    to make processes started from then on share them."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (folder / f"slot-{index}").touch()
    return folder


@contextlib.contextmanager
def core_slot() -> Iterator[None]:
    """Hold one slot of the folder in :data:`SLOTS_VARIABLE` while the block runs (waiting for
    one to be free); a no-op without the variable, or inside a block that already holds one."""
    folder = os.environ.get(SLOTS_VARIABLE)
    if not folder or _held:
        yield
        return
    slots = sorted(Path(folder).glob("slot-*"))
    if not slots:
        raise RuntimeError(f"{SLOTS_VARIABLE}={folder} holds no slot files; unset it or remake it")
    while True:
        for slot in slots:
            descriptor = os.open(slot, os.O_RDWR)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                continue
            _held.append(descriptor)
            try:
                yield
            finally:
                _held.pop()
                os.close(descriptor)  # closing the file releases its lock
            return
        time.sleep(POLL_SECONDS)
