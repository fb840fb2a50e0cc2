"""Cheap chunk previews: one latent frame decoded on its own, optionally at a reduced size."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .layers import FeatureCache

if TYPE_CHECKING:
    from .model import WanVAE


@torch.no_grad()
def decode_preview(vae: "WanVAE", z: Tensor, max_side: Optional[int] = None) -> Tensor:
    """The last latent frame of raw latents z [B, z, t, h, w] as still images [B, 3, H, W] in [-1, 1].

    The frame is decoded alone (a fresh stream, no temporal context: 1 pixel frame instead of 4), so it
    costs about a quarter of a streamed latent frame and needs no tiles: its largest activation is one
    frame of 2*dim channels. max_side (pixels): when the frame is larger, the latent frame is first
    area-downsampled so that the longer output side is at most max_side, which divides the cost by the
    square of the reduction (an approximation of the downscaled full decode: see
    benchmarks/results/vae_tiled.md). None: full size, equal to `vae.decode(z[:, :, -1:])[:, :, 0]`.
    """
    z = vae.validate_latent(z, "decode_preview")[:, :, -1:]
    s = vae.config.spatial_factor
    if max_side is not None:
        if not isinstance(max_side, int) or isinstance(max_side, bool) or max_side < s:
            raise ValueError(f"decode_preview: max_side={max_side!r} must be an int >= {s} pixels (or None)")
        h, w = z.shape[-2:]
        shrink = max(h, w) * s / max_side
        if shrink > 1:
            size = (max(1, math.floor(h / shrink)), max(1, math.floor(w / shrink)))
            z = F.interpolate(z[:, :, 0], size=size, mode="area").unsqueeze(2)
    return vae.decoder(vae.conv2(z), FeatureCache())[:, :, 0].clamp_(-1.0, 1.0)
