"""Held-out evaluation: loss and error of stacked models on a whole data set, forward only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from bplambda.cells import Cell
from bplambda.outputs import Grads
from bplambda.readout import readout


@torch.no_grad()
def classification_metrics(
    cell: Cell, params: Grads, images: Tensor, labels: Tensor, chunk: int = 2000
) -> dict[str, Tensor]:
    """Cross-entropy and error rate of the last-step readout, per model: ``(*M,)`` each.

    images: ``(N, T, I)`` shared by all models (rows are time steps); evaluated ``chunk``
    images at a time, keeping only the current state, so memory stays ``O(M·chunk·S)``.
    """
    model_shape = params["readout"]["bias"].shape[:-1]
    device = params["readout"]["bias"].device
    dtype = params["readout"]["bias"].dtype
    total_loss = torch.zeros(model_shape, device=device, dtype=dtype)
    wrong = torch.zeros(model_shape, device=device, dtype=dtype)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(device, dtype).movedim(1, 0)  # (T, n, I)
        y = labels[start : start + chunk].to(device)
        x = x.reshape(x.shape[0], *([1] * len(model_shape)), *x.shape[1:])
        x = x.expand(x.shape[0], *model_shape, *x.shape[-2:])
        s = x.new_zeros(*x.shape[1:-1], cell.state_size)
        for x_t in x:
            s = cell.step(params["rnn"], x_t, s)
        logits = readout(params["readout"], cell.hidden(s))  # (*M, n, O)
        flat = logits.reshape(-1, logits.shape[-1])
        targets = y.expand(*model_shape, len(y)).reshape(-1)
        losses = F.cross_entropy(flat, targets, reduction="none").reshape(*model_shape, len(y))
        total_loss += losses.sum(-1)
        wrong += (logits.argmax(-1) != y).to(dtype).sum(-1)
    return {"loss": total_loss / len(images), "error": wrong / len(images)}
