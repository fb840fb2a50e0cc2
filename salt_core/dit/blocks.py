"""Transformer block and output head of the Wan DiT (module names equal the official weights)."""
from __future__ import annotations

from typing import Optional

import torch
from einops import rearrange
from torch import nn

from .frame_mask import FrameMask
from .layers import FP32LayerNorm, Linear, RMSNorm, TanhGELU, compute_dtype, gated_residual, norm_modulate
from ..rope import apply_rope


class _Projections(nn.Module):
    """q/k/v/o linears with optional RMS q/k norm over the full dim (Wan's `qk_norm`)."""

    def __init__(self, dim: int, num_heads: int, qk_norm: bool, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q = Linear(dim, dim)
        self.k = Linear(dim, dim)
        self.v = Linear(dim, dim)
        self.o = Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps) if qk_norm else nn.Identity()
        self.norm_k = RMSNorm(dim, eps) if qk_norm else nn.Identity()

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, dim] -> [B, heads, L, head_dim]"""
        return rearrange(x, "b l (h d) -> b h l d", h=self.num_heads)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """[B, heads, L, head_dim] -> o([B, L, dim])"""
        return self.o(rearrange(x, "b h l d -> b l (h d)"))


class SelfAttention(_Projections):
    def forward(self, x, rope, attn, mask=None, layer_cache=None, plan=None, tokens_per_frame=0):
        """x: [B, L, dim]; rope: complex [L, head_dim/2] (`RopeTable.rotation`; ignored with a cache,
        which places positions itself)."""
        q = self.heads(self.norm_q(self.q(x)))
        k = self.heads(self.norm_k(self.k(x)))
        v = self.heads(self.v(x))
        if layer_cache is not None:
            out = layer_cache.attend(q, k, v, plan, tokens_per_frame, attn)
        else:
            out = attn(apply_rope(q, rope), apply_rope(k, rope), v, mask)
        return self.merge(out)


class CrossAttention(_Projections):
    def context_kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """context: [B, L_ctx, dim] (embedded prompt) -> k, v: [B, heads, L_ctx, head_dim]"""
        return self.heads(self.norm_k(self.k(context))), self.heads(self.v(context))

    def forward(self, x, kv, attn):
        q = self.heads(self.norm_q(self.q(x)))
        return self.merge(attn(q, kv[0], kv[1], None))


class WanBlock(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, num_heads: int, qk_norm: bool, cross_attn_norm: bool, eps: float):
        super().__init__()
        self.modulation = nn.Parameter(torch.zeros(1, 6, dim))
        self.norm1 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.self_attn = SelfAttention(dim, num_heads, qk_norm, eps)
        self.norm3 = FP32LayerNorm(dim, eps, elementwise_affine=True) if cross_attn_norm else nn.Identity()
        self.cross_attn = CrossAttention(dim, num_heads, qk_norm, eps)
        self.norm2 = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.ffn = nn.Sequential(Linear(dim, ffn_dim), TanhGELU(), Linear(ffn_dim, dim))

    def forward(
        self,
        x: torch.Tensor,  # [B, L, dim] float32 residual stream
        e0: torch.Tensor,  # [B, F, 6, dim] per-frame time projection (F = 1: shared by every frame)
        ctx_kv: tuple[torch.Tensor, torch.Tensor],
        rope,
        attn,
        mask: Optional[FrameMask] = None,  # latent-frame visibility; None = bidirectional
        layer_cache=None,
        plan=None,
    ) -> torch.Tensor:
        F = e0.shape[1]
        dt = compute_dtype(self.ffn[0])
        mod = self.modulation.to(device=e0.device, dtype=torch.float32)  # [1, 6, dim], where a host may have left it
        shift1, scale1, gate1, shift2, scale2, gate2 = (mod.unsqueeze(0) + e0.float()).unbind(2)
        h = norm_modulate(x, shift1, scale1, self.norm1.eps).to(dt)  # = modulate(norm1(x), shift1, scale1)
        tokens_per_frame = x.shape[1] // plan.frames if plan is not None else 0
        y = self.self_attn(h, rope, attn, mask, layer_cache, plan, tokens_per_frame)
        x = gated_residual(x, y, gate1, F)  # a new tensor: the caller's x is never written
        y = self.cross_attn(self.norm3(x).to(dt), ctx_kv, attn)
        # In place only without autograd (norm3 saved x for its backward).
        x = x.add_(y) if not torch.is_grad_enabled() and y.dtype == x.dtype else x + y.float()
        y = self.ffn(norm_modulate(x, shift2, scale2, self.norm2.eps).to(dt))
        return gated_residual(x, y, gate2, F)


class WanHead(nn.Module):
    def __init__(self, dim: int, out_dim: int, patch_size: tuple[int, int, int], eps: float):
        super().__init__()
        self.norm = FP32LayerNorm(dim, eps, elementwise_affine=False)
        self.head = Linear(dim, out_dim * patch_size[0] * patch_size[1] * patch_size[2])
        self.modulation = nn.Parameter(torch.zeros(1, 2, dim))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """x: [B, L, dim]; e: [B, F, dim] (un-projected time embedding) -> [B, L, out*prod(patch)]"""
        mod = self.modulation.to(device=e.device, dtype=torch.float32)  # [1, 2, dim]
        shift, scale = (mod.unsqueeze(0) + e.float().unsqueeze(2)).unbind(2)
        return self.head(norm_modulate(x, shift, scale, self.norm.eps).to(compute_dtype(self.head)))
