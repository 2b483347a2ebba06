"""The L2 term on the weights, ``l2·½‖W‖²`` (Liu et al.'s ``reg_l2``, TensorFlow's
``l2_loss``): one definition for the update every rule receives and for the loss whose
curvature is measured.

It covers the weight matrices (``weight*``, 2-D per model) of the ``"rnn"`` and ``"readout"``
groups, not biases and not a rule's own groups (synthesiser, feedback). A masked weight (the
rate RNN's diagonal) is zero, so it adds nothing there.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from bplambda.outputs import ParamGroups

REGULARISED_GROUPS = ("rnn", "readout")


def regularised_weights(params: ParamGroups) -> Iterator[tuple[str, str, Tensor]]:
    """``(group, name, weight)`` for every weight matrix under the L2 term."""
    for group in REGULARISED_GROUPS:
        for name, value in params.get(group, {}).items():
            if name.startswith("weight"):
                yield group, name, value


def l2_penalty(params: ParamGroups, l2: float) -> Tensor:
    """``l2·½‖W‖²`` summed over the regularised weights, per model: ``(*M,)``."""
    squares = [weight.pow(2).sum(dim=(-2, -1)) for _, _, weight in regularised_weights(params)]
    return 0.5 * l2 * torch.stack(squares).sum(0)


def with_l2_gradient(grads: ParamGroups, params: ParamGroups, l2: float) -> ParamGroups:
    """``grads`` with ``l2·W`` added to every regularised weight that has a gradient."""
    if l2 == 0:
        return grads
    out = {group: dict(tensors) for group, tensors in grads.items()}
    for group, name, weight in regularised_weights(params):
        if name in out.get(group, {}):
            out[group][name] = out[group][name] + l2 * weight.detach()
    return out
