"""8-bit float weights: quantising a DiT's Linear weights, and ComfyUI's scaled-fp8 file layout.

Storage kept 8-bit, compute in the activation dtype: `salt_core.dit.layers.Linear` casts its weight per
call (`weight.to(x.dtype) · scale_weight`), so an fp8 model holds 1 byte per Linear weight and one
transient layer-sized copy at a time.

ComfyUI's scaled-fp8 layout (comfy/ops.py `scaled_fp8_ops`, comfy/model_detection.py):
* a marker tensor `scaled_fp8` (empty; its dtype names the 8-bit dtype, float32 meaning float8_e4m3fn);
* for each 8-bit Linear `<layer>.weight`, a float32 `<layer>.scale_weight`, usually a scalar `[]`;
  the true weight is `weight.to(compute) * scale_weight` (the stored weight was divided by it);
* optionally `<layer>.scale_input`, used only by ComfyUI's fp8-matmul path (the input is divided by it
  before an fp8 GEMM); with the weight cast to the compute dtype it plays no part.
Only Linear layers are scaled there; norms, modulation tables and the patch embedding stay 16/32-bit.

`model.to(dtype)` casts 8-bit weights like any other (the layer stays correct: its scale still applies per
call); keep dtype changes for the compute dtype to `load_dit(..., compute_dtype=...)`.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

FP8_DTYPES: tuple[torch.dtype, ...] = tuple(
    getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))
SCALED_FP8_MARKER = "scaled_fp8"
SCALE_WEIGHT = "scale_weight"
SCALE_INPUT = "scale_input"


def is_8bit(dtype: torch.dtype) -> bool:
    return dtype.is_floating_point and dtype.itemsize == 1


def block_linears(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of the Linear layers inside the transformer blocks: the weights 8-bit files quantise
    (attention q/k/v/o and the FFN; 99% of a Wan DiT's Linear parameters)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and name.startswith("blocks."):
            yield name, module


def quantize_weight(w: torch.Tensor, dtype: torch.dtype = FP8_DTYPES[0], *, scaled: bool = True,
                    per_channel: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """w: [out, in] -> (8-bit weight, float32 scale or None) with weight.float() * scale ≈ w.

    scaled: divide by amax / max-representable first (per tensor `[]`, or per output channel `[out, 1]`),
    so the largest entry uses the top of the 8-bit range; unscaled values are clamped into it."""
    if dtype not in FP8_DTYPES:
        raise ValueError(f"dtype must be one of {list(FP8_DTYPES)}, got {dtype}")
    top = torch.finfo(dtype).max
    w = w.detach().float()
    if not scaled:
        return w.clamp(-top, top).to(dtype), None
    amax = w.abs().amax(dim=1, keepdim=True) if per_channel else w.abs().amax()
    scale = torch.where(amax > 0, amax / top, torch.ones_like(amax))
    return (w / scale).clamp(-top, top).to(dtype), scale.to(torch.float32)


def quantize_linears_(model: nn.Module, dtype: torch.dtype = FP8_DTYPES[0], *, scaled: bool = True,
                      per_channel: bool = False) -> nn.Module:
    """In place: store every block Linear weight of model 8-bit (our Linear layers: they cast per call).
    Biases and every other tensor keep their dtype, which becomes the compute dtype of those layers."""
    for name, layer in block_linears(model):
        if not hasattr(layer, SCALE_WEIGHT):
            raise TypeError(f"{name} is a {type(layer).__name__}; 8-bit storage needs salt_core.dit.layers.Linear")
        q, scale = quantize_weight(layer.weight, dtype, scaled=scaled, per_channel=per_channel)
        layer.weight = nn.Parameter(q.to(layer.weight.device), requires_grad=False)
        layer.scale_weight = None if scale is None else scale.to(layer.weight.device)
    return model


def comfyui_fp8_state_dict(model: nn.Module, dtype: torch.dtype = FP8_DTYPES[0], *, scaled: bool = True,
                           prefix: str = "model.diffusion_model.") -> dict[str, torch.Tensor]:
    """A float model's state dict in ComfyUI's fp8 file layout: block Linear weights 8-bit (+ per-tensor
    `scale_weight` and the `scaled_fp8` marker when scaled), every other tensor as it is."""
    quantized = dict(block_linears(model))
    out: dict[str, torch.Tensor] = {}
    for name, t in model.state_dict().items():
        module, _, leaf = name.rpartition(".")
        t = t.detach().cpu()
        if leaf == "weight" and module in quantized:
            q, scale = quantize_weight(t, dtype, scaled=scaled)
            out[prefix + name] = q
            if scale is not None:
                out[f"{prefix}{module}.{SCALE_WEIGHT}"] = scale
        else:
            out[prefix + name] = t.contiguous()
    if scaled:
        out[prefix + SCALED_FP8_MARKER] = torch.tensor([], dtype=dtype)
    return out


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes held by the weights (and weight scales) of every Linear layer."""
    total = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
            scale = getattr(module, SCALE_WEIGHT, None)
            if scale is not None:
                total += scale.numel() * scale.element_size()
    return total
