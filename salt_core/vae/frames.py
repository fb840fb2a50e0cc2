"""Latents -> video frames: the one path from a model's latents to pictures (pipeline, decode node, chunk preview,
benchmarks).

`FrameDecoder` streams latents chunk by chunk through the VAE's causal decoder (bounded memory), un-normalising
model-space latents with the latent format the model works in — by default the VAE's own — after checking that
the two formats agree. Frames come out as [n, H, W, 3] floats in 0..1 (ComfyUI's IMAGE), batch folded into n.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..video_io import frames_from_model_space
from .latent_format import LatentFormat


def check_formats(model_format: Optional[LatentFormat], vae, who: str = "model") -> LatentFormat:
    """The format to un-normalise with: the model's when it records one (it must match the VAE's), else the VAE's."""
    vae_format = vae.config.latent_format
    if model_format is None:
        return vae_format
    if not model_format.matches(vae_format):
        raise ValueError(
            f"the VAE's latent format ({vae_format.describe()}) differs from the one the {who} works in "
            f"({model_format.describe()}): decode with the VAE the {who} was trained with")
    return model_format


class FrameDecoder:
    """Stream one video's latents through `vae`: `from_model_space(z)` / `from_raw(z)` per chunk -> frames."""

    def __init__(self, vae, model_format: Optional[LatentFormat] = None, *, frames_per_step: Optional[int] = None,
                 tiling=None, preview_side: Optional[int] = None, who: str = "model"):
        """tiling: a `DecodeTiling` (a decode tiled in space); preview_side: stream a preview whose frames have
        their longer side <= this many pixels instead (`PreviewDecoder`: 1/k^2 of the work for a reduction by k)."""
        self.vae = vae
        self.format = check_formats(model_format, vae, who)
        if preview_side is not None:
            from .preview import PreviewDecoder

            self.decoder = PreviewDecoder(vae, max_side=preview_side)
        else:
            self.decoder = vae.streaming_decoder(frames_per_step=frames_per_step, tiling=tiling)

    def plan_ahead(self, batch: int, chunk_frames: int, latent_hw: tuple[int, int]) -> Optional[str]:
        """Check a tiled decode's tiles and budget for chunks of this geometry before any compute; returns a
        line saying how it tiles (None when untiled)."""
        if not hasattr(self.decoder, "plan_ahead"):
            return None
        plan = self.decoder.plan_ahead(batch, chunk_frames, latent_hw)
        s = self.vae.config.spatial_factor
        if plan.count == 1:
            return "VAE decode untiled (the whole frame fits as one tile)"
        return (f"VAE decode in {plan.count} tiles of {plan.tile[1] * s}x{plan.tile[0] * s} px (overlap "
                f"{plan.overlap[1] * s}x{plan.overlap[0] * s} px)")

    @property
    def _place(self) -> tuple[torch.device, torch.dtype]:
        p = next(self.vae.parameters())
        return p.device, p.dtype

    @torch.no_grad()
    def from_raw(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents [B, C, t, h, w] (ComfyUI LATENT) -> frames [B*n, H, W, 3]."""
        device, dtype = self._place
        return frames_from_model_space(self.decoder.decode_next(z.to(device=device, dtype=dtype)).float())

    @torch.no_grad()
    def from_model_space(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised model latents [B, C, t, h, w] -> frames [B*n, H, W, 3]."""
        device, _ = self._place
        return self.from_raw(self.format.to_raw(z.to(device)))


def decode_to_frames(vae, z: torch.Tensor, model_format: Optional[LatentFormat] = None, **kwargs) -> torch.Tensor:
    """A whole clip of model-space latents [B, C, T, h, w] -> frames [B*T', H, W, 3] in 0..1."""
    return FrameDecoder(vae, model_format, **kwargs).from_model_space(z)
