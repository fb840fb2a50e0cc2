"""What autograd keeps for one WanDiT forward: the per-block activation formula of the memory plan.

Counted from the tensors our `WanBlock` / `WanDiT.forward` save for backward (autograd's saved-tensor
hooks, storages deduplicated, parameters excluded; `tests/test_plan.py` checks the formula against those
hooks). Per sample, for L query tokens of width D, FFN width F, H heads, Lc prompt tokens, Lk attended keys:

fp32 (CPU, or CUDA without autocast), per block:
    (20 + 2u)·L·D + 2·L·F + 9·L + 2·H·L floats, + 3·Lc·D + Lc for the prompt K/V of the layer;
bf16 autocast (CUDA `run.precision` auto/bf16), per block:
    14·L·D bf16 + (8 + 2u)·L·D fp32 + 2·L·F bf16 + (9·L + 2·H·L) fp32, + prompt K/V (3·Lc·D bf16).
u = 1 when the adaLN modulation is not fused into the LayerNorm (batch > 1 or per-frame timesteps).
With a KV cache (causal chunks) the attention saves the concatenated keys and values of all Lk tokens
instead of the chunk's own two L·D. Outside the blocks: the patch tokens, the head's input (2 + u)·L·D,
the RoPE table of the forward (L·head_dim/2 complex64) and the prompt MLP.
Under autocast every linear also keeps its bf16 weight copy: once per trainable network (autocast caches
the cast of leaf weights for the whole forward), once per forward for a frozen network whose input needs
gradient (no cache for frozen weights, each linear saves its cast).
Gradient checkpointing keeps only each block's input (L·D fp32) plus the prompt K/V, and recomputes one
block at a time in backward.
"""
from __future__ import annotations

from dataclasses import dataclass

from salt_core.config import DiTConfig

FP32, BF16 = 4, 2


@dataclass(frozen=True)
class Shape:
    """One forward: L query tokens per sample, Lk attended keys (= L without a cache), batch b."""

    tokens: int
    keys: int
    batch: int = 1
    fused: bool = True  # adaLN fused into the LayerNorm: batch 1 and one timestep per sample


def block_bytes(c: DiTConfig, s: Shape, bf16: bool, prompt_tokens: int) -> int:
    """Saved bytes of one block's forward (all samples of the micro-batch)."""
    L, Lk, D, F = s.tokens, s.keys, c.dim, c.ffn_dim
    u = 0 if s.fused else 1
    small = FP32 * (9 * L + 2 * c.num_heads * L)
    if bf16:
        tokens = BF16 * (14 * L * D + 2 * L * F + 2 * (Lk - L) * D) + FP32 * (8 + 2 * u) * L * D
        prompt = BF16 * 3 * prompt_tokens * D
    else:
        tokens = FP32 * ((20 + 2 * u) * L * D + 2 * L * F + 2 * (Lk - L) * D)
        prompt = FP32 * (3 * prompt_tokens * D + prompt_tokens)
    return s.batch * (tokens + small + prompt)


def outside_bytes(c: DiTConfig, s: Shape, bf16: bool, prompt_tokens: int) -> int:
    """Saved bytes outside the blocks: patch embedding input, head input, RoPE table, prompt MLP."""
    L, D = s.tokens, c.dim
    u = 0 if s.fused else 1
    patch = c.in_dim * c.patch_size[0] * c.patch_size[1] * c.patch_size[2]
    rope = L * (c.head_dim // 2) * 8  # complex64, shared by every block and sample
    text = prompt_tokens * (c.text_dim + 3 * D)
    if bf16:
        per_sample = BF16 * (L * patch + L * D + text) + FP32 * (1 + u) * L * D
    else:
        per_sample = FP32 * (L * patch + (2 + u) * L * D + 2 * L + text)
    return s.batch * per_sample + rope


def forward_bytes(c: DiTConfig, s: Shape, *, bf16: bool, checkpointing: bool, prompt_tokens: int,
                  layers: int = 0) -> int:
    """Saved bytes of a whole forward with graph (`layers` = blocks run; 0 = all)."""
    n = layers or c.num_layers
    out = outside_bytes(c, s, bf16, prompt_tokens)
    if checkpointing:
        prompt = (BF16 if bf16 else FP32) * 3 * prompt_tokens * c.dim
        return out + n * s.batch * (FP32 * s.tokens * c.dim + prompt)
    return out + n * block_bytes(c, s, bf16, prompt_tokens)


def working_bytes(c: DiTConfig, s: Shape, bf16: bool) -> int:
    """Live bytes inside one block of a no-grad forward (residual, q/k/v, attention output, FFN hidden),
    also the order of one block's backward workspace."""
    L, D, F = s.tokens, c.dim, c.ffn_dim
    if bf16:
        return s.batch * (FP32 * 2 * L * D + BF16 * (4 * L * D + 2 * L * F + 2 * (s.keys - L) * D))
    return s.batch * FP32 * (6 * L * D + 2 * L * F + 2 * (s.keys - L) * D)
