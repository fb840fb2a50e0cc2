"""Chunk-by-chunk sampling of causal models against a KV cache, with prompt switches.

Each chunk of `chunk_frames` latent frames is denoised along the walk while attending to the cache; its clean
result is then written to the cache by the chunk driver's context pass. Streaming: `stream_ar` yields finished
chunks, so a long video never needs to be held at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence, Union

import torch

from ..kv_cache import CachePolicy
from ..validation import check_conditioning
from .chunks import ChunkDriver, ChunkLayout
from .guidance import NO_GUIDANCE, Guidance
from .noise import draw, seeded_generator
from .walk import Walk


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


Prompts = Union[torch.Tensor, Sequence[PromptSegment]]


def prompt_schedule(prompts: Prompts, layout: ChunkLayout) -> list[PromptSegment]:
    """A prompt or a schedule -> segments sorted by start, each at a chunk start inside the video."""
    if isinstance(prompts, torch.Tensor):
        prompts = [PromptSegment(0, prompts)]
    segs = sorted(prompts, key=lambda s: s.start_frame)
    if not segs:
        raise ValueError("the prompt schedule is empty: give at least one prompt")
    if segs[0].start_frame != 0:
        raise ValueError(f"the prompt schedule must start at frame 0, its first entry starts at {segs[0].start_frame}")
    F, T = layout.chunk_frames, layout.latent_frames
    for s in segs:
        check_conditioning(s.context, f"prompt at frame {s.start_frame}")
        if s.start_frame % F or not 0 <= s.start_frame < T:
            raise ValueError(f"prompt switch at latent frame {s.start_frame} must be a chunk start (multiple of "
                             f"chunk_frames={F}) below {T}")
    starts = [s.start_frame for s in segs]
    if len(set(starts)) != len(starts):
        raise ValueError(f"the prompt schedule has two prompts at the same frame: {starts}")
    return segs


def stream_ar(
    model,
    prompts: Prompts,
    *,
    layout: ChunkLayout,
    walk: Walk,
    policy: CachePolicy = CachePolicy(),
    seed: int = 0,
    guidance: Guidance = NO_GUIDANCE,
) -> Iterator[ChunkResult]:
    """Yield the clean latents of each chunk in order; the KV caches live inside the generator.
    prompts: a prompt embedding [B, L, text_dim] or a schedule of PromptSegments (switches at chunk starts)."""
    switches = {s.start_frame: s.context for s in prompt_schedule(prompts, layout)}
    table = getattr(model.config, "rope_max_positions", None)
    if table is not None:  # a video that would run past the RoPE table is refused before its first chunk
        policy.check_length(layout.latent_frames, layout.chunk_frames, table)
    gen = seeded_generator(seed)
    driver = ChunkDriver(model, policy, layout, guidance=guidance)
    shape = layout.chunk_shape(model.config.in_dim)
    n = layout.num_chunks
    for c in range(n):
        start = c * layout.chunk_frames
        if start in switches:
            driver.set_prompt(switches[start], recache=policy.recache_on_switch and start > 0)
        with torch.no_grad():
            x = driver.chunk(c, draw(shape, gen, model.device), walk, gen).sample
        yield ChunkResult(c, n, start, x)


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


def sample_ar(model, prompts: Prompts, *, callback: Optional[Callable[[ChunkResult], None]] = None,
              **kwargs) -> torch.Tensor:
    """`stream_ar` collected into [B, C, T, H, W]; see `collect_chunks` for the callback."""
    return collect_chunks(stream_ar(model, prompts, **kwargs), callback)
