"""Sequential MNIST (docs/paper-bp-lambda.md §6.3, docs/paper-liu2022.md §3.1): each image is read
row by row, T = 28 steps of 28 pixels.

Pixels in [0, 1] (torchvision's ``ToTensor`` scaling, no normalisation); the label is the target
at the last step only (cross-entropy). The 60,000 training images are split 48,000 / 12,000
into train and validation with a seeded permutation (Liu et al.'s TF split is 55,000 / 5,000:
``validation_size=5000``); the 10,000 test images are the test set. Liu et al.'s noisy test
set adds ``N(0, 0.2²)`` to the test images and clips to [0, 1] (:func:`noisy_images`).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from bplambda.errors import ParameterError
from bplambda.readout import SequenceTargets
from bplambda.tasks.base import HeldOutTask, check_split, last_step_targets

MNIST_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)  # fmt: skip
TRAIN_IMAGES = 60_000
"""MNIST's training images, which :func:`split_mnist` splits into training and validation."""
VALIDATION_SIZE = 12_000
NOISE_SIGMA = 0.2  # Liu et al.'s noisy test set


def _missing_data_message(root: Path, cause: str) -> str:
    """One line: where MNIST was looked for, why it is not there, and how to get it."""
    raw = root / "MNIST" / "raw"
    return (
        f"MNIST is not in {raw} and could not be downloaded ({cause}). Either let torchvision "
        "download it on a machine with internet (it does so on first use), or copy the four "
        f"files {', '.join(MNIST_FILES)} (or their .gz versions) from such a machine into "
        f"{raw}, or pass data_dir=<a folder whose MNIST/raw/ holds them>; in a checkout with "
        "../shared/data beside it, `make data` links the shared copy."
    )


class MissingMNISTError(ParameterError, FileNotFoundError):
    """MNIST is not where it was looked for: a bad ``data_dir`` to a notebook, a missing file
    to a library caller (it is both a ``ValueError`` and a ``FileNotFoundError``)."""


def has_mnist(data_dir: str | Path) -> bool:
    """Whether ``<data_dir>/MNIST/raw`` holds the four files (plain or ``.gz``)."""
    raw = Path(data_dir) / "MNIST" / "raw"
    return all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in MNIST_FILES)


def _remove_empty_folders(folder: Path, stop: Path) -> None:
    """Remove ``folder`` and its parents up to (not including) ``stop`` while they are empty."""
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


def require_mnist(data_dir: str | Path, download: bool = True) -> Path:
    """``data_dir`` once it holds MNIST: downloaded there by torchvision if missing (and
    ``download``). Otherwise raises :class:`MissingMNISTError` saying how to get the files, and
    leaves no empty ``MNIST/raw`` behind (a later ``make data`` would take
    it for data)."""
    from torchvision.datasets import MNIST

    root = Path(data_dir)
    if has_mnist(root):
        return root
    cause = "download=False"
    if download:
        existed = (root / "MNIST" / "raw").exists()
        try:
            silent = io.StringIO()  # torchvision prints every mirror it tries
            with contextlib.redirect_stdout(silent), contextlib.redirect_stderr(silent):
                MNIST(root=str(root), train=True, download=True)
                MNIST(root=str(root), train=False, download=True)
            return root
        except (RuntimeError, OSError) as error:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            cause = f"{type(error).__name__}: {' '.join(dict.fromkeys([lines[0], lines[-1]]))}"
            if not existed:
                _remove_empty_folders(root / "MNIST" / "raw", root)
    raise MissingMNISTError(
        f"parameter data_dir={str(data_dir)!r} is invalid: {_missing_data_message(root, cause)}"
    )


def link_shared_mnist(data_dir: str | Path, shared: str | Path) -> str:
    """Make ``<data_dir>/MNIST`` a link to ``shared`` (a folder with ``raw/``) unless it already
    holds MNIST: an empty or incomplete ``data/MNIST`` left by a failed download is replaced
    (it holds no data); a complete one, or a link to one, is kept. Returns what was done."""
    target, shared = Path(data_dir) / "MNIST", Path(shared).resolve()
    if not has_mnist(shared.parent if shared.name == "MNIST" else shared):
        return f"no MNIST in {shared}; nothing linked"
    if has_mnist(data_dir):
        return f"{target} already holds MNIST; kept"
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.is_dir():
        leftovers = [p for p in target.rglob("*") if p.is_file()]
        if any(not p.name.endswith((".gz", ".tmp", "-ubyte")) for p in leftovers):
            return f"{target} holds other files; not replaced (move it away to link {shared})"
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(shared, target_is_directory=True)
    return f"linked {shared} -> {target}"


def load_mnist(data_dir: str | Path = "data", download: bool = True) -> dict[str, Tensor]:
    """All of MNIST as uint8 tensors: ``train_images (60000, 28, 28)``, ``train_labels``,
    ``test_images (10000, 28, 28)``, ``test_labels``.

    Uses ``torchvision.datasets.MNIST`` (downloading into ``data_dir`` when the files are
    missing and ``download`` is true, see :func:`require_mnist`); raises
    :class:`MissingMNISTError` saying how to get the files when that fails.
    """
    from torchvision.datasets import MNIST

    root = require_mnist(data_dir, download)
    train = MNIST(root=str(root), train=True, download=False)
    test = MNIST(root=str(root), train=False, download=False)
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
    data: dict[str, Tensor],
    split_seed: int = 0,
    limit: int | None = None,
    validation_size: int | None = None,
) -> MNISTSplits:
    """48,000 / 12,000 train / validation (seeded permutation) and the 10,000 test images.

    ``validation_size`` (default ``VALIDATION_SIZE``, 12,000) moves the boundary: 5,000 gives
    Liu et al.'s 55,000 / 5,000. ``limit`` keeps only the first ``limit`` images of every split
    (the smoke profile).
    """
    n_val = VALIDATION_SIZE if validation_size is None else validation_size
    order = torch.randperm(
        len(data["train_images"]), generator=torch.Generator().manual_seed(split_seed)
    )
    val, train = order[:n_val], order[n_val:]

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
    return inputs, last_step_targets(labels, inputs.shape[0])


def noisy_images(images: Tensor, sigma: float, seed: int) -> Tensor:
    """``clip(images + σ·ε, 0, 1)``, ``ε ~ N(0, 1)`` drawn from ``seed``: Liu et al.'s noisy
    test images (σ = 0.2). images: ``(N, 28, 28)`` in [0, 1]; the same shape back."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=g, dtype=images.dtype).to(images.device)
    return (images + sigma * noise).clamp(0.0, 1.0)


class SequentialMNIST(HeldOutTask):
    """Training batches in epochs: each stacked model walks its own shuffled permutation,
    drawn from its own generator (so seed s sees the same images in every stack).

    State is real here (the position in the current epoch), hence a class. ``sample`` gives
    ``(28, K, B, 28)`` inputs; new permutations start when an epoch is used up (one
    ``randperm`` per model and epoch: the only per-model loop, once per epoch).

    Held-out sets (``evaluation_set``): ``"train"`` (the training images), ``"val"`` and
    ``"test"`` (``held_out``: ``{"val": (images, labels), "test": (images, labels)}``, as
    :meth:`from_splits` passes them) and ``"test_noisy"`` (the ``"test"`` images through
    :func:`noisy_images` with ``noise_sigma``).
    """

    SPLITS = ("train", "val", "test", "test_noisy")
    input_size = 28
    output_size = 10
    seq_len = 28

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int = 50,
        held_out: Mapping[str, tuple[Tensor, Tensor]] | None = None,
        noise_sigma: float = NOISE_SIGMA,
    ) -> None:
        if batch_size < 1 or batch_size > len(images):
            raise ValueError(f"batch_size={batch_size} must be in [1, {len(images)}]")
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.held_out = {"train": (images, labels), **(held_out or {})}
        self.noise_sigma = noise_sigma
        self._order: Tensor | None = None
        self._position = 0

    @classmethod
    def from_splits(
        cls, splits: MNISTSplits, batch_size: int = 50, noise_sigma: float = NOISE_SIGMA
    ) -> SequentialMNIST:
        """Training batches from ``splits.train_*``, held-out sets from all three splits."""
        held_out = {
            "val": (splits.val_images, splits.val_labels),
            "test": (splits.test_images, splits.test_labels),
        }
        return cls(splits.train_images, splits.train_labels, batch_size, held_out, noise_sigma)

    def evaluation_set(
        self, split: str, size: int | None = None, seed: int = 0
    ) -> tuple[Tensor, SequenceTargets]:
        """inputs ``(28, n, 28)`` and last-step labels ``(28, n)``: the whole split in its
        order (``size=None``), or ``size`` images picked by a permutation seeded by ``seed``
        (the same images for ``"test"`` and ``"test_noisy"``, whose noise is also drawn from
        ``seed``)."""
        check_split(self, split)
        source = "test" if split == "test_noisy" else split
        if source not in self.held_out:
            raise ValueError(
                f"split={split!r}: this task holds no {source!r} images; build it with "
                "SequentialMNIST.from_splits(split_mnist(...)) or pass held_out"
            )
        images, labels = self.held_out[source]
        if size is not None:
            if not 1 <= size <= len(images):
                raise ValueError(f"size={size} must be in [1, {len(images)}] for {split!r}")
            index = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
            images, labels = images[index[:size]], labels[index[:size]]
        if split == "test_noisy":
            images = noisy_images(images, self.noise_sigma, seed)
        return as_sequences(images, labels)

    def to(self, device: torch.device | str) -> SequentialMNIST:
        """Keep the training images on ``device`` (MNIST fits on any GPU): batches are then
        gathered there, with no upload per batch. Returns the task itself."""
        self.images, self.labels = self.images.to(device), self.labels.to(device)
        return self

    def reset(self) -> None:
        """Start a new run's data stream: a fresh epoch order from the run's generators."""
        self._order, self._position = None, 0

    @property
    def batches_per_epoch(self) -> int:
        return len(self.images) // self.batch_size

    def state_dict(self) -> dict[str, Tensor | int | None]:
        """The epoch's order ``(K, n)`` and the position in it: what a resumed run needs."""
        return {"order": self._order, "position": self._position}

    def load_state_dict(self, state: dict[str, Tensor | int | None]) -> None:
        self._order, self._position = state["order"], state["position"]

    def sample(self, generators: Sequence[torch.Generator]) -> tuple[Tensor, SequenceTargets]:
        if (
            self._order is None
            or self._order.shape[0] != len(generators)
            or (self._position + self.batch_size > self._order.shape[1])
        ):
            self._order = torch.stack(
                [torch.randperm(len(self.images), generator=g) for g in generators]
            ).to(self.images.device)  # one upload per epoch
            self._position = 0
        index = self._order[:, self._position : self._position + self.batch_size]
        self._position += self.batch_size
        return as_sequences(self.images[index], self.labels[index])


if __name__ == "__main__":  # `make data`: python -m bplambda.tasks.mnist DATA_DIR SHARED_MNIST
    print(link_shared_mnist(sys.argv[1], sys.argv[2]))
