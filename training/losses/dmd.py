"""Distribution Matching Distillation (the DMD baseline).

The student's sample x is noised to a random level, denoised by the frozen teacher (with CFG) and by
the critic; their disagreement g = (x̂_fake − x̂_real) / mean|x − x̂_real| is the (normalised) KL
gradient, applied to x through the surrogate L = ½‖x − sg(x − g)‖².

The teacher and the critic are `salt_core.sampling.Denoiser`s (a model under the prompt, its guidance and its
timestep convention), so CFG and the timestep rule live where every sampler gets them.
"""
from __future__ import annotations

from typing import Optional

import torch

from salt_core.sampling import Denoiser, draw

from .timesteps import NoiseLevels


def dmd_loss(
    x: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor, *, eps: float = 1e-8
) -> tuple[torch.Tensor, dict]:
    """The DMD generator loss on a student sample.

    x: [B, ...] student sample (carries the generator's graph); x0_real, x0_fake: [B, ...] teacher / critic
    clean estimates of the noised x (no grad needed). eps guards the normaliser.
    g = (x̂_fake − x̂_real) / mean|x − x̂_real| (mean per sample over all non-batch dims);
    L = ½·mean((x − sg(x − g))²), mean over *all* elements (Self Forcing's reduction), hence
    ∂L/∂x = g / numel(x). Computed in float64 so that the tiny difference x − (x − g) is exact.
    Returns (loss: 0-dim float32, stats: {"dmd_loss", "dmd_grad_abs", "dmd_normalizer"} floats).
    """
    if not (x.shape == x0_real.shape == x0_fake.shape):
        raise ValueError(
            f"dmd_loss: shapes differ: x {tuple(x.shape)}, x0_real {tuple(x0_real.shape)}, x0_fake {tuple(x0_fake.shape)}"
        )
    with torch.no_grad():
        dims = tuple(range(1, x.ndim))
        normalizer = (x.double() - x0_real.double()).abs().mean(dim=dims, keepdim=True).clamp_min(eps)
        g = torch.nan_to_num((x0_fake.double() - x0_real.double()) / normalizer)
        target = x.double() - g
    loss = 0.5 * (x.double() - target).square().mean()
    stats = {
        "dmd_loss": loss.item(),
        "dmd_grad_abs": g.abs().mean().item(),
        "dmd_normalizer": normalizer.mean().item(),
    }
    return loss.float(), stats


def dmd_term(
    x: torch.Tensor,
    real: Denoiser,
    fake: Denoiser,
    levels: NoiseLevels = NoiseLevels(),
    generator: Optional[torch.Generator] = None,
    noise: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, dict]:
    """The whole DMD generator step on a student sample x [B, C, T, H, W].

    Draws one noise level per sample from `levels`, noises x_t = (1−σ)·sg(x) + σ·ε (ε: `noise` or drawn from
    `generator`), then x̂_real from `real` (the frozen teacher under the prompt, with its CFG) and x̂_fake from
    `fake` (the critic, no CFG), both without gradient, and returns `dmd_loss` (stats gain "dmd_t_mean")."""
    t, sigma = levels.draw(x.shape[0], generator)
    sigma = sigma.to(x.device)
    eps = draw(x.shape, generator, x.device) if noise is None else noise.to(x.device, torch.float32)
    s = sigma.view(-1, *([1] * (x.ndim - 1)))
    with torch.no_grad():
        x_t = (1.0 - s) * x.detach().float() + s * eps
        x0_real = real.x0(x_t, sigma)
        x0_fake = fake.x0(x_t, sigma)
    loss, stats = dmd_loss(x, x0_real, x0_fake)
    stats["dmd_t_mean"] = t.mean().item()
    return loss, stats
