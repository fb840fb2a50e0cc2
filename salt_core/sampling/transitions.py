"""One step between noise levels on a flow-matching path.

renoise (Self Forcing): x_next = (1−σn)·x̂0 + σn·ε with fresh ε;  ode: x_next = x̂0 + (σn/σ)·(x_t − x̂0).
"""
from __future__ import annotations

from typing import Optional

import torch

TRANSITIONS = ("renoise", "ode")


def check_transition(name: str) -> str:
    if name not in TRANSITIONS:
        raise ValueError(f"transition {name!r} is unknown; allowed: {list(TRANSITIONS)}")
    return name


def transition_step(
    x_t: torch.Tensor,
    x0: torch.Tensor,
    sigma: float,
    sigma_next: float,
    kind: str,
    noise: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Move from level sigma to sigma_next given the prediction x0 (the noise ε for renoise from the caller)."""
    if sigma_next == 0.0:
        return x0
    if kind == "renoise":
        if noise is None:
            raise ValueError("transition 'renoise' needs a noise tensor")
        return (1.0 - sigma_next) * x0 + sigma_next * noise
    if kind == "ode":
        return x0 + (sigma_next / sigma) * (x_t - x0)
    raise ValueError(f"transition {kind!r} is unknown; allowed: {list(TRANSITIONS)}")
