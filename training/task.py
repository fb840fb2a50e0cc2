"""What a training command gives the trainer: its networks, the update phases of each step, their losses,
an optional probe metric, and the sampling defaults of the exported network."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from salt_core.config import SamplingDefaults

from .config import AdamWConfig


@dataclass
class NetSpec:
    module: nn.Module
    optim: AdamWConfig
    ema: bool = False


class Task:
    """Subclasses set `primary` (the exported network) and implement `networks`, `phases` and `loss`."""

    primary: str = "student"

    def networks(self) -> dict[str, NetSpec]:
        raise NotImplementedError

    def phases(self, step: int) -> list[str]:
        """Networks updated at `step`, in order (each phase: zero grads, loss, backward, step)."""
        raise NotImplementedError

    def loss(self, phase: str, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
        """The loss of `phase` on this rank's batch -> (scalar, {name: float})."""
        raise NotImplementedError

    def probe(self, step: int) -> dict:
        """Metrics on a fixed probe batch (e.g. the semigroup defect); {} when not applicable."""
        return {}

    def sampling_defaults(self, step: int) -> Optional[SamplingDefaults]:
        """How the exported primary network samples; None = no export."""
        return None
