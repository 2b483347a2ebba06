"""The interface every task provides."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from bplambda.readout import SequenceTargets


class Task(Protocol):
    input_size: int
    output_size: int

    def sample(
        self, generator: torch.Generator, model_shape: tuple[int, ...] = ()
    ) -> tuple[Tensor, SequenceTargets]:
        """One batch: inputs ``(T, *model_shape, B, I)`` and targets with the same leading
        dims. Each model of a stack may receive its own data."""
        ...

    # Optional, used by the trainer where a task defines them:
    #   observe(loss: Tensor (K,)) -> None      after every training batch (a curriculum)
    #   metrics() -> dict[str, Tensor (K,)]     logged with every logged batch
