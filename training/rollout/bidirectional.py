"""Bidirectional student rollout for DMD / SC-DMD (the whole clip denoised at once)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from salt_core.sampling import Denoiser, StepEvent, Walk
from salt_core.schedules import StepGrid

from .common import draw_exit_step


@dataclass
class Rollout:
    x: torch.Tensor  # [B, C, T, H, W] the sample: x̂0 of the exit step (with the exit forward's graph)
    exit_step: int
    grid: StepGrid
    states: dict[int, torch.Tensor]  # step i -> detached x_{σ_i} [B, C, T, H, W] (for the SC loss)


def rollout_bidirectional(
    student: Denoiser,
    noise: torch.Tensor,
    walk: Walk,
    generator: Optional[torch.Generator] = None,
    *,
    exit_step: Optional[int] = None,
    until: Optional[int] = None,
    grad: bool = True,
    on_step: Optional[Callable[[StepEvent], None]] = None,
) -> Rollout:
    """Roll the student out from `noise` [B, C, T, H, W] along `walk`, recording every state it visits.

    exit_step: the step whose x̂0 is the sample and whose forward alone carries gradient (None = uniform draw
      from `generator` over 0..K−1; pass it explicitly to keep DDP ranks in step).
    until: keep walking (no grad) past the exit until this state exists, e.g. the SC pair's start.
    grad: False runs every forward without gradient (probe / critic rollouts).
    on_step: a step hook (e.g. the released SC probe, as on_step(0, event))."""
    e = draw_exit_step(walk.steps, generator) if exit_step is None else int(exit_step)
    last = e if until is None else max(e, int(until))
    res = walk.run(student, noise.float(), generator, exit_step=e, until=until, grad=grad, record=range(last + 1),
                   on_step=on_step)
    return Rollout(res.sample, e, walk.grid, res.states)
