"""Choosing the torch device and dtype from plain strings (notebook parameters)."""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; otherwise the named device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available here; "
            "pass device='cpu' or device='auto'"
        )
    try:
        return torch.device(device)
    except RuntimeError as error:
        raise ValueError(
            f"device={device!r} is not a torch device; pass 'auto', 'cpu' or 'cuda'"
        ) from error


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"`` or ``"float64"`` (or a torch dtype) → torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is unknown; choose one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def upload(
    tensor: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``tensor`` on ``device``, floats in ``dtype`` (if given). A host tensor goes to a GPU
    through pinned memory without blocking, so the host does not wait for the GPU's queue
    (a plain ``.to`` from pageable memory synchronises the stream); the pinned buffer is
    PyTorch's caching host allocator's, not reused before the copy is done."""
    device = torch.device(device)
    if tensor.device.type == "cpu" and device.type == "cuda":
        # an expanded view cannot be pinned; its copy on the device is dense anyway
        tensor = tensor.contiguous().pin_memory().to(device, non_blocking=True)
    if dtype is not None and tensor.is_floating_point():
        return tensor.to(device, dtype)
    return tensor.to(device)
