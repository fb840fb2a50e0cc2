"""Morphology on a torus: the world wraps around its edges, so masks are padded circularly before
kornia's erosion / dilation (an object split across an edge stays one object)."""
from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F


def _wrapped(op, x: torch.Tensor, size: int) -> torch.Tensor:
    """x: [N, C, H, W]; square all-ones structuring element of odd `size`."""
    r = size // 2
    padded = F.pad(x, (r, r, r, r), mode="circular")
    out = op(padded, torch.ones(size, size, dtype=x.dtype, device=x.device))
    return out[..., r:-r, r:-r]


def erode(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    return _wrapped(kornia.morphology.erosion, x, size)


def dilate(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    return _wrapped(kornia.morphology.dilation, x, size)
