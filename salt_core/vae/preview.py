"""Cheap chunk previews: latents decoded at a reduced size, without tiles.

A latent frame after the first encodes its 4 pixel frames given the frames before it, so decoding it on
its own (`decode_preview`) gives a picture with the right shapes but wrong colours and brightness
(10-17 dB PSNR against the streamed frame on world clips, benchmarks/results/vae_tiled.md). A faithful
preview needs the temporal context: `PreviewDecoder` streams the video at a reduced size with its own
small caches (22-30 dB against the downscaled full decode), at 1/k^2 of the cost and memory of the full
decode for a reduction by k.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .layers import FeatureCache
from .streaming import StreamingDecoder

if TYPE_CHECKING:
    from .model import WanVAE


def _check_side(vae: "WanVAE", max_side, who: str) -> None:
    s = vae.config.spatial_factor
    if max_side is not None and (not isinstance(max_side, int) or isinstance(max_side, bool) or max_side < s):
        raise ValueError(f"{who}: max_side={max_side!r} must be an int >= {s} pixels (or None)")


def preview_latent_hw(vae: "WanVAE", latent_hw: tuple[int, int], max_side: Optional[int]) -> tuple[int, int]:
    """Latent size whose decoded frame has its longer side <= max_side pixels (never enlarged)."""
    h, w = latent_hw
    shrink = 0 if max_side is None else max(h, w) * vae.config.spatial_factor / max_side
    if shrink <= 1:
        return h, w
    return max(1, math.floor(h / shrink)), max(1, math.floor(w / shrink))


def shrink_latents(z: Tensor, latent_hw: tuple[int, int]) -> Tensor:
    """Area-downsample every frame of z [B, C, t, h, w] to latent_hw -> [B, C, t, h', w']."""
    if tuple(z.shape[-2:]) == tuple(latent_hw):
        return z
    b, _, t = z.shape[:3]
    frames = F.interpolate(z.transpose(1, 2).flatten(0, 1), size=latent_hw, mode="area")  # [(B t), C, h', w']
    return frames.unflatten(0, (b, t)).transpose(1, 2)


class PreviewDecoder(StreamingDecoder):
    """Stream a video at a reduced size for previews: decode_next(z_chunk [B, z, t, h, w]) -> the chunk's
    pixel frames [B, 3, n, H', W'] with max(H', W') <= max_side (None: full size, the plain streaming
    decode). The latents are area-downsampled before decoding, so the decoder's work and caches shrink
    with the square of the reduction; the colours follow the stream because the caches do."""

    def __init__(self, vae: "WanVAE", max_side: Optional[int] = 256) -> None:
        _check_side(vae, max_side, "PreviewDecoder")
        self.max_side = max_side
        super().__init__(vae, frames_per_step=1)

    def _decode(self, z: Tensor) -> Tensor:
        return super()._decode(shrink_latents(z, preview_latent_hw(self.vae, z.shape[-2:], self.max_side)))


class _LoneFrameCache(FeatureCache):
    """The state of a one-frame stream: no frame follows, so the past frames are not kept (at 1280x720 the
    full-size decoder would otherwise hold 4 GB of them until the call returns)."""

    def set(self, layer, frames: Tensor) -> None:
        pass


@torch.no_grad()
def decode_preview(vae: "WanVAE", z: Tensor, max_side: Optional[int] = None) -> Tensor:
    """The last latent frame of raw latents z [B, z, t, h, w] decoded on its own, as images [B, 3, H, W] in
    [-1, 1] (longer side <= max_side pixels when given). No state and a quarter of a streamed latent
    frame's work, but without temporal context: exact for the first latent frame of a video only (see the
    module's docstring; `PreviewDecoder` follows the stream). None: equal to `vae.decode(z[:, :, -1:])[:, :, 0]`."""
    _check_side(vae, max_side, "decode_preview")
    z = vae.validate_latent(z, "decode_preview")[:, :, -1:]
    z = shrink_latents(z, preview_latent_hw(vae, z.shape[-2:], max_side))
    return vae.decoder(vae.conv2(z), _LoneFrameCache())[:, :, 0].clamp_(-1.0, 1.0)
