"""The toy task of the paper's gradient-alignment experiment (docs/paper-bp-lambda.md §6.1).

A static binary input at the first step, zeros afterwards, and a 2-D MSE target at the last
step only. In the official code every example is identical: the input code is drawn once from
``RandomState(123)`` (833 = 0b1101000001) and the target is ``(sin 0, cos 0) = (0, 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from bplambda.readout import SequenceTargets, last_step
from bplambda.tasks.base import Task


@lru_cache(maxsize=8)
def toy_input_code(input_size: int = 10, seed: int = 123, device: str = "cpu") -> Tensor:
    """The official code's binary input pattern: the first of its distinct codes,
    ``RandomState(seed).choice(2**I, npoints, replace=False)``, written in binary. Made once
    per device (cached: a GPU run uploads it once, not every batch); never modify it."""
    code = int(np.random.RandomState(seed).choice(2**input_size, 1, replace=False)[0])
    bits = [float(bit) for bit in format(code, f"0{input_size}b")]
    return torch.tensor(bits, device=device)


@dataclass(frozen=True)
class ToyTask(Task):
    """Fixed input at t = 1, MSE target ``(0, 1)`` at t = T; batches of identical copies,
    made on ``device``."""

    seq_len: int = 10
    batch_size: int = 10
    input_size: int = 10
    output_size: int = 2
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.seq_len < 1 or self.batch_size < 1:
            raise ValueError(
                f"seq_len={self.seq_len} and batch_size={self.batch_size} must both be >= 1"
            )

    def sample(self, generators: Sequence[torch.Generator]) -> tuple[Tensor, SequenceTargets]:
        """inputs ``(T, K, B, 10)``, targets ``(T, K, B, 2)`` with weight 1 at ``t = T`` only.

        The batch is deterministic (the generators are unused), as in the official code.
        """
        T, B, K, device = self.seq_len, self.batch_size, len(generators), self.device
        inputs = torch.zeros(T, K, B, self.input_size, device=device)
        inputs[0] = toy_input_code(self.input_size, device=device)
        values = torch.zeros(T, K, B, self.output_size, device=device)
        values[-1, ..., 1] = 1.0
        return inputs, SequenceTargets(values, last_step(T, device).float(), "mse")

    def to(self, device: torch.device | str) -> ToyTask:
        """The same task making its batches on ``device``."""
        return replace(self, device=str(device))
