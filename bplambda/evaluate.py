"""Held-out evaluation: loss and error of stacked models on a whole data set, forward only."""

from __future__ import annotations

import torch
from torch import Tensor

from bplambda.cells import Cell
from bplambda.outputs import ParamGroups
from bplambda.readout import SequenceTargets, example_losses, readout
from bplambda.tasks.mnist import as_sequences


def shared_by_models(t: Tensor, model_shape: torch.Size) -> Tensor:
    """``t: (T, n, ...)`` shared by all models → a view ``(T, *M, n, ...)``."""
    shaped = t.reshape(t.shape[0], *[1] * len(model_shape), *t.shape[1:])
    return shaped.expand(t.shape[0], *model_shape, *t.shape[1:])


@torch.no_grad()
def evaluation_metrics(
    cell: Cell, params: ParamGroups, inputs: Tensor, targets: SequenceTargets, chunk: int = 2000
) -> dict[str, Tensor]:
    """The task loss and, for cross-entropy targets, the error rate, per model: ``(*M,)`` each.

    inputs: ``(T, N, I)`` and targets with values ``(T, N, O)`` (or ``(T, N)`` class indices)
    and weights ``(T,)``, shared by all models (a task's ``evaluation_set``); the model dims
    ``*M`` are read from ``params["readout"]["bias"]: (*M, O)``.

    ``"loss"``: the training loss ``Σ_t step_losses`` (weighted per-step losses), averaged
    over the ``N`` examples; ``"loss_se"``: its standard error over the examples
    (their standard deviation / √N). ``"error"`` (cross-entropy only): the fraction of wrong argmax
    predictions over the examples and the steps with nonzero weight (for a last-step label,
    the usual error rate). Evaluated ``chunk`` examples at a time, keeping only the current
    state and only scoring steps with a nonzero weight, so memory stays
    ``O(T·chunk·I + M·chunk·S)``.
    """
    if targets.weights.dim() != 1:
        raise ValueError(
            f"targets.weights has shape {tuple(targets.weights.shape)}; an evaluation set "
            "is shared by all models, so pass per-step weights (T,)"
        )
    bias = params["readout"]["bias"]
    model_shape, device, dtype = bias.shape[:-1], bias.device, bias.dtype
    weights = targets.weights.to(device, dtype)
    scored = (targets.weights != 0).tolist()  # (T,) on the host: no sync per step
    classify = targets.kind == "cross_entropy"
    N = inputs.shape[1]
    total_loss = torch.zeros(model_shape, device=device, dtype=dtype)
    square_sum = torch.zeros(model_shape, device=device, dtype=dtype)
    wrong = torch.zeros(model_shape, device=device, dtype=dtype)
    for start in range(0, N, chunk):
        x = shared_by_models(inputs[:, start : start + chunk].to(device, dtype), model_shape)
        y = shared_by_models(targets.values[:, start : start + chunk], model_shape)
        chunk_targets = SequenceTargets(y, weights, targets.kind).to(device, dtype)
        n = x.shape[-2]
        s = x.new_zeros(*x.shape[1:-1], cell.state_size)
        per_example = x.new_zeros(*model_shape, n)
        for t, x_t in enumerate(x):
            s = cell.step(params["rnn"], x_t, s)
            if not scored[t]:
                continue
            out = readout(params["readout"], cell.hidden(s))  # (*M, n, O)
            step = SequenceTargets(
                chunk_targets.values[t : t + 1], weights[t : t + 1], targets.kind
            )
            per_example += example_losses(out.unsqueeze(0), step)[0]
            if classify:
                wrong += (out.argmax(-1) != step.values[0]).to(dtype).sum(-1)
        total_loss += per_example.sum(-1)
        square_sum += (per_example**2).sum(-1)
    mean = total_loss / N
    spread = (square_sum / N - mean**2).clamp(min=0) * N / max(N - 1, 1)
    metrics = {"loss": mean, "loss_se": (spread / N).sqrt()}
    if classify:
        metrics["error"] = wrong / (N * sum(scored))
    return metrics


def classification_metrics(
    cell: Cell, params: ParamGroups, images: Tensor, labels: Tensor, chunk: int = 2000
) -> dict[str, Tensor]:
    """Cross-entropy and error rate of the last-step readout, per model: ``(*M,)`` each.

    images: ``(N, T, I)`` shared by all models (rows are time steps), labels ``(N,)``:
    :func:`evaluation_metrics` of the last-step classification task.
    """
    inputs, targets = as_sequences(images, labels)
    return evaluation_metrics(cell, params, inputs, targets, chunk)


def generalisation(
    cell: Cell,
    params: ParamGroups,
    task: object,
    size: int | None = None,
    seed: int = 0,
    chunk: int = 2000,
) -> dict[str, Tensor]:
    """Train and held-out metrics on a task's fixed, seeded evaluation sets, and the gaps
    (docs/paper-liu2022.md §4.2), per model: ``(*M,)`` each.

    task: one with the held-out protocol (``SPLITS``, ``evaluation_set``, see
    :mod:`bplambda.tasks.base`). For ``"train"`` and every split whose name starts with
    ``"test"`` (seq-MNIST: the clean and the noisy test set): ``{split}_loss`` and, for
    classification, ``{split}_error``; then ``gap_{split}_loss`` = test − train loss and
    ``gap_{split}_error`` = test − train error, and the standard errors ``{split}_loss_se``
    and ``gap_{split}_loss_se`` (the two sets' in quadrature). ``size`` examples per split
    (``None``: the task's default) drawn with ``seed``: the same sets at every checkpoint and
    for every rule.
    """
    splits = ["train", *(s for s in type(task).SPLITS if s.startswith("test"))]
    metrics: dict[str, Tensor] = {}
    for split in splits:
        inputs, targets = task.evaluation_set(split, size, seed)
        for name, value in evaluation_metrics(cell, params, inputs, targets, chunk).items():
            metrics[f"{split}_{name}"] = value
    for split in splits[1:]:
        for name in ("loss", "error"):
            if f"{split}_{name}" in metrics:
                metrics[f"gap_{split}_{name}"] = (
                    metrics[f"{split}_{name}"] - metrics[f"train_{name}"]
                )
        metrics[f"gap_{split}_loss_se"] = metrics[f"{split}_loss_se"].hypot(
            metrics["train_loss_se"]
        )  # the sets are drawn apart
    return metrics
