"""Small building blocks of the Wan DiT: norms, the timestep sinusoid, adaLN modulation."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last dim, computed in float32 (weight name `weight`, as Wan)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            if torch.is_grad_enabled():
                return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
            # Inference: two full-size passes and allocations (ATen's CPU rms_norm makes more).
            r = x.square().mean(-1, keepdim=True).add_(self.eps).rsqrt_()  # [..., 1]
            return (x * r).mul_(self.weight)
        return F.rms_norm(x.float(), (x.shape[-1],), None, self.eps).to(x.dtype) * self.weight


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm evaluated in float32 whatever the input dtype; the result keeps the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return nn.functional.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class TanhGELU(nn.Module):
    """GELU, tanh approximation (as Wan). On CPU without autograd it is evaluated through the identity
    0.5·(1 + tanh(z)) = sigmoid(2z): x·sigmoid(x·(a + b·x²)), a = 2·sqrt(2/π), b = a·0.044715,
    which is 2x faster than ATen's CPU tanh-GELU (whose tanh is not vectorised). Same function;
    differences are float rounding (~1e-7)."""

    A = 2.0 * math.sqrt(2.0 / math.pi)
    B = A * 0.044715

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dtype != torch.float32 or torch.is_grad_enabled():
            return F.gelu(x, approximate="tanh")
        u = torch.addcmul(x.new_tensor(self.A), x, x, value=self.B)  # a + b·x²
        u.mul_(x)
        torch.sigmoid_(u)
        return u.mul_(x)


def timestep_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t: [...] (float timesteps in 0..1000) -> [..., dim] float64, cosines first then sines."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = t.to(torch.float64).unsqueeze(-1) * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, frames: int) -> torch.Tensor:
    """adaLN with per-frame parameters: x·(1 + scale) + shift, in one pass.

    x: [B, L, D] with L = frames * tokens_per_frame (frame-major); shift/scale: [B, frames, D].
    Computed in float32 (as the reference), returned as float32.
    """
    B, L, D = x.shape
    xf = x.float().view(B, frames, L // frames, D)
    return torch.addcmul(shift.unsqueeze(2), xf, (1.0 + scale).unsqueeze(2)).view(B, L, D)


def norm_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm without affine, then adaLN: LN(x)·(1 + scale) + shift, float32.

    x: [B, L, D]; shift/scale: [B, F, D] per frame (F = 1: shared by all tokens). With one sample and one
    set of parameters the modulation is the LayerNorm's own affine: one fused pass instead of two.
    """
    B, L, D = x.shape
    xf = x.float()
    if B == 1 and shift.shape[1] == 1:
        return F.layer_norm(xf, (D,), (1.0 + scale).view(D), shift.view(D), eps)
    return modulate(F.layer_norm(xf, (D,), None, None, eps), shift, scale, shift.shape[1])


def gated_residual(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, frames: int) -> torch.Tensor:
    """x + y·g in one pass. x: [B, L, D] float32 residual stream; y: [B, L, D]; g: [B, frames, D] per-frame gate."""
    B, L, D = y.shape
    shape = (B, frames, L // frames, D)
    return torch.addcmul(x.view(shape), y.float().view(shape), g.unsqueeze(2)).view(B, L, D)


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
