"""Small building blocks of the Wan DiT: the Linear layer, norms, the timestep sinusoid, adaLN modulation."""
from __future__ import annotations

import math
from typing import Optional

import torch
from einops import rearrange
import torch.nn.functional as F
from torch import nn


class HostCast:
    """The per-call weight casting protocol of ComfyUI's `comfy.ops` layers, which its ModelPatcher drives when a
    model does not fit the device (`--lowvram`, `--novram`, or too little free memory): a layer it leaves in CPU
    memory gets `comfy_cast_weights = True` and from then on brings its weight and bias to the input's device at
    each call, through the callables in `weight_function` / `bias_function` (w -> w'). The attribute names are
    ComfyUI's (it looks them up by name); nothing here imports it. Layers with the flag off and empty lists (the
    default, and everywhere outside ComfyUI) compute as before."""

    def _init_host_cast(self) -> None:
        self.comfy_cast_weights = False
        self.weight_function: list = []
        self.bias_function: list = []

    @property
    def casts_per_call(self) -> bool:
        return self.comfy_cast_weights or bool(self.weight_function) or bool(self.bias_function)


def cast_for_call(t: Optional[torch.Tensor], like: torch.Tensor, dtype: Optional[torch.dtype] = None,
                  functions=()) -> Optional[torch.Tensor]:
    """A layer's tensor `t` on the device of the activation `like` (and in `dtype`), passed through `functions`;
    `t` itself when it is already there and nothing applies."""
    if t is None:
        return None
    t = t.to(device=like.device, dtype=dtype)
    for f in functions:
        t = f(t)
    return t


class Linear(HostCast, nn.Linear):
    """nn.Linear (same parameters, same state dict) that can also hold its weight in another dtype than it
    computes in, and carry weight patches; both are resolved per call, in the input's dtype, so nothing is
    materialised between calls:

        W = weight.to(x.dtype) · scale_weight  +  Σ patch.weight_delta(...)      b = bias + Σ patch bias deltas

    * `weight` may be 8-bit (float8_e4m3fn / float8_e5m2) with an optional fp32 `scale_weight` buffer, a scalar
      `[]` or per output channel `[out, 1]` (ComfyUI's scaled-fp8 layout: stored weight × scale = true weight).
    * `patches`: None or an nn.ModuleList of objects with `add_to_weight(w) -> w'` and `add_to_bias(b) -> b'`
      (LoRA factors, full diffs); their tensors are non-persistent buffers, so `state_dict()` is the base layer's.
    * Host casting (`HostCast`): with ComfyUI's flag set, weight, scale and patches are brought to the input's
      device at each call (the layer's tensors stay where the host left them).
    Without any of these the forward is exactly nn.Linear's.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.register_buffer("scale_weight", None)
        self.patches: Optional[nn.ModuleList] = None
        self._init_host_cast()

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype activations entering this layer should have: the weight's, or for an 8-bit weight the
        bias's (loaders store it in the compute dtype), else bfloat16."""
        if self.weight.dtype.itemsize > 1:
            return self.weight.dtype
        return self.bias.dtype if self.bias is not None else torch.bfloat16

    def effective_weight(self, dtype: torch.dtype, device: Optional[torch.device] = None) -> torch.Tensor:
        """The weight this layer applies, in dtype (on `device`, default: where the weight is): [out, in]."""
        w = self.weight.to(device=device, dtype=dtype)
        if self.scale_weight is not None:
            w = w * self.scale_weight.to(device=w.device, dtype=dtype)
        for patch in self.patches or ():
            w = patch.add_to_weight(w)
        for f in self.weight_function:
            w = f(w)
        return w

    def effective_bias(self, dtype: torch.dtype, device: Optional[torch.device] = None) -> Optional[torch.Tensor]:
        b = self.bias.to(device=device, dtype=dtype) if self.bias is not None else None
        for patch in self.patches or ():
            b = patch.add_to_bias(b)
        for f in self.bias_function:
            b = f(b)
        return b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.patches is None and self.scale_weight is None and self.weight.dtype == x.dtype \
                and not self.casts_per_call:
            return F.linear(x, self.weight, self.bias)
        return F.linear(x, self.effective_weight(x.dtype, x.device), self.effective_bias(x.dtype, x.device))

    def extra_repr(self) -> str:
        extra = f", weight_dtype={self.weight.dtype}" if self.weight.dtype.itemsize == 1 else ""
        if self.scale_weight is not None:
            extra += f", scale_weight={tuple(self.scale_weight.shape)}"
        return super().extra_repr() + extra


def compute_dtype(layer: nn.Module) -> torch.dtype:
    """The activation dtype of a linear layer (ours: its compute_dtype; a plain nn.Linear: its weight's)."""
    return getattr(layer, "compute_dtype", None) or layer.weight.dtype


class RMSNorm(HostCast, nn.Module):
    """Root-mean-square norm over the last dim, computed in float32 (weight name `weight`, as Wan). Its weight is
    used on the input's device (a host may keep it elsewhere: `HostCast`)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self._init_host_cast()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = cast_for_call(self.weight, x, functions=self.weight_function)
        if x.dtype == torch.float32 and w.dtype == torch.float32:
            if torch.is_grad_enabled():
                return F.rms_norm(x, (x.shape[-1],), w, self.eps)
            # Inference: two full-size passes and allocations (ATen's CPU rms_norm makes more).
            r = x.square().mean(-1, keepdim=True).add_(self.eps).rsqrt_()  # [..., 1]
            return (x * r).mul_(w)
        return F.rms_norm(x.float(), (x.shape[-1],), None, self.eps).to(x.dtype) * w


class FP32LayerNorm(HostCast, nn.LayerNorm):
    """LayerNorm evaluated in float32 whatever the input dtype; the result keeps the input dtype. Its affine
    parameters are used on the input's device (`HostCast`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._init_host_cast()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = cast_for_call(self.weight, x, torch.float32, self.weight_function)
        b = cast_for_call(self.bias, x, torch.float32, self.bias_function)
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
    xf = rearrange(x.float(), "b (f t) d -> b f t d", f=frames)
    return rearrange(torch.addcmul(shift.unsqueeze(2), xf, (1.0 + scale).unsqueeze(2)), "b f t d -> b (f t) d")


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
    per_frame = "b (f t) d -> b f t d"
    out = torch.addcmul(rearrange(x, per_frame, f=frames), rearrange(y.float(), per_frame, f=frames), g.unsqueeze(2))
    return rearrange(out, "b f t d -> b (f t) d")


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
