"""Flow-matching noise levels, few-step grids and the timestep convention of a model.

x_σ = (1-σ)·x0 + σ·ε with model timestep t = 1000σ. The shift warps σ toward the noisy end:
σ' = sσ / (1 + (s-1)σ). Few-step grids are timestep lists on the un-shifted 1000-point scale
(e.g. [1000, 750, 500, 250]) warped by the shift (-> 1000, 937.5, 833.3, 625).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch


@dataclass(frozen=True)
class TimestepConvention:
    """How a noise level σ becomes the timestep a model is fed: t = 1000σ, truncated to an integer for
    checkpoints trained that way (the official Wan sampler); Self Forcing and ComfyUI pass floats. A model's
    convention travels with it (`WanDiT.timestep_convention`, set from its checkpoint header), so no caller
    passes it around."""

    integer: bool = False

    def timestep(self, sigma: float) -> float:
        t = 1000.0 * sigma
        return float(math.floor(t)) if self.integer else t

    def batch(self, sigma: Union[float, torch.Tensor], batch: int, device) -> torch.Tensor:
        """Timesteps [B] for one level σ (a float) or per-sample levels σ [B]."""
        if isinstance(sigma, torch.Tensor):
            t = sigma.to(device=device, dtype=torch.float32) * 1000.0
            return t.floor() if self.integer else t
        return torch.full((batch,), self.timestep(sigma), device=device)


FLOAT_TIMESTEPS = TimestepConvention(integer=False)


def timestep_convention(model) -> TimestepConvention:
    """The convention a model was trained with (float timesteps for anything that does not say)."""
    return getattr(model, "timestep_convention", FLOAT_TIMESTEPS)


def shift_sigma(sigma: float, shift: float) -> float:
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def uniform_timesteps(steps: int) -> list[float]:
    """K evenly spaced timesteps from 1000 down (no zero): K=4 -> [1000, 750, 500, 250]."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return [1000.0 * (1.0 - i / steps) for i in range(steps)]


@dataclass(frozen=True)
class StepGrid:
    """Descending noise levels visited by a sampler; the terminal level 0 is implicit. `shift` is the warp the
    levels were made with (it places midpoints on the un-shifted scale, e.g. for the SC loss)."""

    sigmas: tuple[float, ...]
    shift: float = 1.0

    def __post_init__(self) -> None:
        s = self.sigmas
        if not s:
            raise ValueError("a step grid needs at least one timestep")
        if any(not (0.0 < x <= 1.0) for x in s):
            raise ValueError(f"timesteps must lie in (0, 1000], got {[round(1000 * x, 3) for x in s]}")
        if any(a <= b for a, b in zip(s, s[1:])):
            raise ValueError(f"timesteps must be strictly decreasing, got {[round(1000 * x, 3) for x in s]}")

    @classmethod
    def from_timesteps(cls, timesteps: Sequence[float], shift: float = 1.0) -> "StepGrid":
        """Timesteps on the un-shifted 0..1000 scale, warped by `shift`."""
        if shift <= 0:
            raise ValueError(f"shift must be > 0, got {shift}")
        return cls(tuple(shift_sigma(float(t) / 1000.0, shift) for t in timesteps), float(shift))

    @classmethod
    def uniform(cls, steps: int, shift: float = 1.0) -> "StepGrid":
        return cls.from_timesteps(uniform_timesteps(steps), shift)

    @property
    def steps(self) -> int:
        return len(self.sigmas)

    @property
    def timesteps(self) -> tuple[float, ...]:
        return tuple(1000.0 * s for s in self.sigmas)

    def with_terminal(self) -> tuple[float, ...]:
        return self.sigmas + (0.0,)


def allowed_step_counts(trained_timesteps: Sequence[float], limit: int = 64) -> list[int]:
    """Step counts a few-step student can run from its trained grid of N points.

    Divisors of N take an evenly spaced subset of the trained grid (4 -> 2 -> 1); multiples N·2^j refine
    it uniformly (4 -> 8 -> 16), which contain the trained grid when it is uniform.
    An empty trained grid (a teacher) allows any count up to `limit`.
    """
    n = len(trained_timesteps)
    if n == 0:
        return list(range(1, limit + 1))
    counts = [d for d in range(1, n + 1) if n % d == 0]
    k = 2 * n
    while k <= limit:
        counts.append(k)
        k *= 2
    return counts


def resolve_grid(
    *,
    steps: Optional[int] = None,
    timesteps: Optional[Sequence[float]] = None,
    trained_timesteps: Sequence[float] = (),
    shift: float = 5.0,
) -> StepGrid:
    """The grid to sample with: explicit timesteps (un-shifted 0..1000) win; else `steps` from the model's grid."""
    if timesteps is not None:
        if steps is not None and steps != len(timesteps):
            raise ValueError(f"steps={steps} disagrees with the {len(timesteps)} explicit timesteps given")
        return StepGrid.from_timesteps(timesteps, shift)
    trained = [float(t) for t in trained_timesteps]
    n = len(trained)
    if steps is None:
        if not n:
            raise ValueError("give steps or timesteps: this model has no trained few-step grid")
        return StepGrid.from_timesteps(trained, shift)
    allowed = allowed_step_counts(trained)
    if steps not in allowed:
        raise ValueError(
            f"steps={steps} is outside this model's grid {[round(t, 2) for t in trained]}; allowed step counts: "
            f"{allowed} (or pass explicit timesteps)"
        )
    if n and n % steps == 0:
        return StepGrid.from_timesteps(trained[:: n // steps], shift)
    return StepGrid.uniform(steps, shift)
