"""Sequential MNIST (PAPER.md §6.3): each image is read row by row, T = 28 steps of 28 pixels.

Pixels in [0, 1] (torchvision's ``ToTensor`` scaling, no normalisation); the label is the target
at the last step only (cross-entropy). The 60,000 training images are split 48,000 / 12,000
into train and validation with a seeded permutation; the 10,000 test images are the test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from bplambda.readout import SequenceTargets

MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)  # fmt: skip
VALIDATION_SIZE = 12_000


def _missing_data_message(root: Path, cause: Exception) -> str:
    raw = root / "MNIST" / "raw"
    return (
        f"MNIST is not in {raw} and could not be downloaded ({type(cause).__name__}: {cause}). "
        f"Put the four files {', '.join(MNIST_FILES)} (or their .gz versions) into {raw}, or "
        "pass data_dir=<a folder whose MNIST/raw/ holds them>. On this project's machines "
        "`make data` links ../shared/data/MNIST there."
    )


def load_mnist(data_dir: str | Path = "data", download: bool = True) -> dict[str, Tensor]:
    """All of MNIST as uint8 tensors: ``train_images (60000, 28, 28)``, ``train_labels``,
    ``test_images (10000, 28, 28)``, ``test_labels``.

    Uses ``torchvision.datasets.MNIST`` (downloading into ``data_dir`` when the files are
    missing and ``download`` is true); raises ``FileNotFoundError`` saying where to put the
    files when that fails.
    """
    from torchvision.datasets import MNIST

    root = Path(data_dir)
    try:
        train = MNIST(root=str(root), train=True, download=download)
        test = MNIST(root=str(root), train=False, download=download)
    except (RuntimeError, OSError) as error:
        raise FileNotFoundError(_missing_data_message(root, error)) from error
    return {
        "train_images": train.data, "train_labels": train.targets,
        "test_images": test.data, "test_labels": test.targets,
    }  # fmt: skip


@dataclass(frozen=True)
class MNISTSplits:
    """Images as sequences ``(N, 28, 28)`` in [0, 1] (float32) and labels ``(N,)``."""

    train_images: Tensor
    train_labels: Tensor
    val_images: Tensor
    val_labels: Tensor
    test_images: Tensor
    test_labels: Tensor


def split_mnist(
    data: dict[str, Tensor], split_seed: int = 0, limit: int | None = None
) -> MNISTSplits:
    """48,000 / 12,000 train / validation (seeded permutation) and the 10,000 test images.

    ``limit`` keeps only the first ``limit`` images of every split (the smoke profile).
    """
    order = torch.randperm(
        len(data["train_images"]), generator=torch.Generator().manual_seed(split_seed)
    )
    val, train = order[:VALIDATION_SIZE], order[VALIDATION_SIZE:]

    def images(x: Tensor) -> Tensor:
        return (x[:limit] if limit else x).float() / 255.0

    def labels(y: Tensor) -> Tensor:
        return y[:limit] if limit else y

    return MNISTSplits(
        images(data["train_images"][train]), labels(data["train_labels"][train]),
        images(data["train_images"][val]), labels(data["train_labels"][val]),
        images(data["test_images"]), labels(data["test_labels"]),
    )  # fmt: skip


def as_sequences(images: Tensor, labels: Tensor) -> tuple[Tensor, SequenceTargets]:
    """``images (*M, B, 28, 28)`` → inputs ``(28, *M, B, 28)`` and a last-step CE target."""
    inputs = images.movedim(-2, 0)
    T = inputs.shape[0]
    values = labels.unsqueeze(0).expand(T, *labels.shape)
    weights = torch.zeros(T)
    weights[-1] = 1.0
    return inputs, SequenceTargets(values, weights, "cross_entropy")


class SequentialMNIST:
    """Training batches in epochs: each stacked model walks its own shuffled permutation.

    State is real here (the position in the current epoch), hence a class. ``sample`` gives
    ``(28, *M, B, 28)`` inputs; a new permutation per model starts when an epoch is used up.
    """

    input_size = 28
    output_size = 10
    seq_len = 28

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int = 50) -> None:
        if batch_size < 1 or batch_size > len(images):
            raise ValueError(f"batch_size={batch_size} must be in [1, {len(images)}]")
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self._order: Tensor | None = None
        self._position = 0

    @property
    def batches_per_epoch(self) -> int:
        return len(self.images) // self.batch_size

    def sample(
        self, generator: torch.Generator, model_shape: tuple[int, ...] = ()
    ) -> tuple[Tensor, SequenceTargets]:
        models = int(torch.tensor(model_shape).prod()) if model_shape else 1
        if (
            self._order is None
            or self._order.shape[0] != models
            or (self._position + self.batch_size > self._order.shape[1])
        ):
            noise = torch.rand((models, len(self.images)), generator=generator)
            self._order = noise.argsort(dim=1)  # one permutation per model
            self._position = 0
        index = self._order[:, self._position : self._position + self.batch_size]
        self._position += self.batch_size
        index = index.reshape(*model_shape, self.batch_size)
        return as_sequences(self.images[index], self.labels[index])
