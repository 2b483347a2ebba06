"""Many seeds as one batched model: every parameter gets a leading seed dimension ``K``.

Independent models stacked this way need no Python loop over seeds: a rule's gradient of the
*summed* per-model losses is, block by block, each model's own gradient, and Adam is
element-wise, so one optimiser over stacked tensors is K independent optimisers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from bplambda.cells import Cell
from bplambda.outputs import ParamGroups
from bplambda.readout import init_readout

if TYPE_CHECKING:
    from bplambda.rules import Rule


def init_network(
    cell: Cell,
    output_size: int,
    seed: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    rule: Rule | None = None,
) -> ParamGroups:
    """One model's parameters from one seed: ``"rnn"``, ``"readout"`` and the groups ``rule``
    needs (``rule.init_groups``: a synthesiser, a feedback matrix), drawn in that order."""
    generator = torch.Generator().manual_seed(seed)
    groups = {
        "rnn": cell.init_params(generator, dtype),
        "readout": init_readout(cell.hidden_size, output_size, generator, dtype, cell.readout_init),
    }
    if rule is not None:
        groups.update(rule.init_groups(cell, output_size, generator, dtype))
    return {g: {k: v.to(device) for k, v in p.items()} for g, p in groups.items()}


def stack_networks(networks: Sequence[ParamGroups]) -> ParamGroups:
    """Stack models with identical shapes along a new leading dimension ``K``."""
    first = networks[0]
    return {
        group: {name: torch.stack([n[group][name] for n in networks]) for name in tensors}
        for group, tensors in first.items()
    }


def init_stacked_network(
    cell: Cell,
    output_size: int,
    seeds: Sequence[int],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    rule: Rule | None = None,
) -> ParamGroups:
    """``K = len(seeds)`` models, model ``k`` initialised exactly as ``init_network(seed_k)``."""
    if len(seeds) == 0:
        raise ValueError("seeds is empty; pass at least one seed, e.g. seeds=[0]")
    return stack_networks([init_network(cell, output_size, s, dtype, device, rule) for s in seeds])
