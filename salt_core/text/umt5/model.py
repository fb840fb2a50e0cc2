"""The umT5 encoder: token embedding -> N pre-norm blocks (self-attention with a relative position bias
of their own, gated-GELU feed-forward) -> RMS norm. Parameter names are Wan's official ones
(`token_embedding`, `blocks.N.attn.q`, `blocks.N.ffn.gate.0`, `blocks.N.pos_embedding.embedding`, `norm`), so
Wan's .pth loads without renaming; other layouts are renamed at the loading edge (layouts.py).

T5 conventions kept here: no biases anywhere, no 1/sqrt(head_dim) scaling of the attention logits, RMS norm
without mean subtraction, GELU with the tanh approximation on the gate branch only.

    model = UMT5Encoder(umt5_preset("tiny"))
    states = model(ids, mask)   # ids: [B, L] int64, mask: [B, L] bool -> [B, L, dim], zero where mask is False
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import UMT5Config


class RMSNorm(nn.Module):
    """x / rms(x) * weight, the mean square taken in float32 (no mean subtraction, no bias)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return self.weight * normed.to(self.weight.dtype)


def relative_position_buckets(length: int, num_buckets: int, max_distance: int,
                              device: torch.device | str | None = None) -> torch.Tensor:
    """Bidirectional T5 buckets of (key position - query position) -> [length, length] int64.

    Half the buckets are for keys after the query, half for keys before; in each half, distances below a
    quarter of num_buckets get a bucket each, larger ones share log-spaced buckets up to max_distance, and
    everything beyond falls into the last bucket of its half."""
    pos = torch.arange(length, device=device)
    rel = pos[None, :] - pos[:, None]                                          # [Lq, Lk]
    half = num_buckets // 2
    exact = half // 2
    offset = (rel > 0).long() * half
    dist = rel.abs()
    # log(0) for dist 0 is masked out by the torch.where below; clamp keeps the intermediate finite
    log_scaled = torch.log(dist.clamp_min(1).float() / exact) / math.log(max_distance / exact) * (half - exact)
    far = (exact + log_scaled.long()).clamp_max(half - 1)
    return offset + torch.where(dist < exact, dist, far)


class RelativePositionBias(nn.Module):
    """One learned scalar per (bucket, head), added to the attention logits."""

    def __init__(self, num_buckets: int, num_heads: int):
        super().__init__()
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, buckets: torch.Tensor) -> torch.Tensor:
        """buckets: [Lq, Lk] int64 -> bias [1, heads, Lq, Lk]."""
        return self.embedding(buckets).permute(2, 0, 1).unsqueeze(0)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, head_dim: int):
        super().__init__()
        self.num_heads = num_heads
        width = num_heads * head_dim
        self.q = nn.Linear(dim, width, bias=False)
        self.k = nn.Linear(dim, width, bias=False)
        self.v = nn.Linear(dim, width, bias=False)
        self.o = nn.Linear(width, dim, bias=False)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """x: [B, L, dim]; bias: [B, heads, L, L] additive logits (position bias + key mask) -> [B, L, dim]."""
        q, k, v = (proj(x).unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)   # [B, heads, L, hd]
        return self.o(out.transpose(1, 2).flatten(2))


class GatedFeedForward(nn.Module):
    """fc2(gelu_tanh(gate(x)) * fc1(x))."""

    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, ffn_dim, bias=False), nn.GELU(approximate="tanh"))
        self.fc1 = nn.Linear(dim, ffn_dim, bias=False)
        self.fc2 = nn.Linear(ffn_dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.gate(x) * self.fc1(x))


def _clamp_fp16(x: torch.Tensor) -> torch.Tensor:
    """In float16 an overflow to inf is pulled back just inside the finite range (as Wan and transformers do);
    other dtypes pass unchanged."""
    if x.dtype == torch.float16 and torch.isinf(x).any():
        limit = torch.finfo(torch.float16).max - 1000
        return x.clamp(-limit, limit)
    return x


class UMT5Block(nn.Module):
    def __init__(self, c: UMT5Config):
        super().__init__()
        self.norm1 = RMSNorm(c.dim, c.eps)
        self.attn = SelfAttention(c.dim, c.num_heads, c.head_dim)
        self.norm2 = RMSNorm(c.dim, c.eps)
        self.ffn = GatedFeedForward(c.dim, c.ffn_dim)
        self.pos_embedding = RelativePositionBias(c.num_buckets, c.num_heads)

    def forward(self, x: torch.Tensor, buckets: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x: [B, L, dim]; buckets: [L, L]; key_mask: [B, 1, 1, L] additive (0 or a large negative)."""
        bias = self.pos_embedding(buckets).float() + key_mask                                  # [B, heads, L, L]
        x = _clamp_fp16(x + self.attn(self.norm1(x), bias))
        return _clamp_fp16(x + self.ffn(self.norm2(x)))


class UMT5Encoder(nn.Module):
    def __init__(self, config: UMT5Config):
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.dim)
        self.blocks = nn.ModuleList(UMT5Block(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.dim, config.eps)

    @property
    def dtype(self) -> torch.dtype:
        return self.token_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.token_embedding.weight.device

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids: [B, L] int64; mask: [B, L] bool, True on real tokens (end token included) -> [B, L, dim]
        in the weights' dtype, exactly zero where mask is False. Padded keys are masked out of attention,
        so a prompt's states do not depend on how much padding follows it."""
        if ids.ndim != 2 or mask.shape != ids.shape:
            raise ValueError(f"ids and mask must both be [B, L]; got {tuple(ids.shape)} and {tuple(mask.shape)}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}); got {int(ids.min())}.."
                             f"{int(ids.max())}")
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every row of mask needs at least one real token (the end-of-sequence token counts)")
        buckets = relative_position_buckets(ids.shape[1], self.config.num_buckets, self.config.max_distance,
                                            ids.device)
        key_mask = torch.zeros(mask.shape, dtype=torch.float32, device=ids.device)
        key_mask = key_mask.masked_fill(~mask, torch.finfo(torch.float32).min)[:, None, None, :]
        x = self.token_embedding(ids)
        for block in self.blocks:
            x = block(x, buckets, key_mask)
        return self.norm(x) * mask.unsqueeze(-1).to(x.dtype)
