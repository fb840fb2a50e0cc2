"""Autoregressive student rollout, Self Forcing style, for DMD / SC-DMD / cache-aware training.

The clip is produced chunk by chunk by a `ChunkDriver` (the student's KV cache under its policy). Each chunk walks
its own step grid (grids may differ per chunk: mixed-step caches); the x̂0 of its exit step is the chunk's sample,
and only that forward carries gradient. The finished chunk is then committed by the driver's context pass (without
gradient), so later chunks see it only through the cache and no gradient crosses chunks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Optional, Sequence

import torch

from salt_core.sampling import ChunkDriver, Denoiser, StepEvent, Walk
from salt_core.schedules import StepGrid

from .common import draw_exit_step


@dataclass(frozen=True)
class ChunkSteps:
    """How one chunk is walked: its walk, its exit step (whose x̂0 is the chunk's sample) and whether that forward
    carries gradient."""

    walk: Walk
    exit_step: int
    grad: bool = True


def plan_chunks(
    grids: Sequence[StepGrid],
    transition: str,
    generator: Optional[torch.Generator] = None,
    *,
    exit_steps: Optional[Sequence[int]] = None,
    same_exit: bool = False,
    grad_chunks: Optional[Collection[int]] = None,
) -> list[ChunkSteps]:
    """One ChunkSteps per grid. exit_steps: given, or drawn from `generator` for the gradient chunks (uniform over
    0..K_c−1; one draw shared by all of them with same_exit, Self Forcing's same_step_across_blocks, clamped to each
    chunk's steps) while the other chunks take their last step (a full K_c-step sample).
    grad_chunks: chunk numbers whose exit forward carries gradient (None = all, Self Forcing)."""
    n = len(grids)
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
    return [ChunkSteps(Walk(g, transition), e, c in want) for c, (g, e) in enumerate(zip(grids, exits))]


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
    driver: ChunkDriver  # after the rollout; without commit_last its cache is the one the last chunk was made in

    def current(self) -> Denoiser:
        """The student on the last chunk against the cache it was made in (valid when commit_last=False): what SC
        and feature alignment on the current chunk ask."""
        return self.driver.denoiser(self.chunks[-1].frame_indices)


def rollout_ar(
    driver: ChunkDriver,
    noise: torch.Tensor,
    chunks: Sequence[ChunkSteps],
    generator: Optional[torch.Generator] = None,
    *,
    until_last: Optional[int] = None,
    commit_last: bool = False,
    on_step: Optional[Callable[[int, StepEvent], None]] = None,
) -> ARRollout:
    """Generate `noise` [B, C, T, H, W] chunk by chunk with the student behind `driver`, one ChunkSteps per chunk
    (see `plan_chunks`); renoise draws come from `generator` in chunk order.
    until_last: for the last chunk, keep walking (no grad) until this state exists (the SC pair's start).
    commit_last: also commit the last chunk (off: the driver's cache stays the last chunk's context, for SC /
    feature alignment on the current chunk via `ARRollout.current`).
    on_step: called as on_step(chunk, event) after every step of every chunk (e.g. the released SC probe)."""
    F = driver.layout.chunk_frames
    n = driver.layout.num_chunks
    if len(chunks) != n:
        raise ValueError(f"got {len(chunks)} chunk plans for {n} chunks")
    outs, traces = [], []
    for c, plan in enumerate(chunks):
        last = c == n - 1
        until = until_last if last else None
        walked = max(plan.exit_step, until if until is not None else plan.exit_step)
        hook = (lambda e, c=c: on_step(c, e)) if on_step is not None else None
        res = driver.chunk(c, noise[:, :, c * F:(c + 1) * F].float(), plan.walk, generator,
                           commit=not last or commit_last, exit_step=plan.exit_step, until=until, grad=plan.grad,
                           record=range(walked + 1), on_step=hook)
        outs.append(res.sample)
        traces.append(ChunkTrace(c, driver.frames(c), plan.walk.grid, plan.exit_step,
                                 plan.grad and torch.is_grad_enabled(), res.states))
    return ARRollout(torch.cat(outs, dim=2), traces, driver)
