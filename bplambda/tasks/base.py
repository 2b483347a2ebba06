"""The interface every task provides."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from bplambda.readout import SequenceTargets


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
