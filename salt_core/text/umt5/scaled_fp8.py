"""ComfyUI's scaled fp8 storage: a Linear weight kept as float8 plus one float32 `scale_weight`; the real
weight is weight.float() * scale_weight. The one place umT5 loading dequantises."""
from __future__ import annotations

import torch

FP8_DTYPES = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))
_ROWS_PER_STEP = 4096   # bounds the float32 temporary to rows x columns at a time


def _broadcasts(small: torch.Size, big: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(small, big) == big
    except RuntimeError:
        return False


def dequantize_scaled_fp8(weight: torch.Tensor, scale_weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """weight: fp8 [out, in]; scale_weight: one value (or broadcastable to weight) -> weight * scale in dtype."""
    if scale_weight.numel() != 1 and not _broadcasts(scale_weight.shape, weight.shape):
        raise ValueError(f"scale_weight of shape {tuple(scale_weight.shape)} does not broadcast to the weight's "
                         f"{tuple(weight.shape)}")
    scale = scale_weight.float().reshape(()) if scale_weight.numel() == 1 else scale_weight.float()
    if weight.ndim == 0 or scale.ndim:
        return (weight.float() * scale).to(dtype)
    out = torch.empty(weight.shape, dtype=dtype, device=weight.device)
    for start in range(0, weight.shape[0], _ROWS_PER_STEP):
        rows = slice(start, start + _ROWS_PER_STEP)
        out[rows] = (weight[rows].float() * scale).to(dtype)
    return out
