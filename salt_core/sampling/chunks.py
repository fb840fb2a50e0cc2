"""The chunk driver: a causal WanDiT generating a video chunk by chunk against its KV cache.

For each chunk of `chunk_frames` latent frames the driver hands out a Denoiser bound to the cache and the chunk's
true frame indices; once the chunk is denoised, `commit` runs the context pass (the clean chunk at the policy's
`context_t`, without gradient) that writes its K/V into the cache under the cache policy. With classifier-free
guidance a second cache holds the negative prompt and is committed alike. A prompt switch replaces the
cross-attention prompt and, with re-cache, recomputes the retained frames' K/V under the new prompt.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..kv_cache import CachePolicy, KVCache
from ..validation import check_chunking
from .denoiser import Denoiser
from .guidance import NO_GUIDANCE, Guidance
from .walk import Walk, WalkResult


@dataclass(frozen=True)
class ChunkLayout:
    """A causal video's latent geometry: [batch, C, latent_frames, h, w] in chunks of chunk_frames."""

    latent_frames: int
    latent_hw: tuple[int, int]
    chunk_frames: int
    batch: int = 1

    def __post_init__(self) -> None:
        check_chunking(self.latent_frames, self.chunk_frames)

    @property
    def num_chunks(self) -> int:
        return self.latent_frames // self.chunk_frames

    @classmethod
    def like(cls, x: torch.Tensor, chunk_frames: int) -> "ChunkLayout":
        """The layout of latents x [B, C, T, H, W]."""
        return cls(x.shape[2], tuple(x.shape[3:]), chunk_frames, x.shape[0])

    def chunk_shape(self, channels: int) -> tuple[int, ...]:
        return (self.batch, channels, self.chunk_frames, *self.latent_hw)


@dataclass
class ChunkEvent:
    index: int  # chunk number, 0-based
    frames: list[int]  # its true latent-frame indices
    result: WalkResult


@dataclass(frozen=True)
class CausalSetup:
    """A causal model with its prompt [B, L, text_dim], cache policy, chunk size and guidance: it starts a fresh
    driver (empty cache, prompt set) for each video."""

    model: object
    context: torch.Tensor
    policy: CachePolicy
    chunk_frames: int
    guidance: Guidance = NO_GUIDANCE

    def driver(self, like: torch.Tensor, *, start_frame: int = 0, prompt_grad: bool = False) -> "ChunkDriver":
        """A driver for latents shaped like `like` [B, C, T, H, W]. prompt_grad: the prompt's cross-attention K/V
        keep their graph (under grad mode), so a loss on the chunks also trains the model's text embedding and
        cross-attention K/V projections; the cache then serves one backward."""
        d = ChunkDriver(self.model, self.policy, ChunkLayout.like(like, self.chunk_frames), guidance=self.guidance,
                        start_frame=start_frame, prompt_grad=prompt_grad)
        d.set_prompt(self.context)
        return d


class ChunkDriver:
    """KV cache(s) of one causal model for one video; frames are numbered from `start_frame`.

    cache: continue an existing cache (it keeps its policy and prompt) instead of starting an empty one."""

    def __init__(self, model, policy: CachePolicy, layout: ChunkLayout, *, guidance: Guidance = NO_GUIDANCE,
                 cache: Optional[KVCache] = None, start_frame: int = 0, prompt_grad: bool = False):
        self.model, self.layout, self.guidance, self.start_frame = model, layout, guidance, start_frame
        self.prompt_grad = prompt_grad
        self.cache = cache if cache is not None else self._new_cache(policy)
        self.negative_cache = None
        if guidance.active:
            self.negative_cache = self._new_cache(self.cache.policy)
            with torch.no_grad():
                model.set_prompt(self.negative_cache, guidance.negative.to(model.device))
        self.hooks: list[Callable[[ChunkEvent], None]] = []

    def _new_cache(self, policy: CachePolicy) -> KVCache:
        lay = self.layout
        return self.model.new_cache(policy, batch=lay.batch, latent_hw=lay.latent_hw, chunk_frames=lay.chunk_frames)

    @property
    def policy(self) -> CachePolicy:
        return self.cache.policy

    def frames(self, chunk: int) -> list[int]:
        F = self.layout.chunk_frames
        first = self.start_frame + chunk * F
        return list(range(first, first + F))

    # ---- prompt -------------------------------------------------------------------------------------
    def set_prompt(self, context: torch.Tensor, *, recache: bool = False) -> None:
        """Cross-attention K/V of a prompt [B, L, text_dim]; with recache, the retained frames' K/V are recomputed
        under it (LongLive's re-cache on a prompt switch; a policy that `recache_keeps_sink` keeps the sink's K/V
        from the earlier prompt and recomputes the rest against it, as LongLive with global_sink)."""
        model, cache = self.model, self.cache
        keep_sink = recache and cache.policy.recache_keeps_sink
        retained = cache.retained(skip_sink=keep_sink) if recache else []
        with torch.set_grad_enabled(self.prompt_grad and torch.is_grad_enabled()):  # see CausalSetup.driver
            model.set_prompt(cache, context.to(model.device))
        if not recache:
            return
        if any(lat is None for _, lat in retained):
            raise ValueError("cannot re-cache: the cache holds frames committed without their latents")
        cache.reset_frames(keep_sink=keep_sink)
        F = cache.max_chunk_frames
        with torch.no_grad():
            for i in range(0, len(retained), F):
                group = retained[i: i + F]
                x = torch.cat([lat for _, lat in group], dim=2)
                self._context_pass(cache, x, [f for f, _ in group])

    # ---- one chunk ----------------------------------------------------------------------------------
    def denoiser(self, frames: Sequence[int]) -> Denoiser:
        return Denoiser.for_chunk(self.model, self.cache, frames, negative_cache=self.negative_cache,
                                  guidance=self.guidance)

    def _context_pass(self, cache: KVCache, x: torch.Tensor, frames: Sequence[int]) -> None:
        t = torch.full((x.shape[0],), cache.policy.context_t, device=x.device)
        self.model.forward_chunk(x, t, cache, list(frames), commit=True)

    @torch.no_grad()
    def commit(self, x: torch.Tensor, frames: Sequence[int]) -> None:
        """Write the clean chunk x [B, C, F, H, W] into the cache(s): the context pass, without gradient."""
        x = x.detach()
        self._context_pass(self.cache, x, frames)
        if self.negative_cache is not None:
            self._context_pass(self.negative_cache, x, frames)

    def chunk(self, index: int, x: torch.Tensor, walk: Walk, generator: Optional[torch.Generator] = None, *,
              commit: bool = True, **walk_options) -> WalkResult:
        """Denoise chunk `index` from its start state x [B, C, F, H, W] along `walk` (options: see Walk.run),
        commit its sample unless told not to, and call the hooks."""
        frames = self.frames(index)
        result = walk.run(self.denoiser(frames), x, generator, **walk_options)
        if commit:
            self.commit(result.sample, frames)
        event = ChunkEvent(index, frames, result)
        for hook in self.hooks:
            hook(event)
        return result
