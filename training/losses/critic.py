"""Flow-matching denoising loss: the critic (fake score) on student samples, and teacher pre-training.

x_σ = (1−σ)·x0 + σ·ε, target v = ε − x0, loss = mean((model(x_σ, 1000σ) − v)²).

For an AR (block-causal) teacher the same loss runs in one pass with a frame mask:
* diffusion forcing — one sequence, block-causal mask of the cache policy, a noise level per chunk;
* teacher forcing — the clean clip (at `context_t`) followed by its noisy copy, positions repeated, so
  each noisy chunk attends to the *clean* past chunks the cache policy keeps plus itself. This equals
  chunk-by-chunk inference whose cache holds the clean chunks (see `teacher_forcing_inputs`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from salt_core.kv_cache import CachePolicy
from salt_core.sampling import draw
from salt_core.schedules import timestep_convention

from .timesteps import NoiseLevels

Model = Callable[..., torch.Tensor]
AR_MODES = ("teacher_forcing", "diffusion_forcing")


def teacher_forcing_inputs(
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    *,
    chunk_frames: int,
    policy: CachePolicy = CachePolicy(),
    context_t: Optional[float] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Single-pass inputs equivalent to cached AR generation with clean context.

    x0, x_t: [B, C, T, H, W] clean and noisy clip; t: [B, T] noisy-frame timesteps; chunk_frames: frames per
    chunk; policy: which past frames a chunk sees (absolute positions); context_t: timestep of the clean
    half (default policy.context_t, the cache's context pass).
    Returns (x_in [B, C, 2T, H, W], t_in [B, 2T], frame_mask [2T, 2T] bool, frame_positions [2T]).
    The noisy half is the second half of the model output.
    """
    T = x0.shape[2]
    ctx_t = policy.context_t if context_t is None else context_t
    causal = policy.frame_mask(T, chunk_frames)  # clean rows: exactly the context pass
    chunk = torch.arange(T) // chunk_frames
    same = chunk[:, None] == chunk[None, :]
    mask = torch.zeros(2 * T, 2 * T, dtype=torch.bool)
    mask[:T, :T] = causal
    mask[T:, :T] = causal & ~same  # noisy chunk -> kept clean past
    mask[T:, T:] = same  # noisy chunk -> itself
    t_in = torch.cat([torch.full_like(t, float(ctx_t)), t], dim=1)
    return torch.cat([x0, x_t], dim=2), t_in, mask, list(range(T)) * 2


@dataclass(frozen=True)
class CausalTraining:
    """A block-causal (AR) teacher trained in one pass: chunks of `chunk_frames`, clean context ("teacher_forcing")
    or noisy context ("diffusion_forcing"), the visibility of cache `policy`, one noise level per chunk or per
    sample (`per_chunk_sigma`)."""

    chunk_frames: int
    ar_mode: str = "teacher_forcing"
    policy: CachePolicy = CachePolicy()
    per_chunk_sigma: bool = True

    def __post_init__(self) -> None:
        if self.ar_mode not in AR_MODES:
            raise ValueError(f"ar_mode {self.ar_mode!r} is unknown; allowed: {list(AR_MODES)}")


def flow_denoising_loss(
    model: Model,
    x0: torch.Tensor,
    ctx: torch.Tensor,
    *,
    levels: NoiseLevels = NoiseLevels(),
    causal: Optional[CausalTraining] = None,
    generator: Optional[torch.Generator] = None,
    sigma: Optional[torch.Tensor] = None,
    noise: Optional[torch.Tensor] = None,
    frame_mask: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, dict]:
    """Flow-matching MSE of `model` on clean latents x0 [B, C, T, H, W] (detached: never trains the producer).

    model(x, t, ctx, frame_mask=, frame_positions=) -> v, fed timesteps by its own convention; ctx: [B, L, text_dim].
    sigma: noise levels, [B] (or [B, chunks] for a causal model); default drawn from `levels` (the critic uses the
      DMD settings). noise: ε like x0 (default drawn from `generator`).
    causal: None = bidirectional (or a caller's `frame_mask` [T, T]); else AR teacher training (see CausalTraining).
    Returns (loss: mean over all elements, stats {"flow_loss", "flow_t_mean"}).
    """
    x0 = x0.detach().float()
    B, T = x0.shape[0], x0.shape[2]
    chunks = 1
    if causal is not None:
        chunk_frames = causal.chunk_frames
        if T % chunk_frames:
            raise ValueError(f"{T} latent frames are not a multiple of chunk_frames={chunk_frames}")
        if frame_mask is not None:
            raise ValueError("give either a causal setup (AR masks built here) or frame_mask, not both")
        chunks = T // chunk_frames if causal.per_chunk_sigma else 1
    if sigma is None:
        _, sigma = levels.draw((B, chunks), generator)
    sigma = torch.as_tensor(sigma, dtype=torch.float32).to(x0.device)
    sigma = sigma.view(B, -1)
    if causal is not None:
        sig_f = sigma.repeat_interleave(T // sigma.shape[1], dim=1)  # [B, T]
    else:
        if sigma.shape[1] != 1:
            raise ValueError(f"bidirectional training takes one noise level per sample, got sigma {tuple(sigma.shape)}")
        sig_f = sigma.expand(B, T)
    eps = draw(x0.shape, generator, x0.device) if noise is None else noise.to(x0.device, torch.float32)
    s = sig_f[:, None, :, None, None]
    x_t = (1.0 - s) * x0 + s * eps
    target = eps - x0
    t = timestep_convention(model).batch(sig_f, B, x0.device)  # [B, T]
    if causal is None:
        t_in = t[:, 0] if frame_mask is None else t
        v = model(x_t, t_in, ctx) if frame_mask is None else model(x_t, t_in, ctx, frame_mask=frame_mask)
    elif causal.ar_mode == "diffusion_forcing":
        v = model(x_t, t, ctx, frame_mask=causal.policy.frame_mask(T, chunk_frames))
    else:
        x_in, t_in, mask, pos = teacher_forcing_inputs(x0, x_t, t, chunk_frames=chunk_frames, policy=causal.policy)
        v = model(x_in, t_in, ctx, frame_mask=mask, frame_positions=pos)[:, :, T:]
    loss = (v.float() - target).square().mean()
    return loss, {"flow_loss": loss.item(), "flow_t_mean": t.mean().item()}
