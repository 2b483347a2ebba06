"""Copy-repeat with a curriculum (Graves 2014 NTM style; docs/paper-bp-lambda.md §6.4).

A pattern of ``N`` steps of 8 random bits follows a start delimiter; the network must then
output the pattern ``R`` times and an end delimiter. ``T = (R+1)·N + 3``.

- inputs ``(T, B, 10)``: t = 0 channel 8 = 1 (start); t = 1…N channels 0–7 = the bits;
  t = N+1 channel 9 = R/10; zeros after;
- targets ``(T, B, 9)``: t = N+2 … T−2 the pattern tiled R times (channels 0–7); t = T−1
  channel 8 = 1 (end); zeros elsewhere;
- loss: binary cross-entropy with logits averaged over t ≥ N+2 (all 9 channels) and the batch.

Curriculum (the official code): after every training batch whose loss is below 0.15 bits per
output element, ``R += 1`` if ``R < N``, else ``N += 1``:
(1,1,5) → (2,1,7) → (2,2,9) → (3,2,12) → (3,3,15) → …
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from bplambda.readout import SequenceTargets
from bplambda.tasks.base import Task

BITS = 8
INPUT_SIZE = BITS + 2  # bits, start delimiter, repeat count
OUTPUT_SIZE = BITS + 1  # bits, end delimiter
REPEAT_NORMALISER = 10.0
THRESHOLD_BITS = 0.15


def sequence_length(N: Tensor | int, R: Tensor | int) -> Tensor | int:
    """``T = (R+1)·N + 3``."""
    return (R + 1) * N + 3


def next_level(N: Tensor, R: Tensor, solved: Tensor) -> tuple[Tensor, Tensor]:
    """The curriculum step, element-wise: where ``solved``, ``R += 1`` if ``R < N`` else
    ``N += 1``."""
    grow_r = solved & (R < N)
    grow_n = solved & (R >= N)
    return N + grow_n.long(), R + grow_r.long()


def copy_repeat_batch(
    bits: Tensor, N: Tensor, R: Tensor, T_max: int | None = None
) -> tuple[Tensor, SequenceTargets]:
    """One batch per model, each at its own level, front-padded to a common length.

    bits: ``(K, B, N_max, 8)`` random bits (only the first ``N_k`` are used by model k);
    N, R: ``(K,)``. Returns inputs ``(T_max, K, B, 11)`` whose last channel flags the real
    steps (1) against the padding (0) for :class:`~bplambda.cells.MaskedCell`, and targets
    ``(T_max, K, B, 9)`` with per-model weights ``(T_max, K)``. Model k's sequence occupies the
    last ``T_k`` steps, so every sequence ends at ``T_max`` (truncation windows aligned to the
    end stay aligned, and the terminal step is shared).
    """
    K, B = bits.shape[:2]
    T = sequence_length(N, R)
    T_max = int(T.max()) if T_max is None else T_max
    local = torch.arange(T_max).unsqueeze(1) - (T_max - T).unsqueeze(0)  # (T_max, K) local t
    real = local >= 0
    inputs = torch.zeros(T_max, K, B, INPUT_SIZE + 1)
    targets = torch.zeros(T_max, K, B, OUTPUT_SIZE)
    inputs[..., -1] = real.float().unsqueeze(-1)
    inputs[..., BITS] = (local == 0).float().unsqueeze(-1)
    inputs[..., BITS + 1] = ((local == N + 1).float() * R / REPEAT_NORMALISER).unsqueeze(-1)
    # pattern input at t = 1..N: bit index t-1; pattern target at t = N+2..T-2: (t-N-2) mod N
    shown = (local >= 1) & (local <= N)
    recalled = (local >= N + 2) & (local <= T - 2)
    index = torch.where(shown, local - 1, torch.where(recalled, (local - N - 2) % N, 0))
    gathered = bits.gather(2, index.T.reshape(K, 1, T_max, 1).expand(K, B, T_max, BITS))
    gathered = gathered.permute(2, 0, 1, 3)  # (T_max, K, B, 8)
    inputs[..., :BITS] = gathered * shown.float()[..., None, None]
    targets[..., :BITS] = gathered * recalled.float()[..., None, None]
    targets[..., BITS] = (local == T - 1).float().unsqueeze(-1)
    scored = local >= N + 2
    weights = scored.float() / (T - N - 2).float()
    return inputs, SequenceTargets(targets, weights, "bce")


class CopyRepeatTask(Task):
    """Fresh random batches every step, one curriculum level per stacked model.

    State is real (each model's level), hence a class. ``observe(loss)`` applies the
    curriculum after a training batch; ``metrics()`` reports each model's N, R and T.
    ``start``: the level (N, R) every run starts at; ``threshold_bits=0`` holds it there (a
    fixed T, e.g. to time the rules).

    The curriculum is the one host sync per batch a GPU run cannot avoid: the next batch's
    length depends on this batch's loss.
    """

    input_size = INPUT_SIZE + 1  # with the padding flag, for MaskedCell
    output_size = OUTPUT_SIZE

    def __init__(
        self,
        batch_size: int = 100,
        threshold_bits: float = THRESHOLD_BITS,
        start: tuple[int, int] = (1, 1),
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if len(start) != 2 or min(start) < 1:
            raise ValueError(f"start={start!r} must be a level (N, R) with N, R >= 1")
        self.batch_size, self.threshold_bits, self.start = batch_size, threshold_bits, start
        self.N: Tensor | None = None
        self.R: Tensor | None = None

    def _levels(self, models: int) -> tuple[Tensor, Tensor]:
        if self.N is None or len(self.N) != models:
            self.N = torch.full((models,), self.start[0], dtype=torch.long)
            self.R = torch.full((models,), self.start[1], dtype=torch.long)
        return self.N, self.R

    @property
    def seq_len(self) -> int:
        if self.N is None:
            return int(sequence_length(*self.start))
        return int(sequence_length(self.N, self.R).max())

    def sample(self, generators: Sequence[torch.Generator]) -> tuple[Tensor, SequenceTargets]:
        """Model k draws its ``(B, N_k, 8)`` bits from ``generators[k]`` at its own level
        (one small ``randint`` per model: the data stream of a seed must not depend on the
        other models of its stack); they are padded to the stack's longest pattern."""
        N, R = self._levels(len(generators))
        bits = torch.zeros(len(generators), self.batch_size, int(N.max()), BITS)
        for k, (generator, length) in enumerate(zip(generators, N.tolist())):
            draw = torch.randint(0, 2, (self.batch_size, length, BITS), generator=generator)
            bits[k, :, :length] = draw.float()
        return copy_repeat_batch(bits, N, R)

    def reset(self) -> None:
        """Start a new run at the ``start`` level."""
        self.N = self.R = None

    def observe(self, loss: Tensor) -> None:
        """Curriculum: a model whose batch loss is below ``threshold_bits`` bits per output
        element moves up one level. loss: ``(K,)`` mean BCE in nats."""
        solved = (loss.detach().cpu().reshape(-1) / math.log(2)) < self.threshold_bits
        self.N, self.R = next_level(self.N, self.R, solved)

    def state_dict(self) -> dict[str, Tensor | None]:
        """Each model's level ``(K,)``: what a resumed run needs."""
        return {"N": self.N, "R": self.R}

    def load_state_dict(self, state: dict[str, Tensor | None]) -> None:
        self.N, self.R = state["N"], state["R"]

    def metrics(self) -> dict[str, Tensor]:
        """Each model's current level: ``N``, ``R`` and ``T``, ``(K,)`` each."""
        return {"N": self.N, "R": self.R, "T": sequence_length(self.N, self.R)}
