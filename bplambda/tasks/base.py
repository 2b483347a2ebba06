"""The interface every task provides, and the helpers of its optional held-out protocol."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from bplambda.readout import SequenceTargets, last_step


class Task(Protocol):
    input_size: int
    output_size: int

    def sample(self, generators: Sequence[torch.Generator]) -> tuple[Tensor, SequenceTargets]:
        """One batch for ``K = len(generators)`` stacked models: inputs ``(T, K, B, I)`` and
        targets with the same leading dims. Model k's data come from ``generators[k]`` alone
        (seeded by its seed), so a seed sees the same data in every stack and every condition,
        and a stacked run equals one run per seed."""
        ...

    # Optional, used by the trainer where a task defines them:
    #   observe(loss: Tensor (K,)) -> None      after every training batch (a curriculum)
    #   metrics() -> dict[str, Tensor (K,)]     logged with every logged batch
    #   reset() -> None                         at the start of every run: a task object
    #                                           can serve several runs, each from the start
    #                                           of its own stream (an epoch order, a level)
    #   state_dict() -> dict, load_state_dict(state: dict) -> None
    #                                           the task's own state (a curriculum's level,
    #                                           an epoch's order), saved with a run's
    #                                           training state (bplambda.resume)
    #   to(device) -> Task                      the task (itself, or a copy) making its
    #                                           batches on ``device``, so that a GPU run
    #                                           uploads no data per batch
    #
    # Optional held-out protocol (generalisation gaps, LIU2022.md §4.2), for
    # bplambda.evaluate.evaluation_metrics:
    #   SPLITS: tuple[str, ...]                 class attribute: the splits the task knows,
    #                                           at least "train" (drawn like the training
    #                                           data) and "test" (the generalisation test)
    #   evaluation_set(split: str, size: int | None = None, seed: int = 0)
    #       -> tuple[Tensor, SequenceTargets]
    #       A FIXED set, the same for every stacked model and every call with the same
    #       arguments: inputs (T, n, I), targets with values (T, n, O) (or (T, n) class
    #       indices) and weights (T,). ``size=None`` is the whole split (or the task's stated
    #       default where a split is unbounded); an unknown split raises ValueError naming the
    #       valid ones (check_split).


def check_split(task: object, split: str) -> None:
    """Raise ``ValueError`` naming ``type(task).SPLITS`` unless ``split`` is one of them."""
    splits: tuple[str, ...] = type(task).SPLITS  # type: ignore[attr-defined]
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
