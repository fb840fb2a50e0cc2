"""Noise levels for the training losses: draws on the shifted 1000-point grid and the shift's inverse.

All levels are σ ∈ [0, 1] with model timestep t = 1000σ . Draws happen on the CPU from an
explicit `torch.Generator`, so a run is reproducible on any device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from salt_core.schedules import shift_sigma


def unshift_sigma(sigma: float, shift: float) -> float:
    """Inverse of `shift_sigma`: the un-shifted level u with shift_sigma(u, shift) == sigma."""
    return sigma / (shift - (shift - 1.0) * sigma)


def sample_timesteps(
    shape,
    *,
    shift: float = 5.0,
    t_min: float = 20.0,
    t_max: float = 980.0,
    generator: Optional[torch.Generator] = None,
    num_train_timesteps: int = 1000,
    low: int = 0,
    high: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw t uniformly from the integer grid {low, …, high−1} (default {0, …, N−1}), warp it by `shift`,
    clamp to [t_min, t_max].

    shape: int or tuple (e.g. [B] or [B, chunks]); shift: flow shift s (σ' = sσ/(1+(s−1)σ));
    t_min/t_max: clamp on the shifted model timestep (Self Forcing: 20 and 980);
    num_train_timesteps: N, size of the 1000-point training grid.
    Returns (t, sigma), float32 CPU tensors of `shape`, t = 1000·sigma.
    """
    if not 0.0 <= t_min <= t_max <= 1000.0:
        raise ValueError(f"need 0 <= t_min <= t_max <= 1000, got t_min={t_min}, t_max={t_max}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    high = num_train_timesteps if high is None else high
    if not 0 <= low < high <= num_train_timesteps:
        raise ValueError(f"need 0 <= low < high <= {num_train_timesteps}, got low={low}, high={high}")
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    raw = torch.randint(low, high, shape, generator=generator).to(torch.float64) / num_train_timesteps
    sigma = shift * raw / (1.0 + (shift - 1.0) * raw)
    t = (1000.0 * sigma).clamp(t_min, t_max)
    return t.float(), (t / 1000.0).float()


@dataclass(frozen=True)
class NoiseLevels:
    """Where the DMD / critic losses noise a sample: the shifted 1000-point grid, clamped to [t_min, t_max]."""

    shift: float = 5.0
    t_min: float = 20.0
    t_max: float = 980.0

    def draw(self, shape, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, sigma) of `shape`, float32 on the CPU (see `sample_timesteps`)."""
        return sample_timesteps(shape, shift=self.shift, t_min=self.t_min, t_max=self.t_max, generator=generator)


def midpoint_sigma(sigma_s: float, sigma_e: float, shift: float) -> float:
    """The level halfway between sigma_s and sigma_e on the un-shifted scale, warped back.

    For adjacent levels i, i+1 of `StepGrid.uniform(K, shift)` this is level 2i+1 of the 2K-grid."""
    u = 0.5 * (unshift_sigma(sigma_s, shift) + unshift_sigma(sigma_e, shift))
    return shift_sigma(u, shift)
