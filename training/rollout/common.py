"""Pieces shared by the training rollouts: step-count / exit draws, the denoising path, a cached-chunk adapter."""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

from salt_core.kv_cache import KVCache
from salt_core.sampling.clip import draw
from salt_core.sampling.transitions import model_timestep, predict_x0, transition_step
from salt_core.schedules import StepGrid


class CachedChunk:
    """A causal student bound to its KV cache and a chunk's frame indices, callable like a bidirectional
    model: `chunk(x [B, C, F, H, W], t [B], ctx=None) -> v`. The prompt lives in the cache, so ctx is
    ignored. Never commits: context passes go through `model.forward_chunk(..., commit=True)`."""

    def __init__(self, model, cache: KVCache, frame_indices: Sequence[int]):
        self.model, self.cache, self.frame_indices = model, cache, list(frame_indices)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, ctx=None, *, return_features: Sequence[int] = ()):
        return self.model.forward_chunk(x, t, self.cache, self.frame_indices, return_features=return_features)


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


def denoise_path(
    denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    grid: StepGrid,
    *,
    exit_step: int,
    last_step: int,
    grad: bool,
    transition: str,
    generator: Optional[torch.Generator],
    integer_timesteps: bool = False,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Walk `grid` from x (the state at level 0) through steps 0..last_step.

    Step `exit_step`'s forward runs with gradient when `grad` (and the caller's grad mode) allow; every
    other forward runs under no_grad, and each state is detached before the next step, so the graph holds
    exactly one forward. Returns (x̂0 of the exit step, {step i: detached state x_{σ_i}}).
    Renoise draws fresh ε from `generator` between steps (none after the last step).
    """
    outer = torch.is_grad_enabled()
    sig = grid.with_terminal()
    states: dict[int, torch.Tensor] = {}
    out = None
    for i in range(last_step + 1):
        states[i] = x.detach()
        t = torch.full((x.shape[0],), model_timestep(sig[i], integer_timesteps), device=x.device)
        with torch.set_grad_enabled(outer and grad and i == exit_step):
            x0 = predict_x0(states[i], denoise(states[i], t), sig[i])
        if i == exit_step:
            out = x0
        if i < last_step:
            fresh = draw(x.shape, generator, x.device) if transition == "renoise" and sig[i + 1] > 0 else None
            x = transition_step(states[i], x0.detach(), sig[i], sig[i + 1], transition, fresh)
    return out, states
