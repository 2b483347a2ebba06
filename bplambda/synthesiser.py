"""The affine synthesiser ``g(s; θ) = W s + b`` (zero-initialised, as the official code).

``g(s_t)`` predicts the (discounted) future gradient ``∂L_{>t}/∂s_t``, a row vector of the
same size as the state. θ = {weight: ``(*M, S, S)``, bias: ``(*M, S)``}.
"""

from __future__ import annotations

import torch
from torch import Tensor

from bplambda.cells import Params, fold_into_batch, folded_matmul


def init_synthesiser(
    state_size: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> Params:
    """Zero weight and bias: an untrained synthesiser predicts no future gradient."""
    return {
        "weight": torch.zeros(state_size, state_size, dtype=dtype, device=device),
        "bias": torch.zeros(state_size, dtype=dtype, device=device),
    }


def synthesise(params: Params, s: Tensor) -> Tensor:
    """``g(s) = s Wᵀ + b``: ``(..., B, S)`` for ``s: (..., B, S)``."""
    return folded_matmul(s, params["weight"]) + params["bias"].unsqueeze(-2)


def regression_gradient(
    params: Params, states: Tensor, targets: Tensor, weights: Tensor | None = None
) -> Params:
    """Gradient of ``Σ_{extra dims} mean_b w·½‖target − g(s)‖²`` with respect to θ.

    states, targets: ``(*E, *M, B, S)`` (targets are constants, e.g. λ-returns); ``weights``
    ``(*E, *M, B)``, e.g. 0 on the padding of a front-padded stack (default: all 1). The result
    has θ's shapes; this is the negative of the paper's ``Σ_t δ e`` synthesiser update.
    """
    model_ndim = params["bias"].dim() - 1
    batch = states.shape[-2]
    error = synthesise(params, states) - targets
    if weights is not None:
        error = error * weights.unsqueeze(-1)
    error = fold_into_batch(error, model_ndim)
    inputs = fold_into_batch(states, model_ndim)
    return {"weight": error.mT @ inputs / batch, "bias": error.sum(-2) / batch}
