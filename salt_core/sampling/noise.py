"""Seeded noise: every draw comes from an explicit CPU generator, so a seed gives the same video on any device."""
from __future__ import annotations

import torch

SEED_MAX = 2**64 - 1  # torch.Generator.manual_seed takes seeds in [0, 2^64)


def seeded_generator(seed: int) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be an integer in [0, 2^64 - 1], got {seed!r}")
    return torch.Generator("cpu").manual_seed(seed)


def draw(shape, generator: torch.Generator, device, dtype=torch.float32) -> torch.Tensor:
    """Gaussian noise drawn on the CPU (reproducible across devices), then moved."""
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
