"""Bidirectional student rollout for DMD / SC-DMD (the whole clip denoised at once)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from salt_core.sampling.transitions import check_transition
from salt_core.schedules import StepGrid

from .common import denoise_path, draw_exit_step


@dataclass
class Rollout:
    x: torch.Tensor  # [B, C, T, H, W] the sample: x̂0 of the exit step (with the exit forward's graph)
    exit_step: int
    grid: StepGrid
    states: dict[int, torch.Tensor]  # step i -> detached x_{σ_i} [B, C, T, H, W] (for the SC loss)


def rollout_bidirectional(
    student,
    noise: torch.Tensor,
    ctx: torch.Tensor,
    grid: StepGrid,
    *,
    transition: str = "renoise",
    generator: Optional[torch.Generator] = None,
    exit_step: Optional[int] = None,
    record_until: Optional[int] = None,
    grad: bool = True,
    integer_timesteps: bool = False,
) -> Rollout:
    """Roll the student `student(x, t, ctx) -> v` from `noise` [B, C, T, H, W] along `grid` (K steps).

    transition: between-step rule ("renoise" draws fresh ε from `generator`, "ode").
    exit_step: the step whose x̂0 is the sample and whose forward alone carries gradient (None = uniform
      draw from `generator` over 0..K−1; pass it explicitly to keep DDP ranks in step).
    record_until: keep walking (no grad) past the exit until state `record_until` exists, e.g. the SC
      pair index of `sc_triplet`; the sample is still the exit step's x̂0.
    grad: False runs every forward without gradient (probe / eval rollouts).
    """
    check_transition(transition)
    K = grid.steps
    e = draw_exit_step(K, generator) if exit_step is None else int(exit_step)
    if not 0 <= e < K:
        raise ValueError(f"exit_step {e} is outside the grid's steps 0..{K - 1}")
    last = e if record_until is None else max(e, int(record_until))
    if last >= K:
        raise ValueError(f"record_until {record_until} is outside the grid's steps 0..{K - 1}")
    x, states = denoise_path(
        lambda xs, t: student(xs, t, ctx), noise.float(), grid, exit_step=e, last_step=last, grad=grad,
        transition=transition, generator=generator, integer_timesteps=integer_timesteps,
    )
    return Rollout(x, e, grid, states)
