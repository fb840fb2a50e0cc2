"""A denoiser: a flow model bound to its conditioning (a prompt, or a KV cache and a chunk's frames), its
guidance and its timestep convention, answering v(x, σ) and x̂0(x, σ) = x − σ·v for the flow target v = ε − x0.

Every sampler, training rollout, loss and metric asks a Denoiser; none of them calls a model directly.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

from ..schedules import TimestepConvention, timestep_convention
from .guidance import NO_GUIDANCE, Guidance

Forward = Callable[..., torch.Tensor]  # (x, t, **kw) -> v, or (v, features) when return_features is given
Sigma = Union[float, torch.Tensor]  # one level, or per-sample levels [B]


def _per_sample(sigma: Sigma, x: torch.Tensor):
    """σ as a float or as [B] broadcast against x [B, ...]."""
    if isinstance(sigma, torch.Tensor):
        return sigma.to(device=x.device, dtype=torch.float32).view(-1, *([1] * (x.ndim - 1)))
    return sigma


def predict_x0(x_t: torch.Tensor, v: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """x̂0 = x_t − σ·v. sigma: a float or per-sample levels [B]."""
    return x_t - _per_sample(sigma, x_t) * v


class Denoiser:
    """v and x̂0 of one conditioned flow model. `forward(x, t)` is the conditional prediction, `negative(x, t)`
    the one under the negative prompt (used when `guidance` is active)."""

    def __init__(self, forward: Forward, convention: TimestepConvention, *, negative: Optional[Forward] = None,
                 guidance: Guidance = NO_GUIDANCE):
        if guidance.active and negative is None:
            raise ValueError(f"guidance scale {guidance.scale} needs a prediction under the negative prompt")
        self.forward, self.negative, self.guidance, self.convention = forward, negative, guidance, convention

    # ---- construction -----------------------------------------------------------------------------
    @classmethod
    def for_clip(cls, model, context: torch.Tensor, guidance: Guidance = NO_GUIDANCE) -> "Denoiser":
        """A bidirectional model `model(x, t, context) -> v` under the prompt context [B, L, text_dim]."""
        neg = guidance.negative if guidance.active else None
        return cls(lambda x, t, **kw: model(x, t, context, **kw), timestep_convention(model),
                   negative=(lambda x, t: model(x, t, neg)) if neg is not None else None, guidance=guidance)

    @classmethod
    def for_chunk(cls, model, cache, frames: Sequence[int], *, negative_cache=None,
                  guidance: Guidance = NO_GUIDANCE) -> "Denoiser":
        """A causal WanDiT on the chunk of latent `frames` against `cache` (which holds the prompt); with guidance,
        `negative_cache` holds the negative prompt. Never commits: context passes are the chunk driver's."""
        frames = list(frames)
        neg = None
        if guidance.active:
            neg = lambda x, t: model.forward_chunk(x, t, negative_cache, frames)  # noqa: E731
        return cls(lambda x, t, **kw: model.forward_chunk(x, t, cache, frames, **kw), timestep_convention(model),
                   negative=neg, guidance=guidance)

    # ---- predictions --------------------------------------------------------------------------------
    def timesteps(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        return self.convention.batch(sigma, x.shape[0], x.device)

    def velocity(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """v(x, σ) [B, C, T, H, W], guided; runs under the caller's grad mode."""
        t = self.timesteps(x, sigma)
        v = self.forward(x, t)
        return self.guidance.combine(v, self.negative(x, t) if self.guidance.active else None)

    def x0(self, x: torch.Tensor, sigma: Sigma) -> torch.Tensor:
        """x̂0(x, σ) = x − σ·v(x, σ)."""
        return predict_x0(x, self.velocity(x, sigma), sigma)

    def x0_and_features(self, x: torch.Tensor, sigma: Sigma, blocks: Sequence[int]) -> tuple[torch.Tensor, dict]:
        """x̂0 and the outputs of transformer `blocks` ({index: [B, L, dim]}), without guidance."""
        if self.guidance.active:
            raise ValueError("features are taken from the conditional prediction: use a denoiser without guidance")
        blocks = tuple(int(i) for i in blocks)
        if not blocks:
            return self.x0(x, sigma), {}
        v, feats = self.forward(x, self.timesteps(x, sigma), return_features=blocks)
        return predict_x0(x, v, sigma), feats
