"""Whole-clip sampling for bidirectional models."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..validation import check_conditioning, check_finite
from .denoiser import Denoiser
from .guidance import NO_GUIDANCE, Guidance
from .noise import draw, seeded_generator
from .walk import StepEvent, Walk


@dataclass
class StepProgress:
    step: int  # 1-based
    total: int
    x0: torch.Tensor  # current prediction of the clean latents (preview)


@torch.no_grad()
def sample_clip(
    model,
    context: torch.Tensor,
    *,
    latent_shape: tuple[int, int, int, int, int],
    walk: Walk,
    seed: int = 0,
    guidance: Guidance = NO_GUIDANCE,
    noise: Optional[torch.Tensor] = None,
    callback: Optional[Callable[[StepProgress], None]] = None,
) -> torch.Tensor:
    """Denoise a whole clip [B, C, T, H, W] = latent_shape along `walk` from seeded noise (or `noise`), under the
    prompt context [B, L, text_dim]. Returns the clean latents."""
    check_conditioning(context, "context")
    gen = seeded_generator(seed)
    device = model.device
    if noise is not None:
        check_finite(noise, "noise")
    x = draw(latent_shape, gen, device) if noise is None else noise.to(device, torch.float32)
    if guidance.active:
        guidance = Guidance(guidance.scale, guidance.negative.to(device))
    denoiser = Denoiser.for_clip(model, context.to(device), guidance)
    on_step = None
    if callback is not None:
        def on_step(e: StepEvent) -> None:
            callback(StepProgress(e.index + 1, e.steps, e.x0))
    return walk.run(denoiser, x, gen, on_step=on_step).sample
