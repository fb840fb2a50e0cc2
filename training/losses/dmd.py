"""Distribution Matching Distillation (DESIGN §6, DMD baseline).

The student's sample x is noised to a random level, denoised by the frozen teacher (with CFG) and by
the critic; their disagreement g = (x̂_fake − x̂_real) / mean|x − x̂_real| is the (normalised) KL
gradient, applied to x through the surrogate L = ½‖x − sg(x − g)‖².

Models are called as `model(x_t, t, ctx) -> v` (flow prediction v = ε − x0), so any callable with that
signature works (a WanDiT, a stub in tests).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from salt_core.sampling.clip import draw, guided
from salt_core.sampling.transitions import predict_x0

from .timesteps import sample_timesteps

Model = Callable[..., torch.Tensor]


def _per_sample(sigma, x: torch.Tensor) -> torch.Tensor:
    """σ: float, [B] or broadcastable -> a tensor broadcastable to x: [B, 1, 1, 1, 1]."""
    s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
    if s.ndim == 1:
        s = s.view(-1, *([1] * (x.ndim - 1)))
    return s


def model_x0(
    model: Model,
    x_t: torch.Tensor,
    t: torch.Tensor,
    sigma,
    ctx: torch.Tensor,
    neg_ctx: Optional[torch.Tensor] = None,
    guidance: float = 1.0,
) -> torch.Tensor:
    """x̂0 = x_t − σ·v of a flow model, with classifier-free guidance when guidance ≠ 1.

    x_t: [B, C, T, H, W]; t: [B] model timesteps (1000σ); sigma: [B] or float; ctx/neg_ctx: [B, L, text_dim];
    guidance w: v = v_neg + w·(v_c − v_neg), i.e. x̂0 = x̂_c + (w−1)(x̂_c − x̂_neg) (Self Forcing's 3.0 is w = 4).
    Runs under the caller's grad mode.
    """
    v = model(x_t, t, ctx)
    if guidance != 1.0:
        if neg_ctx is None:
            raise ValueError(f"guidance={guidance} needs a negative prompt embedding (neg_ctx)")
        v = guided(v, model(x_t, t, neg_ctx), guidance)
    return predict_x0(x_t, v, _per_sample(sigma, x_t))


@torch.no_grad()
def teacher_x0(
    teacher: Model,
    x_t: torch.Tensor,
    t: torch.Tensor,
    sigma,
    ctx: torch.Tensor,
    neg_ctx: Optional[torch.Tensor],
    guidance: float,
) -> torch.Tensor:
    """The real score's clean estimate x̂_real with CFG scale `guidance` (w; 1 = no CFG). Frozen: no grad.

    Arguments as `model_x0`. CFG is applied to the flow prediction, which at fixed x_t and σ is the same
    as x̂_c + (w−1)(x̂_c − x̂_neg) on the clean estimates."""
    return model_x0(teacher, x_t, t, sigma, ctx, neg_ctx, guidance)


def sample_dmd_timestep(
    batch: int,
    shift: float = 5.0,
    t_min: float = 20.0,
    t_max: float = 980.0,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise level of the DMD step: uniform on the 1000-point grid, warped by `shift`, clamped to [t_min, t_max].

    batch: B (one level per sample, shared by every frame); shift: the flow shift (5 for Wan/Self Forcing);
    t_min/t_max: clamp on the shifted timestep; generator: CPU generator for reproducibility.
    Returns (t [B], sigma [B]) float32 on the CPU."""
    return sample_timesteps(batch, shift=shift, t_min=t_min, t_max=t_max, generator=generator)


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
    teacher: Model,
    critic: Model,
    ctx: torch.Tensor,
    neg_ctx: Optional[torch.Tensor] = None,
    *,
    guidance: float = 4.0,
    shift: float = 5.0,
    t_min: float = 20.0,
    t_max: float = 980.0,
    generator: Optional[torch.Generator] = None,
    noise: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, dict]:
    """The whole DMD generator step on a student sample x [B, C, T, H, W].

    Draws (t, σ) with `sample_dmd_timestep`, noises x_t = (1−σ)·sg(x) + σ·ε (ε: `noise` or drawn from
    `generator`), then x̂_real = teacher_x0 (CFG `guidance` with `neg_ctx`) and x̂_fake = critic x̂0 (no
    CFG, no grad) and returns `dmd_loss` (stats gain "dmd_t_mean")."""
    B = x.shape[0]
    t, sigma = sample_dmd_timestep(B, shift, t_min, t_max, generator)
    t, sigma = t.to(x.device), sigma.to(x.device)
    eps = draw(x.shape, generator, x.device) if noise is None else noise.to(x.device, torch.float32)
    s = _per_sample(sigma, x)
    with torch.no_grad():
        x_t = (1.0 - s) * x.detach().float() + s * eps
        x0_real = teacher_x0(teacher, x_t, t, sigma, ctx, neg_ctx, guidance)
        x0_fake = model_x0(critic, x_t, t, sigma, ctx)
    loss, stats = dmd_loss(x, x0_real, x0_fake)
    stats["dmd_t_mean"] = t.mean().item()
    return loss, stats
