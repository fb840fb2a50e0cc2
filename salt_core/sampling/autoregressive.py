"""Chunk-by-chunk sampling of causal models against a KV cache, with prompt switches.

Each chunk of `chunk_frames` latent frames is denoised along the step grid while attending to the
cache; its clean result is then written to the cache by one context pass at `policy.context_t`.
Streaming: `stream_ar` yields finished chunks, so a long video never needs to be held at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence, Union

import torch

from ..kv_cache import CachePolicy, KVCache
from ..schedules import StepGrid
from ..validation import check_chunking, check_conditioning
from .clip import draw, guided, seeded_generator
from .transitions import check_transition, model_timestep, predict_x0, transition_step


@dataclass
class PromptSegment:
    """From latent frame `start_frame` on, generate under `context` ([B, L, text_dim])."""

    start_frame: int
    context: torch.Tensor


@dataclass
class ChunkResult:
    index: int  # 0-based chunk index
    total: int
    frame_start: int  # first latent frame of the chunk
    latents: torch.Tensor  # [B, C, F, H, W] clean latents of this chunk


class StopSampling(Exception):
    """Raised by a callback to end sampling cleanly after the current chunk."""


def _schedule(prompts, latent_frames: int, chunk_frames: int) -> list[PromptSegment]:
    if isinstance(prompts, torch.Tensor):
        prompts = [PromptSegment(0, prompts)]
    segs = sorted(prompts, key=lambda s: s.start_frame)
    if not segs:
        raise ValueError("the prompt schedule is empty: give at least one prompt")
    if segs[0].start_frame != 0:
        raise ValueError(f"the prompt schedule must start at frame 0, its first entry starts at {segs[0].start_frame}")
    for s in segs:
        check_conditioning(s.context, f"prompt at frame {s.start_frame}")
        if s.start_frame % chunk_frames or not 0 <= s.start_frame < latent_frames:
            raise ValueError(
                f"prompt switch at latent frame {s.start_frame} must be a chunk start (multiple of "
                f"chunk_frames={chunk_frames}) below {latent_frames}"
            )
    starts = [s.start_frame for s in segs]
    if len(set(starts)) != len(starts):
        raise ValueError(f"the prompt schedule has two prompts at the same frame: {starts}")
    return segs


@torch.no_grad()
def recache_prompt(model, cache: KVCache, context: torch.Tensor, recache: bool = True) -> None:
    """Switch the prompt: new cross-attention K/V, and (re-cache) the retained frames' K/V recomputed under it."""
    retained = cache.retained() if recache else []
    model.set_prompt(cache, context)
    if not recache:
        return
    if any(lat is None for _, lat in retained):
        raise ValueError("cannot re-cache: the cache holds frames committed without their latents")
    cache.reset_frames()
    F = cache.max_chunk_frames
    for i in range(0, len(retained), F):
        group = retained[i : i + F]
        x = torch.cat([lat for _, lat in group], dim=2)
        t = torch.full((x.shape[0],), cache.policy.context_t, device=x.device)
        model.forward_chunk(x, t, cache, [f for f, _ in group], commit=True)


def stream_ar(
    model,
    prompts: Union[torch.Tensor, Sequence[PromptSegment]],
    *,
    latent_frames: int,
    latent_hw: tuple[int, int],
    chunk_frames: int,
    grid: StepGrid,
    policy: CachePolicy = CachePolicy(),
    transition: str = "renoise",
    seed: int = 0,
    batch: int = 1,
    integer_timesteps: bool = False,
    negative_context: Optional[torch.Tensor] = None,
    guidance: float = 1.0,
) -> Iterator[ChunkResult]:
    """Yield the clean latents of each chunk in order. The KV caches live inside the generator."""
    check_transition(transition)
    num_chunks = check_chunking(latent_frames, chunk_frames)
    segments = _schedule(prompts, latent_frames, chunk_frames)
    if guidance != 1.0:
        check_conditioning(negative_context, "negative_context")
    device = model.device
    gen = seeded_generator(seed)
    C = model.config.in_dim

    def new_cache():
        return model.new_cache(policy, batch=batch, latent_hw=latent_hw, chunk_frames=chunk_frames)

    cache = new_cache()
    neg_cache = new_cache() if guidance != 1.0 else None
    if neg_cache is not None:
        model.set_prompt(neg_cache, negative_context.to(device))
    switches = {s.start_frame: s.context.to(device) for s in segments}
    sig = grid.with_terminal()
    shape = (batch, C, chunk_frames, *latent_hw)
    for c in range(num_chunks):
        start = c * chunk_frames
        idx = list(range(start, start + chunk_frames))
        if start in switches:
            first = start == 0
            recache_prompt(model, cache, switches[start], recache=policy.recache_on_switch and not first)
        with torch.no_grad():
            x = draw(shape, gen, device)
            for i in range(grid.steps):
                t = torch.full((batch,), model_timestep(sig[i], integer_timesteps), device=device)
                v = model.forward_chunk(x, t, cache, idx)
                v_neg = model.forward_chunk(x, t, neg_cache, idx) if neg_cache is not None else None
                x0 = predict_x0(x, guided(v, v_neg, guidance), sig[i])
                fresh = draw(shape, gen, device) if transition == "renoise" and sig[i + 1] > 0 else None
                x = transition_step(x, x0, sig[i], sig[i + 1], transition, fresh)
            t_ctx = torch.full((batch,), policy.context_t, device=device)
            model.forward_chunk(x, t_ctx, cache, idx, commit=True)
            if neg_cache is not None:
                model.forward_chunk(x, t_ctx, neg_cache, idx, commit=True)
        yield ChunkResult(c, num_chunks, start, x)


def collect_chunks(chunks: Iterator[ChunkResult], callback: Optional[Callable[[ChunkResult], None]] = None) -> torch.Tensor:
    """Concatenate streamed chunks into [B, C, T, H, W]. A callback may raise StopSampling to end early
    (the chunks finished so far are returned)."""
    done = []
    for res in chunks:
        done.append(res.latents)
        if callback is not None:
            try:
                callback(res)
            except StopSampling:
                break
    return torch.cat(done, dim=2)


def sample_ar(model, prompts, *, callback: Optional[Callable[[ChunkResult], None]] = None, **kwargs) -> torch.Tensor:
    """`stream_ar` collected into [B, C, T, H, W]; see `collect_chunks` for the callback."""
    return collect_chunks(stream_ar(model, prompts, **kwargs), callback)
