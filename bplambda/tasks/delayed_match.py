"""Delayed match-to-sample (Liu et al. 2022, docs/paper-liu2022.md §3.3).

As the closest code by the same author (ModProp's ``bin/delayedXOR_task.py``): two input
channels, a cue on channel 1 at the start and on channel 2 at the end of the trial, separated
by a delay; the network reports at the last step whether the two cues match.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bplambda.readout import SequenceTargets
from bplambda.tasks.base import HeldOutTask, check_split, evaluation_generator, last_step_targets


def gaussian_bump(cue_len: int, amplitude: float, sigma: float) -> Tensor:
    """The cue profile over its window: ``amplitude · exp(−x²/(2σ²))`` on the reference
    code's grid ``x = linspace(−cue_len/2, cue_len/2, cue_len)``, centred on the window's
    centre ``(cue_len − 1)/2`` (spacing ``cue_len/(cue_len − 1)`` steps): ``(cue_len,)``."""
    x = torch.linspace(-cue_len / 2, cue_len / 2, cue_len, dtype=torch.float64)
    return (amplitude * torch.exp(-(x**2) / (2 * sigma**2))).float()


@dataclass(frozen=True)
class DelayedMatch(HeldOutTask):
    """Delayed match-to-sample: inputs ``(T, *L, 2)``, a 2-way label at ``t = T`` only.

    A trial has ``T = cue_len + delay + cue_len`` steps (900 by default, dt = 1 ms). Both
    channels sit at ``baseline``. Each trial draws two cues ``k1, k2 ∈ {0, 1}``; a present cue
    (``k = 1``) adds :func:`gaussian_bump` (``amplitude``, ``sigma``) on top of the baseline,
    on channel 1 over ``t ∈ [0, cue_len)`` and on channel 2 over the last ``cue_len`` steps
    ``[T − cue_len, T)``, each centred on its window. Gaussian noise ``N(0, noise_std²)`` is
    added to every step and channel, fresh for every trial. The label is ``1`` (match) if
    ``k1 == k2``, else ``0``; cross-entropy on the last step only.

    Choices where docs/paper-liu2022.md §3.3 is UNKNOWN (the defaults follow the ModProp code):
    the cues are independent fair coins (so half the trials match); there is no fixation
    period before the first cue; the bump sits on the code's ``linspace`` grid (see
    :func:`gaussian_bump`).

    Generalisation test (our choice; docs/paper-liu2022.md §3.3 leaves it UNKNOWN). Drawn fresh for
    every batch, the training trials come from the test distribution itself, so test − train would
    be zero by construction. With ``train_size`` the network trains on a fixed, finite set of
    that many trials (cues and noise drawn once, as seq-MNIST's images), and ``"test"`` trials
    are fresh ones, from a stream of their own
    (:func:`~bplambda.tasks.base.evaluation_generator`), by default at the training delay and
    noise (``test_delay``, ``test_noise_std`` shift them; a longer delay gives a longer ``T``).
    ``"test_noisy"``: fresh trials with noise ``noisy_test_std`` (10× the training noise by
    default), the counterpart of seq-MNIST's noisy test: how robust the solution is.

    ``sample``: model k draws its cues ``(B, 2)`` and then its noise ``(T, B, 2)`` from
    ``generators[k]``, or with ``train_size`` its ``B`` trials' indices into the training set.
    ``evaluation_set``: ``"train"`` is the training set (its first ``size`` trials) with
    ``train_size``, else drawn like the training trials; the tests as above; ``size=None``
    gives ``eval_size`` trials (the whole training set for ``"train"`` with ``train_size``).
    """

    SPLITS = ("train", "test", "test_noisy")
    input_size = 2
    output_size = 2

    delay: int = 700
    cue_len: int = 100
    amplitude: float = 2.0
    sigma: float = 25.0
    baseline: float = 0.02
    noise_std: float = 0.01
    batch_size: int = 32
    eval_size: int = 1000
    test_delay: int | None = None
    test_noise_std: float | None = None
    noisy_test_std: float = 0.1
    train_size: int | None = None

    def __post_init__(self) -> None:
        delays = [self.delay] + ([] if self.test_delay is None else [self.test_delay])
        if min(delays) < 0:
            raise ValueError(f"delay={self.delay} and test_delay={self.test_delay} must be >= 0")
        if self.train_size is not None and self.train_size < 1:
            raise ValueError(f"train_size={self.train_size} must be >= 1 (None: fresh trials)")
        if self.cue_len < 2 or min(self.batch_size, self.eval_size) < 1 or self.sigma <= 0:
            raise ValueError(
                f"cue_len={self.cue_len} must be >= 2, batch_size={self.batch_size} and "
                f"eval_size={self.eval_size} >= 1, and sigma={self.sigma} > 0"
            )

    @property
    def seq_len(self) -> int:
        return 2 * self.cue_len + self.delay

    def trials(
        self, cues: Tensor, noise: Tensor, delay: int | None = None
    ) -> tuple[Tensor, SequenceTargets]:
        """Trials from cues ``(*L, 2)`` in {0, 1} and already-scaled noise ``(T, *L, 2)``,
        ``T = 2·cue_len + delay`` (``delay`` defaults to the task's): inputs ``(T, *L, 2)``
        and last-step class targets ``(T, *L)``."""
        T = 2 * self.cue_len + (self.delay if delay is None else delay)
        if noise.shape != (T, *cues.shape):
            raise ValueError(f"noise has shape {tuple(noise.shape)}; expected {(T, *cues.shape)}")
        profile = torch.zeros(T, 2)
        bump = gaussian_bump(self.cue_len, self.amplitude, self.sigma)
        profile[: self.cue_len, 0] = bump
        profile[T - self.cue_len :, 1] = bump
        profile = profile.reshape(T, *[1] * (cues.dim() - 1), 2)
        inputs = self.baseline + profile * cues.float() + noise
        labels = (cues[..., 0] == cues[..., 1]).long()
        return inputs, last_step_targets(labels, T)

    def _draw(self, generator: torch.Generator, n: int, T: int) -> tuple[Tensor, Tensor]:
        """Cues ``(n, 2)`` then standard-normal noise ``(T, n, 2)`` from ``generator``."""
        cues = torch.randint(0, 2, (n, 2), generator=generator)
        return cues, torch.randn(T, n, 2, generator=generator)

    @functools.cached_property
    def training_set(self) -> tuple[Tensor, SequenceTargets]:
        """The fixed training trials of ``train_size``: inputs ``(T, n, 2)``, targets
        ``(T, n)``, drawn once from the ``"train"`` stream of seed 0 (the same for every model
        and run, as a data set)."""
        if self.train_size is None:
            raise ValueError("training_set needs train_size; without it trials are drawn fresh")
        cues, noise = self._draw(evaluation_generator("train", 0), self.train_size, self.seq_len)
        return self.trials(cues, self.noise_std * noise)

    def sample(self, generators: Sequence[torch.Generator]) -> tuple[Tensor, SequenceTargets]:
        """inputs ``(T, K, B, 2)``, targets ``(T, K, B)`` with weight 1 at ``t = T`` only."""
        if self.train_size is not None:
            inputs, targets = self.training_set
            picks = torch.stack([torch.randint(self.train_size, (self.batch_size,), generator=g)
                                 for g in generators])  # fmt: skip
            return inputs[:, picks], SequenceTargets(
                targets.values[:, picks], targets.weights, targets.kind
            )
        draws = [self._draw(g, self.batch_size, self.seq_len) for g in generators]
        cues = torch.stack([c for c, _ in draws])  # (K, B, 2)
        noise = torch.stack([z for _, z in draws], dim=1)  # (T, K, B, 2)
        return self.trials(cues, self.noise_std * noise)

    def evaluation_set(
        self, split: str, size: int | None = None, seed: int = 0
    ) -> tuple[Tensor, SequenceTargets]:
        """inputs ``(T, n, 2)``, targets ``(T, n)``, weights one-hot at ``T`` (see the class)."""
        check_split(self, split)
        if split == "train" and self.train_size is not None:
            inputs, targets = self.training_set
            n = self.train_size if size is None else min(size, self.train_size)
            return inputs[:, :n], SequenceTargets(targets.values[:, :n], targets.weights,
                                                  targets.kind)  # fmt: skip
        delay, noise_std = self.delay, self.noise_std
        if split == "test":
            delay = delay if self.test_delay is None else self.test_delay
            noise_std = noise_std if self.test_noise_std is None else self.test_noise_std
        if split == "test_noisy":
            noise_std = self.noisy_test_std
        n = self.eval_size if size is None else size
        cues, noise = self._draw(evaluation_generator(split, seed), n, 2 * self.cue_len + delay)
        return self.trials(cues, noise_std * noise, delay)
