"""Low- and high-quality KV caches for cache-conditioned feature alignment.

C_low holds the previous chunks as a low-step rollout of the student produced them, C_high the same chunks (same
initial noise, same prompt, same seed for the renoise draws) from a high-step rollout. The student then runs the
current chunk's input x_t against both; `feature_alignment_loss` pulls the C_low features toward sg(C_high's).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from salt_core.sampling import CausalSetup, ChunkDriver, Walk, seeded_generator

from ..losses.feature_align import feature_alignment_loss
from .autoregressive import plan_chunks, rollout_ar
from .common import draw_exit_step


@dataclass(frozen=True)
class CacheAlignment:
    """What feature alignment compares: caches from the `low` and `high` walks; block outputs `layers` and/or x̂0
    (`use_x0`, weighted `x0_weight`); `normalize` as `feature_alignment_loss`."""

    low: Walk
    high: Walk
    layers: tuple[int, ...] = ()
    use_x0: bool = True
    normalize: str = "layernorm"
    x0_weight: float = 1.0


@dataclass
class CachePair:
    low: ChunkDriver  # previous chunks from the low-step rollout, all committed
    high: ChunkDriver  # the same chunks from the high-step rollout
    x_low: torch.Tensor  # [B, C, T_prev, H, W] the previous chunks as the low rollout made them
    x_high: torch.Tensor


@torch.no_grad()
def build_cache(driver: ChunkDriver, noise: torch.Tensor, walk: Walk, seed: int = 0) -> torch.Tensor:
    """Commit every chunk of `noise` [B, C, T, H, W] to `driver`'s cache as the student generates it along `walk`,
    every step taken (no early exit), renoise draws from a generator seeded with `seed`. Returns the samples."""
    n = driver.layout.num_chunks
    chunks = plan_chunks([walk.grid] * n, walk.transition, exit_steps=[walk.steps - 1] * n, grad_chunks=())
    return rollout_ar(driver, noise, chunks, seeded_generator(seed), commit_last=True).x


def cache_pair(setup: CausalSetup, noise_prev: torch.Tensor, low: Walk, high: Walk, seed: int = 0) -> CachePair:
    """C_low and C_high from the same previous-chunk noise [B, C, T_prev, H, W], prompt and seed."""
    d_low, d_high = setup.driver(noise_prev), setup.driver(noise_prev)
    x_low = build_cache(d_low, noise_prev, low, seed)
    x_high = build_cache(d_high, noise_prev, high, seed)
    return CachePair(d_low, d_high, x_low, x_high)


def cache_features(pair: CachePair, x_t: torch.Tensor, sigma: float, frames: Sequence[int],
                   layers: Sequence[int] = ()) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    """The student on the chunk input x_t [B, C, F, H, W] at level sigma against C_low (caller's grad mode) and
    C_high (no grad) -> (feats_low, feats_high, x0_low, x0_high); feats are {block: [B, L, dim]} for `layers`."""
    x0_low, feats_low = pair.low.denoiser(frames).x0_and_features(x_t, sigma, layers)
    with torch.no_grad():
        x0_high, feats_high = pair.high.denoiser(frames).x0_and_features(x_t, sigma, layers)
    return feats_low, feats_high, x0_low, x0_high


def cache_alignment_term(
    setup: CausalSetup,
    noise: torch.Tensor,
    walk: Walk,
    alignment: CacheAlignment,
    generator: Optional[torch.Generator] = None,
    *,
    step_index: Optional[int] = None,
    pair: Optional[CachePair] = None,
) -> tuple[torch.Tensor, dict]:
    """The whole cache-conditioned feature-alignment step.

    noise: [B, C, T, H, W]; its last chunk is the current chunk, the chunks before it build the caches
    (`cache_pair` with the alignment's low / high walks and a seed drawn from `generator`; or pass `pair`). The
    current chunk's input is the state at step `step_index` (default drawn from `generator`) of the student's own
    walk along `walk` under C_low.
    Returns (loss, stats with "fa_step" and "fa_cache_gap": mean squared gap of the two caches' samples)."""
    F = setup.chunk_frames
    T = noise.shape[2]
    if T % F or T < 2 * F:
        raise ValueError(f"cache alignment needs >= 2 whole chunks of {F} frames, got {T} frames")
    prev, cur = noise[:, :, : T - F], noise[:, :, T - F:]
    if pair is None:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        pair = cache_pair(setup, prev, alignment.low, alignment.high, seed)
    frames = list(range(T - F, T))
    j = draw_exit_step(walk.steps, generator) if step_index is None else int(step_index)
    if not 0 <= j < walk.steps:
        raise ValueError(f"step_index {j} is outside the grid's steps 0..{walk.steps - 1}")
    with torch.no_grad():
        x_t = walk.run(pair.low.denoiser(frames), cur.float(), generator, exit_step=j, record=(j,)).states[j]
    feats_low, feats_high, x0_low, x0_high = cache_features(pair, x_t, walk.grid.sigmas[j], frames, alignment.layers)
    loss, stats = feature_alignment_loss(feats_low, feats_high, x0_low, x0_high, layers=alignment.layers,
                                         use_x0=alignment.use_x0, normalize=alignment.normalize,
                                         x0_weight=alignment.x0_weight)
    stats["fa_step"] = j
    stats["fa_cache_gap"] = (pair.x_low - pair.x_high).square().mean().item()
    return loss, stats
