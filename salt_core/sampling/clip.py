"""Whole-clip sampling for bidirectional models."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..schedules import StepGrid
from ..validation import check_conditioning, check_finite
from .transitions import check_transition, model_timestep, predict_x0, transition_step


@dataclass
class StepProgress:
    step: int  # 1-based
    total: int
    x0: torch.Tensor  # current prediction of the clean latents (preview)


def seeded_generator(seed: int) -> torch.Generator:
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return torch.Generator("cpu").manual_seed(seed)


def draw(shape, generator: torch.Generator, device, dtype=torch.float32) -> torch.Tensor:
    """Gaussian noise drawn on the CPU (reproducible across devices), then moved."""
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


def guided(v_cond: torch.Tensor, v_uncond: Optional[torch.Tensor], scale: float) -> torch.Tensor:
    """Classifier-free guidance on the flow prediction: v_u + s·(v_c − v_u)."""
    if v_uncond is None or scale == 1.0:
        return v_cond
    return v_uncond + scale * (v_cond - v_uncond)


@torch.no_grad()
def sample_clip(
    model,
    context: torch.Tensor,
    *,
    latent_shape: tuple[int, int, int, int, int],
    grid: StepGrid,
    transition: str = "ode",
    seed: int = 0,
    negative_context: Optional[torch.Tensor] = None,
    guidance: float = 1.0,
    integer_timesteps: bool = False,
    noise: Optional[torch.Tensor] = None,
    callback: Optional[Callable[[StepProgress], None]] = None,
) -> torch.Tensor:
    """Denoise a whole clip along `grid`. latent_shape: [B, C, T, H, W]. Returns clean latents."""
    check_transition(transition)
    check_conditioning(context, "context")
    if guidance != 1.0:
        check_conditioning(negative_context, "negative_context")
    gen = seeded_generator(seed)
    device = model.device
    if noise is not None:
        check_finite(noise, "noise")
    x = draw(latent_shape, gen, device) if noise is None else noise.to(device, torch.float32)
    B = latent_shape[0]
    ctx = context.to(device)
    neg = negative_context.to(device) if negative_context is not None and guidance != 1.0 else None
    sig = grid.with_terminal()
    for i in range(grid.steps):
        t = torch.full((B,), model_timestep(sig[i], integer_timesteps), device=device)
        v = model(x, t, ctx)
        v = guided(v, model(x, t, neg) if neg is not None else None, guidance)
        x0 = predict_x0(x, v, sig[i])
        fresh = draw(latent_shape, gen, device) if transition == "renoise" and sig[i + 1] > 0 else None
        x = transition_step(x, x0, sig[i], sig[i + 1], transition, fresh)
        if callback is not None:
            callback(StepProgress(i + 1, grid.steps, x0))
    return x
