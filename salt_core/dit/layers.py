"""Small building blocks of the Wan DiT: norms, the timestep sinusoid, adaLN modulation."""
from __future__ import annotations

import math

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dim, computed in float32 (weight name `weight`, as Wan)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.to(x.dtype) * self.weight


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm evaluated in float32 whatever the input dtype; the result keeps the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return nn.functional.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


def timestep_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t: [...] (float timesteps in 0..1000) -> [..., dim] float64, cosines first then sines."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = t.to(torch.float64).unsqueeze(-1) * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, frames: int) -> torch.Tensor:
    """adaLN with per-frame parameters.

    x: [B, L, D] with L = frames * tokens_per_frame (frame-major); shift/scale: [B, frames, D].
    Computed in float32 (as the reference), returned as float32.
    """
    B, L, D = x.shape
    xf = x.float().view(B, frames, L // frames, D)
    y = xf * (1.0 + scale.unsqueeze(2)) + shift.unsqueeze(2)
    return y.view(B, L, D)


def gate(y: torch.Tensor, g: torch.Tensor, frames: int) -> torch.Tensor:
    """y: [B, L, D] times per-frame gate g: [B, frames, D] -> float32 [B, L, D]."""
    B, L, D = y.shape
    return (y.float().view(B, frames, L // frames, D) * g.unsqueeze(2)).view(B, L, D)


def init_like_wan(module: nn.Module) -> None:
    """Initialisation in the spirit of the reference: xavier linears, small modulation tables."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for name, p in module.named_parameters():
        if name.endswith("modulation"):
            with torch.no_grad():
                p.copy_(torch.randn_like(p) / math.sqrt(p.shape[-1]))
