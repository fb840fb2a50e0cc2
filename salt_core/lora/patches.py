"""Weight patches a `salt_core.dit.layers.Linear` applies at each call: a low-rank update and a full diff.

Their tensors are non-persistent buffers: they move with the model (`.to(device)`) but stay out of its
state dict, which remains the base model's.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class LowRankPatch(nn.Module):
    """W += scale · up @ down, scale = strength · alpha / rank. up: [out, rank], down: [rank, in]."""

    def __init__(self, up: torch.Tensor, down: torch.Tensor, scale: float):
        super().__init__()
        self.register_buffer("up", up, persistent=False)
        self.register_buffer("down", down, persistent=False)
        self.scale = float(scale)

    def add_to_weight(self, w: torch.Tensor) -> torch.Tensor:
        up, down = self.up.to(w.device, w.dtype), self.down.to(w.device, w.dtype)  # factors follow the weight's device
        return torch.addmm(w, up, down, alpha=self.scale)  # a new tensor

    def add_to_bias(self, b: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        return b

    def extra_repr(self) -> str:
        return f"rank={self.down.shape[0]}, scale={self.scale:g}"


class DiffPatch(nn.Module):
    """W += strength · weight_diff and / or b += strength · bias_diff (full-size differences)."""

    def __init__(self, weight_diff: Optional[torch.Tensor], bias_diff: Optional[torch.Tensor], strength: float):
        super().__init__()
        self.register_buffer("weight_diff", weight_diff, persistent=False)
        self.register_buffer("bias_diff", bias_diff, persistent=False)
        self.strength = float(strength)

    def add_to_weight(self, w: torch.Tensor) -> torch.Tensor:
        if self.weight_diff is None:
            return w
        return torch.add(w, self.weight_diff.to(w.device, w.dtype), alpha=self.strength)

    def add_to_bias(self, b: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        if self.bias_diff is None:
            return b
        return torch.add(b, self.bias_diff.to(b.device, b.dtype), alpha=self.strength)

    def extra_repr(self) -> str:
        parts = [n for n in ("weight_diff", "bias_diff") if getattr(self, n) is not None]
        return f"{'+'.join(parts)}, strength={self.strength:g}"
