"""The base every task derives from (its hooks do nothing until a task overrides them), and
the helpers of the held-out protocol."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from bplambda.readout import SequenceTargets, last_step


class Task:
    """What every task provides (``input_size``, ``output_size``, :meth:`sample`) and the hooks
    the trainer calls on every task: here they do nothing, and a task with state (an epoch
    order, a curriculum level) or a device of its own overrides the ones it needs."""

    input_size: int
    output_size: int

    def sample(self, generators: Sequence[torch.Generator]) -> tuple[Tensor, SequenceTargets]:
        """One batch for ``K = len(generators)`` stacked models: inputs ``(T, K, B, I)`` and
        targets with the same leading dims. Model k's data come from ``generators[k]`` alone
        (seeded by its seed), so a seed sees the same data in every stack and every condition,
        and a stacked run equals one run per seed."""
        raise NotImplementedError(f"{type(self).__name__} must define sample(generators)")

    def to(self, device: torch.device | str) -> Task:
        """The task (itself, or a copy) making its batches on ``device``, so that a GPU run
        uploads no data per batch; by default batches are made on the CPU and uploaded."""
        return self

    def reset(self) -> None:
        """Called at the start of every run: a task object can serve several runs, each from
        the start of its own stream (an epoch order, a curriculum level)."""

    def observe(self, loss: Tensor) -> None:
        """Called after every training batch with the batch loss ``(K,)`` (``inf`` for a
        diverged model), e.g. by a curriculum."""

    def metrics(self) -> dict[str, Tensor]:
        """Logged with every logged batch: ``{name: (K,)}`` (e.g. a curriculum's level)."""
        return {}

    def state_dict(self) -> dict:
        """The task's own state, saved with a run's training state (:mod:`bplambda.resume`)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Put back what :meth:`state_dict` returned."""


class HeldOutTask(Task):
    """A task with fixed held-out sets (generalisation gaps, docs/paper-liu2022.md §4.2), read by
    :func:`bplambda.evaluate.evaluation_metrics`. ``SPLITS`` names the splits it knows, at
    least ``"train"`` (drawn like the training data) and ``"test"`` (the generalisation test).
    """

    SPLITS: tuple[str, ...]

    def evaluation_set(
        self, split: str, size: int | None = None, seed: int = 0
    ) -> tuple[Tensor, SequenceTargets]:
        """A FIXED set, the same for every stacked model and every call with the same
        arguments: inputs ``(T, n, I)``, targets with values ``(T, n, O)`` (or ``(T, n)`` class
        indices) and weights ``(T,)``. ``size=None`` is the whole split (or the task's stated
        default where a split is unbounded); an unknown split raises ``ValueError`` naming the
        valid ones (:func:`check_split`)."""
        raise NotImplementedError(f"{type(self).__name__} must define evaluation_set")


def check_split(task: HeldOutTask, split: str) -> None:
    """Raise ``ValueError`` naming ``type(task).SPLITS`` unless ``split`` is one of them."""
    splits = type(task).SPLITS
    if split not in splits:
        raise ValueError(
            f"split={split!r} is unknown for {type(task).__name__}; choose one of {list(splits)}"
        )


def evaluation_generator(split: str, seed: int) -> torch.Generator:
    """A generator for a held-out ``split`` drawn with ``seed``: a stream of its own, apart
    from every other split's and from the training streams (``manual_seed(seed)`` of the
    model seeds), derived from ``(seed, crc32(split))`` by NumPy's ``SeedSequence``."""
    entropy = (seed, zlib.crc32(split.encode()))
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


def last_step_targets(labels: Tensor, seq_len: int) -> SequenceTargets:
    """Class indices ``labels (*L,)`` scored at the last step only: values ``(T, *L)``
    (the labels repeated at every step), weights one-hot at ``t = T``, cross-entropy."""
    values = labels.unsqueeze(0).expand(seq_len, *labels.shape)
    return SequenceTargets(values, last_step(seq_len, labels.device).float(), "cross_entropy")
