"""Autoregressive student rollout, Self Forcing style, for DMD / SC-DMD / cache-aware training.

The clip is produced chunk by chunk against a KV cache under a configurable `CachePolicy`. Each chunk
walks its own step grid (grids may differ per chunk: mixed-step caches); the x̂0 of its exit step is the
chunk's sample, and only that forward carries gradient. The finished chunk is then written to the cache
by the context pass (at `policy.context_t`, without gradient), so later chunks see it only through the
cache and no gradient crosses chunks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Optional, Sequence, Union

import torch

from salt_core.kv_cache import CachePolicy, KVCache
from salt_core.sampling.transitions import check_transition
from salt_core.schedules import StepGrid
from salt_core.validation import check_chunking

from .common import CachedChunk, denoise_path, draw_exit_step


@dataclass
class ChunkTrace:
    index: int  # chunk number
    frame_indices: list[int]  # true latent-frame indices of the chunk
    grid: StepGrid  # the chunk's step grid
    exit_step: int
    grad: bool  # did its exit forward carry gradient
    states: dict[int, torch.Tensor]  # step i -> detached x_{σ_i} [B, C, F, H, W]


@dataclass
class ARRollout:
    x: torch.Tensor  # [B, C, T, H, W] chunk samples in order (graphs of the gradient chunks' exit forwards)
    chunks: list[ChunkTrace]
    cache: KVCache  # after the rollout; without commit_last it is the cache the last chunk was made in

    def current(self, student) -> CachedChunk:
        """The student bound to the cache and frames of the last chunk (valid when commit_last=False):
        what SC and feature alignment on the current chunk call."""
        return CachedChunk(student, self.cache, self.chunks[-1].frame_indices)


def rollout_ar(
    student,
    noise: torch.Tensor,
    ctx: Optional[torch.Tensor],
    *,
    chunk_frames: int,
    grids: Union[StepGrid, Sequence[StepGrid]],
    policy: CachePolicy = CachePolicy(),
    transition: str = "renoise",
    generator: Optional[torch.Generator] = None,
    exit_steps: Optional[Sequence[int]] = None,
    same_exit: bool = False,
    grad_chunks: Optional[Collection[int]] = None,
    commit_last: bool = False,
    record_until: Optional[int] = None,
    cache: Optional[KVCache] = None,
    start_frame: int = 0,
    integer_timesteps: bool = False,
) -> ARRollout:
    """Generate `noise` [B, C, T, H, W] chunk by chunk with a causal WanDiT `student`.

    ctx: [B, L, text_dim] prompt (None when `cache` already holds one).
    chunk_frames: latent frames per chunk (T must be a multiple).
    grids: one StepGrid for every chunk, or one per chunk (see `mixed_step_grids`).
    policy: cache memory policy of a new cache ("full" / "window" / "sink_window"; context_t).
    transition: "renoise" (fresh ε from `generator` between steps) or "ode".
    exit_steps: per-chunk exit step; None = drawn from `generator` for the gradient chunks (uniform over
      0..K_c−1) and the last step K_c−1 (a full K_c-step sample) for the others.
    same_exit: one drawn exit for every gradient chunk (Self Forcing's same_step_across_blocks),
      clamped to each chunk's steps.
    grad_chunks: chunk numbers whose exit forward carries gradient (None = all, Self Forcing).
    commit_last: also write the last chunk to the cache (off: the returned cache is the last chunk's
      context, for SC / feature alignment on the current chunk via `ARRollout.current`).
    record_until: for the last chunk, keep walking (no grad) until state `record_until` exists (SC pair).
    cache / start_frame: continue an existing cache; frames are numbered from start_frame.
    The draw order is fixed (exit steps first, then per chunk its renoise draws), so a seed reproduces
    the rollout exactly.
    """
    check_transition(transition)
    T = noise.shape[2]
    n = check_chunking(T, chunk_frames)
    grids = [grids] * n if isinstance(grids, StepGrid) else list(grids)
    if len(grids) != n:
        raise ValueError(f"got {len(grids)} step grids for {n} chunks")
    want = set(range(n)) if grad_chunks is None else {int(c) for c in grad_chunks}
    if exit_steps is None:
        shared = draw_exit_step(max(g.steps for g in grids), generator) if same_exit else None
        exits = []
        for c, g in enumerate(grids):
            if c not in want:
                exits.append(g.steps - 1)
            elif shared is not None:
                exits.append(min(shared, g.steps - 1))
            else:
                exits.append(draw_exit_step(g.steps, generator))
    else:
        exits = [int(e) for e in exit_steps]
        if len(exits) != n or any(not 0 <= e < g.steps for e, g in zip(exits, grids)):
            raise ValueError(f"exit_steps {exits} must give one step in 0..K_c−1 for each of the {n} chunks")
    B = noise.shape[0]
    if cache is None:
        if ctx is None:
            raise ValueError("rollout_ar needs a prompt (ctx) or a cache that holds one")
        cache = student.new_cache(policy, batch=B, latent_hw=tuple(noise.shape[3:]), chunk_frames=chunk_frames)
    if ctx is not None:
        student.set_prompt(cache, ctx)
    t_ctx = torch.full((B,), cache.policy.context_t, device=noise.device)
    outs, traces = [], []
    for c in range(n):
        idx = list(range(start_frame + c * chunk_frames, start_frame + (c + 1) * chunk_frames))
        chunk = CachedChunk(student, cache, idx)
        last = exits[c]
        if c == n - 1 and record_until is not None:
            last = max(last, int(record_until))
            if last >= grids[c].steps:
                raise ValueError(f"record_until {record_until} is outside the last chunk's steps 0..{grids[c].steps - 1}")
        x0, states = denoise_path(
            chunk, noise[:, :, c * chunk_frames : (c + 1) * chunk_frames].float(), grids[c],
            exit_step=exits[c], last_step=last, grad=c in want, transition=transition, generator=generator,
            integer_timesteps=integer_timesteps,
        )
        if c < n - 1 or commit_last:
            with torch.no_grad():
                student.forward_chunk(x0.detach(), t_ctx, cache, idx, commit=True)
        outs.append(x0)
        traces.append(ChunkTrace(c, idx, grids[c], exits[c], c in want and torch.is_grad_enabled(), states))
    return ARRollout(torch.cat(outs, dim=2), traces, cache)
