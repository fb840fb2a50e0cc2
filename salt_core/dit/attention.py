"""Attention backends: torch SDPA (default), SageAttention and FlashAttention when usable.

A backend is chosen per model (no global switch). When a requested backend cannot serve a call
(not installed, not on CUDA, unsupported dtype, or a dense token mask is given) the call falls back to SDPA
and the fallback is reported once, naming what it fell back from and why.

A FrameMask (latent-frame visibility of the block-causal training forwards) never becomes a token mask: on CUDA
it runs through FlexAttention with a block mask made from the frame table; elsewhere, or when FlexAttention
cannot run (reported once, with the reason), as chunked keys: unmasked calls of the selected backend, one per
group of query frames, against only the allowed key frames.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F

from .frame_attention import chunked_key_attention, flex_frame_attention, flex_unavailable_reason
from .frame_mask import FrameMask

log = logging.getLogger("salt.attention")

BACKENDS = ("sdpa", "sage", "flash")

# q, k, v: [B, heads, L, head_dim]; mask: None, a FrameMask, or a dense [Lq, Lk] bool (True = may attend)
# -> [B, heads, Lq, head_dim]
Mask = Union[None, FrameMask, torch.Tensor]
AttentionFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Mask], torch.Tensor]


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def available_backends() -> list[str]:
    names = ["sdpa"]
    if importlib.util.find_spec("sageattention") is not None:
        names.append("sage")
    if importlib.util.find_spec("flash_attn") is not None or importlib.util.find_spec("flash_attn_interface") is not None:
        names.append("flash")
    return names


class Attention:
    """Callable attention with a selected backend and an explicit, once-per-reason fallback message."""

    def __init__(self, backend: str = "sdpa"):
        if backend not in BACKENDS:
            raise ValueError(f"attention backend {backend!r} is unknown; allowed: {list(BACKENDS)}")
        self.requested = backend
        self._kernel = None
        self._reported: set[tuple[Optional[str], str]] = set()  # (fell back from, reason) already logged
        self._flex_failed: Optional[str] = None  # why FlexAttention is not used on CUDA, once known
        if backend == "sage":
            self._kernel = self._load_sage()
        elif backend == "flash":
            self._kernel = self._load_flash()

    def _fallback(self, reason: str, source: Optional[str] = None, target: str = "'sdpa'") -> None:
        if (source, reason) not in self._reported:
            self._reported.add((source, reason))
            log.warning("attention: falling back from %s to %s: %s", source or repr(self.requested), target, reason)

    def _load_sage(self):
        try:
            from sageattention import sageattn  # type: ignore
        except Exception as e:  # not installed or broken build
            self._fallback(f"sageattention is not importable ({type(e).__name__}: {e})")
            return None

        def run(q, k, v):
            return sageattn(q, k, v, tensor_layout="HND", is_causal=False)

        return run

    def _load_flash(self):
        try:
            from flash_attn_interface import flash_attn_func  # type: ignore  (FlashAttention 3)
        except Exception:
            try:
                from flash_attn import flash_attn_func  # type: ignore  (FlashAttention 2)
            except Exception as e:
                self._fallback(f"flash_attn is not importable ({type(e).__name__}: {e})")
                return None

        def run(q, k, v):
            out = flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            out = out[0] if isinstance(out, tuple) else out
            return out.transpose(1, 2)

        return run

    @property
    def active(self) -> str:
        return self.requested if self._kernel is not None else "sdpa"

    def __call__(self, q, k, v, mask: Mask = None):
        if isinstance(mask, FrameMask):
            return self._frame_masked(q, k, v, mask)
        if mask is not None:
            if self._kernel is not None:
                self._fallback("a mask is needed (block-causal training forward)")
            return sdpa(q, k, v, mask)
        return self._unmasked(q, k, v)

    def _unmasked(self, q, k, v):
        if self._kernel is not None:
            if not q.is_cuda:
                self._fallback(f"tensors are on {q.device.type}, the kernel needs CUDA")
            elif q.dtype not in (torch.float16, torch.bfloat16):
                self._fallback(f"dtype {q.dtype} is not fp16/bf16")
            else:
                return self._kernel(q, k, v)
        return sdpa(q, k, v)

    def _frame_masked(self, q, k, v, mask: FrameMask):
        if mask.allows_everything:
            return self._unmasked(q, k, v)
        if q.is_cuda and self._flex_failed is None:
            self._flex_failed = flex_unavailable_reason()
        if q.is_cuda and self._flex_failed is None:
            try:
                return flex_frame_attention(q, k, v, mask)
            except torch._dynamo.exc.BackendCompilerFailed as e:  # no working compiler for this GPU / build
                self._flex_failed = f"torch.compile of flex_attention failed ({type(e).__name__}: {e})"
        if q.is_cuda:
            self._fallback(self._flex_failed, source="'flex_attention' (frame mask)", target="chunked keys")
        return chunked_key_attention(q, k, v, mask, self._unmasked)
