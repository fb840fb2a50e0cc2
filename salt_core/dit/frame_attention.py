"""Attention under a FrameMask, without a token mask: chunked keys (everywhere) and FlexAttention (CUDA).

Chunked keys: each query group runs unmasked attention of its query tokens against only its allowed key tokens
(views when they are contiguous, gathered otherwise). Memory is the output plus one group's keys and scores, never
L x L booleans, and every call is an unmasked one, so any fast kernel can serve it. Under autograd the gathered
keys of a group are kept for its backward (model.gradient_checkpointing bounds that to one block).

FlexAttention: one block-sparse kernel over the whole sequence, with the BlockMask built from the frame table;
the kernel is compiled by torch.compile once per shape.
"""
from __future__ import annotations

import importlib.util
from typing import Callable, Optional

import torch

from .frame_mask import FrameMask, take

# q, k, v: [B, heads, L, head_dim] -> [B, heads, Lq, head_dim], no mask
UnmaskedFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

FLEX_BLOCK_SIZE = 128  # FlexAttention's default tile on CUDA


def chunked_key_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: FrameMask,
                          attend: UnmaskedFn) -> torch.Tensor:
    """q, k, v: [B, heads, L, head_dim], L = mask.tokens -> [B, heads, L, head_dim]."""
    check_length(q, k, mask)
    if len(mask.groups) == 1:  # one group holds every query frame: no copy into an output buffer
        g = mask.groups[0]
        return attend(q, take(k, g.keys), take(v, g.keys))
    if mask.query_split is not None and torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v)):
        # Under autograd: q split once, results concatenated; their backward is one cat and one split, where a
        # slice per group would pad its query gradient to full length (measured: less memory and time).
        rows = q.split(mask.query_split, dim=2)
        return torch.cat([attend(r, take(k, g.keys), take(v, g.keys)) for r, g in zip(rows, mask.groups)], dim=2)
    # Each group's result goes straight into its rows (the groups partition the query frames), so at most one
    # group's result exists besides the output.
    out = q.new_empty(*q.shape[:3], v.shape[-1])  # [B, heads, L, head_dim]
    for g in mask.groups:
        result = attend(take(q, g.queries), take(k, g.keys), take(v, g.keys))
        if isinstance(g.queries, slice):
            out[:, :, g.queries] = result
        else:
            out.index_copy_(2, g.queries, result)
        del result
    return out


def check_length(q: torch.Tensor, k: torch.Tensor, mask: FrameMask) -> None:
    if q.shape[2] != mask.tokens or k.shape[2] != mask.tokens:
        raise ValueError(
            f"a frame mask of {mask.frames} frames x {mask.tokens_per_frame} tokens covers {mask.tokens} tokens, "
            f"got {q.shape[2]} queries and {k.shape[2]} keys")


def flex_unavailable_reason() -> Optional[str]:
    """Why FlexAttention cannot run on CUDA here, or None when it can be tried."""
    try:
        from torch.nn.attention.flex_attention import BlockMask, flex_attention  # noqa: F401
    except Exception as e:  # an older torch, or a broken build
        return f"torch.nn.attention.flex_attention is not importable ({type(e).__name__}: {e})"
    if importlib.util.find_spec("triton") is None:
        return "triton is not importable (FlexAttention compiles Triton kernels on CUDA)"
    return None


_compiled_flex = None


def compiled_flex_attention():
    """torch.compile(flex_attention), made once per process; torch.compile specialises it per shape."""
    global _compiled_flex
    if _compiled_flex is None:
        from torch.nn.attention.flex_attention import flex_attention

        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex


def flex_frame_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: FrameMask, kernel=None,
                         block_size: int = FLEX_BLOCK_SIZE) -> torch.Tensor:
    """q, k, v: [B, heads, L, head_dim] -> [B, heads, L, head_dim] through FlexAttention with mask's BlockMask.

    kernel: the flex_attention function to call (default: the compiled one; tests pass the eager one)."""
    check_length(q, k, mask)
    kernel = compiled_flex_attention() if kernel is None else kernel
    return kernel(q, k, v, block_mask=mask.block_mask(block_size))
