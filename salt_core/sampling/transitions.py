"""One step between noise levels on a flow-matching path (DESIGN §5)."""
from __future__ import annotations

import math
from typing import Optional

import torch

TRANSITIONS = ("renoise", "ode")


def check_transition(name: str) -> str:
    if name not in TRANSITIONS:
        raise ValueError(f"transition {name!r} is unknown; allowed: {list(TRANSITIONS)}")
    return name


def model_timestep(sigma: float, integer: bool = False) -> float:
    """The timestep fed to the model: 1000σ, truncated to an integer for checkpoints trained that way."""
    t = 1000.0 * sigma
    return float(math.floor(t)) if integer else t


def predict_x0(x_t: torch.Tensor, v: torch.Tensor, sigma) -> torch.Tensor:
    """x̂0 = x_t − σ·v for the flow target v = ε − x0. sigma: float or a tensor broadcastable to x."""
    return x_t - sigma * v


def transition_step(
    x_t: torch.Tensor,
    x0: torch.Tensor,
    sigma: float,
    sigma_next: float,
    kind: str,
    noise: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Move from level sigma to sigma_next given the prediction x0.

    renoise: (1−σn)·x̂0 + σn·ε (fresh ε, given by the caller);  ode: x̂0 + (σn/σ)·(x_t − x̂0).
    """
    if sigma_next == 0.0:
        return x0
    if kind == "renoise":
        if noise is None:
            raise ValueError("transition 'renoise' needs a noise tensor")
        return (1.0 - sigma_next) * x0 + sigma_next * noise
    if kind == "ode":
        return x0 + (sigma_next / sigma) * (x_t - x0)
    raise ValueError(f"transition {kind!r} is unknown; allowed: {list(TRANSITIONS)}")
