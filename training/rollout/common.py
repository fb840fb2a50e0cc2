"""Draws shared by the training rollouts: step counts (mixed-step caches) and exit steps."""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

from salt_core.schedules import StepGrid


def as_grid(steps_or_grid: Union[int, StepGrid], shift: float) -> StepGrid:
    """An int K becomes `StepGrid.uniform(K, shift)`; a StepGrid passes through."""
    if isinstance(steps_or_grid, StepGrid):
        return steps_or_grid
    return StepGrid.uniform(int(steps_or_grid), shift)


def draw_step_count(
    choices: Sequence[int] = (8, 4, 2), generator: Optional[torch.Generator] = None, weights: Optional[Sequence[float]] = None
) -> int:
    """K drawn from `choices` (uniform, or proportional to `weights`)."""
    if not choices:
        raise ValueError("step-count choices are empty: give e.g. [8, 4, 2]")
    if weights is None:
        return int(choices[int(torch.randint(0, len(choices), (1,), generator=generator))])
    if len(weights) != len(choices) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"step-count weights {list(weights)} must be {len(choices)} non-negative numbers, not all 0")
    w = torch.tensor([float(x) for x in weights])
    return int(choices[int(torch.multinomial(w, 1, generator=generator))])


def draw_exit_step(steps: int, generator: Optional[torch.Generator] = None) -> int:
    """The grid step (0..steps−1) whose forward carries gradient and whose x̂0 is the rollout's sample."""
    return int(torch.randint(0, steps, (1,), generator=generator))


def mixed_step_grids(
    num_chunks: int,
    *,
    choices: Sequence[int] = (8, 4, 2),
    shift: float = 5.0,
    generator: Optional[torch.Generator] = None,
    current: Union[int, StepGrid, None] = None,
    weights: Optional[Sequence[float]] = None,
) -> list[StepGrid]:
    """Per-chunk grids of a mixed-step cache: every previous chunk gets K drawn from `choices` (uniform
    grids with `shift`), the last (current) chunk gets `current` (K or a StepGrid; None = drawn too)."""
    grids = [as_grid(draw_step_count(choices, generator, weights), shift) for _ in range(num_chunks - 1)]
    last = draw_step_count(choices, generator, weights) if current is None else current
    return grids + [as_grid(last, shift)]
