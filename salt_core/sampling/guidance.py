"""Classifier-free guidance on the flow prediction: the one place its formula lives."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..validation import check_conditioning


@dataclass(frozen=True)
class Guidance:
    """v = v_neg + scale·(v_cond − v_neg); scale 1 is no guidance (the negative prompt is then unused).

    Self Forcing's "guidance 3.0" (x̂_c + 3·(x̂_c − x̂_neg)) is scale 4 here."""

    scale: float = 1.0
    negative: Optional[torch.Tensor] = None  # [B, L, text_dim] negative-prompt embedding

    def __post_init__(self) -> None:
        if self.active:
            check_conditioning(self.negative, f"negative prompt of guidance scale {self.scale}")

    @property
    def active(self) -> bool:
        return self.scale != 1.0

    def combine(self, v_cond: torch.Tensor, v_neg: Optional[torch.Tensor]) -> torch.Tensor:
        if v_neg is None or not self.active:
            return v_cond
        return v_neg + self.scale * (v_cond - v_neg)


NO_GUIDANCE = Guidance()
