"""Pattern generation (Liu et al. 2022, docs/paper-liu2022.md §3.2; the e-prop reference task).

From a frozen Poisson-noise input, produce a fixed sum of four sines: regression over all
``T = 1000`` steps (``dt = 1 ms``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import torch
from torch import Tensor

from bplambda.readout import SequenceTargets
from bplambda.tasks.base import HeldOutTask, check_split, evaluation_generator

PERIODS = (1000.0, 500.0, 333.0, 200.0)
AMPLITUDE_RANGE = (0.5, 2.0)


def poisson_spikes(shape: Sequence[int], rate: float, generator: torch.Generator) -> Tensor:
    """Bernoulli spikes with probability ``rate`` per step (Poisson at ``rate / dt``): a
    float32 tensor of 0s and 1s of ``shape``."""
    return (torch.rand(tuple(shape), generator=generator) < rate).float()


def sum_of_sines(
    seq_len: int, amplitudes: Tensor, periods: Sequence[float], phases: Tensor
) -> Tensor:
    """``y*_t = Σ_k a_k sin(2π t / P_k + φ_k)`` for ``t = 0 … T−1``: ``(T,)`` float32
    (computed in float64). amplitudes, phases: ``(n_sines,)``; periods in steps."""
    t = torch.arange(seq_len, dtype=torch.float64).unsqueeze(-1)
    P = torch.tensor(periods, dtype=torch.float64)
    a, phi = amplitudes.double(), phases.double()
    return (a * torch.sin(2 * math.pi * t / P + phi)).sum(-1).float()


@dataclass(frozen=True)
class PatternGeneration(HeldOutTask):
    """Frozen noise in, a fixed sum of sines out; the MSE over time: weight 1/T at every step,
    so the loss is the mean squared error over all steps (as the e-prop code), not its sum
    (which grows with T and makes plain SGD at Liu et al.'s lr 0.01 diverge at T = 200).

    ``seed`` draws, in this order, the amplitudes ``a_k ~ U(0.5, 2)``, the phases
    ``φ_k ~ U(0, 2π)`` (one per period) and the frozen input ``(T, I)``: ``input_size``
    channels of Bernoulli spikes with probability ``rate`` per step (50 Hz at dt = 1 ms). The
    target is :func:`sum_of_sines` of the spec's formula; the e-prop reference code also
    shifts it to start at 0 and scales it to ``max |y| = 1``, which is not done here.

    Training batches (docs/paper-liu2022.md §3.2 leaves them open; as the e-prop code): every batch
    is ``batch_size`` identical copies of the frozen input with the fixed target, the same for
    every model; the generators are unused (the training set is this one sequence).

    Generalisation test (UNKNOWN in the paper; our choice): ``"test"`` examples are the frozen
    input with every entry independently resampled with probability ``test_noise``: replaced
    by a fresh Bernoulli(``rate``) draw, so the spike rate is unchanged and about a fraction
    ``test_noise·(1 − rate)`` of the spikes moves; the target is the same. ``test_noise = 0``
    makes the test set the training sequence.

    ``evaluation_set``: ``"train"`` is the training sequence (``size`` copies, ``None``: one,
    the whole training set; ``seed`` unused); ``"test"`` draws ``size`` (``None``:
    ``eval_size``) perturbed inputs from ``seed``.
    """

    SPLITS = ("train", "test")
    output_size = 1

    seq_len: int = 1000
    input_size: int = 100
    periods: tuple[float, ...] = PERIODS
    rate: float = 0.05
    batch_size: int = 1
    seed: int = 0
    test_noise: float = 0.1
    eval_size: int = 32
    device: str = "cpu"  # where ``sample`` makes its batches (see ``to``)

    def __post_init__(self) -> None:
        if min(self.seq_len, self.input_size, self.batch_size, self.eval_size) < 1:
            raise ValueError(
                f"seq_len={self.seq_len}, input_size={self.input_size}, "
                f"batch_size={self.batch_size} and eval_size={self.eval_size} must be >= 1"
            )
        if not 0.0 <= self.rate <= 1.0 or not 0.0 <= self.test_noise <= 1.0:
            raise ValueError(
                f"rate={self.rate} and test_noise={self.test_noise} are probabilities: "
                "pass values in [0, 1]"
            )

    @cached_property
    def _draws(self) -> tuple[Tensor, Tensor, Tensor]:
        """(amplitudes ``(n,)``, phases ``(n,)``, frozen input ``(T, I)``) from ``seed``."""
        g = torch.Generator().manual_seed(self.seed)
        low, high = AMPLITUDE_RANGE
        n = len(self.periods)
        amplitudes = low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)
        phases = 2 * math.pi * torch.rand(n, generator=g, dtype=torch.float64)
        frozen = poisson_spikes((self.seq_len, self.input_size), self.rate, g)
        return amplitudes, phases, frozen

    @property
    def amplitudes(self) -> Tensor:
        """``a_k``: ``(n_sines,)`` float64."""
        return self._draws[0]

    @property
    def phases(self) -> Tensor:
        """``φ_k``: ``(n_sines,)`` float64."""
        return self._draws[1]

    @property
    def frozen_input(self) -> Tensor:
        """The training input: ``(T, I)`` spikes."""
        return self._draws[2]

    @cached_property
    def target(self) -> Tensor:
        """``y*``: ``(T,)``."""
        return sum_of_sines(self.seq_len, self.amplitudes, self.periods, self.phases)

    def to(self, device: torch.device | str) -> PatternGeneration:
        """The same task (the same draws) making its training batches on ``device``."""
        return replace(self, device=str(device))

    @cached_property
    def _on_device(self) -> tuple[Tensor, Tensor]:
        """The frozen input ``(T, I)`` and the target ``(T,)`` on ``device``, uploaded once."""
        return self.frozen_input.to(self.device), self.target.to(self.device)

    def _batch(
        self, inputs: Tensor, target: Tensor | None = None
    ) -> tuple[Tensor, SequenceTargets]:
        """``inputs (T, *L, I)`` → with the target ``(T, *L, 1)`` and weights ``1/T``, made
        where ``target`` (default: :attr:`target`) is."""
        target = self.target if target is None else target
        lead = inputs.shape[1:-1]
        values = target.reshape(-1, *[1] * len(lead), 1).expand(-1, *lead, 1)
        weights = target.new_full((self.seq_len,), 1.0 / self.seq_len, dtype=torch.float32)
        return inputs, SequenceTargets(values, weights, "mse")

    def sample(self, generators: Sequence[torch.Generator]) -> tuple[Tensor, SequenceTargets]:
        """inputs ``(T, K, B, I)`` (the frozen input), targets ``(T, K, B, 1)``, weights 1/T,
        on ``device``."""
        K, B = len(generators), self.batch_size
        frozen, target = self._on_device
        return self._batch(frozen[:, None, None].expand(-1, K, B, -1), target)

    def evaluation_set(
        self, split: str, size: int | None = None, seed: int = 0
    ) -> tuple[Tensor, SequenceTargets]:
        """inputs ``(T, n, I)``, targets ``(T, n, 1)``, weights ``1/T`` (see the class).

        ``"train"`` is the one training sequence whatever ``size`` asks (copies of it would
        only repeat the same loss at ``n`` times the cost); ``"test"`` has ``size`` sequences
        (``eval_size`` for ``None``)."""
        check_split(self, split)
        if split == "train":
            return self._batch(self.frozen_input[:, None])
        n = self.eval_size if size is None else size
        g = evaluation_generator(split, seed)
        shape = (self.seq_len, n, self.input_size)
        fresh = poisson_spikes(shape, self.rate, g)
        resample = torch.rand(shape, generator=g) < self.test_noise
        return self._batch(torch.where(resample, fresh, self.frozen_input[:, None]))
