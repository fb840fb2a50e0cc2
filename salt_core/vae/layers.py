"""Building blocks of the Wan 2.1 causal video VAE.

Every temporal layer is *causal* and *streamable*: it consumes a video as a sequence of
chunks and keeps, in a `FeatureCache`, exactly the past frames it still needs. Feeding a
video in one piece or in any split into chunks gives the same result. A fresh cache means
"this chunk starts the video".

Attribute names equal the official Wan 2.1 checkpoint names (`residual.2.weight`,
`resample.1.bias`, `time_conv.weight`, `to_qkv`, `proj`, `gamma`, ...).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.utils import _triple


class FeatureCache:
    """Per-layer temporal state of one stream (one batch of videos being encoded or decoded).

    Holds at most 2 frames per causal conv (at that conv's resolution), so its size is bounded
    by the frame size, not by the video length.
    """

    def __init__(self) -> None:
        self._frames: dict[nn.Module, Tensor] = {}
        self._started: set[nn.Module] = set()
        self._inputs: dict[nn.Module, Tensor] = {}  # a part's last input frames, for windows over the past

    def get(self, layer: nn.Module) -> Tensor | None:
        return self._frames.get(layer)

    def set(self, layer: nn.Module, frames: Tensor) -> None:
        self._frames[layer] = frames

    def first_call(self, layer: nn.Module) -> bool:
        """True the first time `layer` asks in this stream (then records that it has started)."""
        if layer in self._started:
            return False
        self._started.add(layer)
        return True

    def past_inputs(self, part: nn.Module) -> Tensor | None:
        """The input frames `part` kept with `keep_inputs` (None at the start of a stream)."""
        return self._inputs.get(part)

    def keep_inputs(self, part: nn.Module, frames: Tensor) -> None:
        """Keep `part`'s last input frames for the next call of this stream (not zeroed by `start_group`)."""
        self._inputs[part] = frames

    def reset(self) -> None:
        self._frames.clear()
        self._started.clear()
        self._inputs.clear()

    def start_group(self) -> None:
        """Zero every kept past frame (shapes and the started layers stay): the next chunk is computed as if
        nothing but zeros came before it, while the layers still know it is not the video's first frame.
        This is how a temporally local VAE keeps each latent frame's group of pixel frames independent."""
        for layer, frames in self._frames.items():
            self._frames[layer] = torch.zeros_like(frames)

    def nbytes(self) -> int:
        kept = [*self._frames.values(), *self._inputs.values()]
        return sum(t.numel() * t.element_size() for t in kept)


_MKLDNN = torch.backends.mkldnn.is_available()
_INPLACE = True  # without autograd, reuse fresh intermediates (norm scale, SiLU, residual add) in place
CHANNELS_LAST = torch.channels_last_3d


def _mkldnn_ok(x: Tensor) -> bool:
    return _MKLDNN and x.device.type == "cpu" and x.dtype == torch.float32


def fast_layout(x: Tensor) -> Tensor:
    """x: [B, C, T, H, W] in the memory layout the convs run fastest in: channels-last (NDHWC) for CPU
    float32 (oneDNN's native layout: no reorders, and the RMS norm over C becomes an inner-dim reduction);
    x unchanged otherwise. Every layer keeps the layout it is given, so converting once at the entry of
    the encoder / decoder is enough."""
    return x.contiguous(memory_format=CHANNELS_LAST) if _mkldnn_ok(x) else x


def conv3d(x: Tensor, weight: Tensor, bias: Tensor | None, stride, padding) -> Tensor:
    """F.conv3d, but on CPU float32 always through oneDNN (mkldnn).

    PyTorch sends small batch-1 float32 3-D convs to `aten::slow_conv3d_forward` (im2col + gemm), 2-3x
    slower than oneDNN at the sizes of a video VAE; batch >= 2 already takes oneDNN. Same math,
    differentiable (MkldnnConvolutionBackward). The output keeps x's layout (see `fast_layout`).
    """
    if _mkldnn_ok(x):
        if not (x.is_contiguous() or x.is_contiguous(memory_format=CHANNELS_LAST)):
            x = x.contiguous(memory_format=CHANNELS_LAST)
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, padding, stride, (1, 1, 1), 1)
    return F.conv3d(x, weight, bias, stride, padding)


class CausalConv3d(nn.Conv3d):
    """3-D conv that looks only at the present and past frames.

    `padding=(pt, ph, pw)` pads H and W symmetrically and gives each output `2*pt` frames of
    past context: zeros before the start of the video, cached frames of the previous chunk after.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0)
        pad_t, pad_h, pad_w = _triple(padding)
        self.context = 2 * pad_t
        self.spatial_pad = (pad_w, pad_w, pad_h, pad_h)
        self.conv_padding = (0, pad_h, pad_w)  # H and W are padded by the conv itself (no padded copy)

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        # x: [B, C, T, H, W] -> [B, C_out, T', H', W']
        if self.context:
            past = cache.get(self) if cache is not None else None
            x = x if past is None else torch.cat([past.to(x), x], dim=2)
            if cache is not None:
                cache.set(self, x[:, :, -self.context:].clone())  # clone: do not pin the whole chunk
            missing = self.context - (0 if past is None else past.shape[2])
            if missing:
                x = F.pad(x, (0, 0, 0, 0, missing, 0))
        return conv3d(x, self.weight, self.bias, self.stride, self.conv_padding)


class RMSNorm(nn.Module):
    """RMS norm over the channel axis (dim 1): x / ||x|| * sqrt(C) * gamma.

    `spatial_dims` is the number of axes after C: 3 for video [B, C, T, H, W], 2 for images.
    Half-precision inputs are normalised in fp32.
    """

    def __init__(self, dim: int, spatial_dims: int = 3) -> None:
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.ones(dim, *([1] * spatial_dims)))

    def forward(self, x: Tensor) -> Tensor:
        # = F.normalize(x, dim=1) * scale * gamma. F.normalize's strided vector_norm over dim 1 is ~10x
        # slower on CPU than a sum of squares; 1 / max(||x||, 1e-12) = rsqrt(max(||x||^2, 1e-24)).
        xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        inv = xf.square().sum(1, keepdim=True).clamp_min_(1e-24).rsqrt_()  # [B, 1, ...]
        if xf is not x:
            return (xf * inv).to(x.dtype) * (self.scale * self.gamma)
        y = x * inv
        return y.mul_(self.scale * self.gamma) if _INPLACE and not torch.is_grad_enabled() else y * (self.scale * self.gamma)


def _per_frame(fn, x: Tensor) -> Tensor:
    """Apply a 2-D op to every frame. x: [B, C, T, H, W] -> [B, C', T, H', W']."""
    b, _, t = x.shape[:3]
    y = fn(x.transpose(1, 2).flatten(0, 1))  # [(B T), C, H, W]
    return y.unflatten(0, (b, t)).transpose(1, 2)


class Upsample2x(nn.Module):
    """Nearest-exact 2x spatial upsample of images [N, C, H, W] (computed in fp32, as official)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x.float(), scale_factor=(2.0, 2.0), mode="nearest-exact").to(x.dtype)


class Resample(nn.Module):
    """2x spatial down/upsample, optionally with 2x causal temporal down/upsample.

    modes:
      downsample2d / upsample2d: per-frame spatial resampling only.
      downsample3d: frame 0 passes through; then output k >= 1 is a stride-2 conv over
                    frames (2k-2, 2k-1, 2k). T = 1 + 2n -> 1 + n.
      upsample3d:   frame 0 passes through; every later frame becomes 2 frames (a causal
                    conv doubles channels, the halves are interleaved in time). T -> 1 + 2(T-1).
    Upsampling halves the channel count (official Wan 2.1 layout).
    """

    MODES = ("downsample2d", "downsample3d", "upsample2d", "upsample3d")

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"Resample: mode={mode!r}; allowed: {list(self.MODES)}")
        self.mode = mode
        if mode.startswith("upsample"):
            self.resample = nn.Sequential(Upsample2x(), nn.Conv2d(dim, dim // 2, 3, padding=1))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=2))
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, 2 * dim, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        # x: [B, C, T, H, W]
        if self.mode == "upsample3d":
            x = self._upsample_time(x, cache)
        x = _per_frame(self.resample, x)
        if self.mode == "downsample3d":
            x = self._downsample_time(x, cache)
        return x

    def _upsample_time(self, x: Tensor, cache: FeatureCache) -> Tensor:
        # x: [B, C, T, H, W] -> [B, C, 2T (or 2T-1 on the first chunk), H, W]
        head = None
        if cache.first_call(self):
            head, x = x[:, :, :1], x[:, :, 1:]
        if x.shape[2] > 0:
            b, c, t, h, w = x.shape
            y = self.time_conv(x, cache)  # [B, 2C, T, H, W]
            # Frame 2i takes channels [0, C) of conv frame i, frame 2i+1 channels [C, 2C); written into a
            # tensor of y's memory layout (a view/permute/reshape would force a contiguous copy).
            layout = CHANNELS_LAST if y.is_contiguous(memory_format=CHANNELS_LAST) else torch.contiguous_format
            x = torch.empty((b, c, 2 * t, h, w), dtype=y.dtype, device=y.device, memory_format=layout)
            x[:, :, 0::2] = y[:, :c]
            x[:, :, 1::2] = y[:, c:]
        return x if head is None else torch.cat([head, x], dim=2)

    def _downsample_time(self, x: Tensor, cache: FeatureCache) -> Tensor:
        # x: [B, C, T, H, W] -> [B, C, T', H, W]; pending frames wait in the cache for their window
        pending = cache.get(self)
        head = None
        if pending is None:
            head, pending = x[:, :, :1], x
        else:
            pending = torch.cat([pending.to(x), x], dim=2)
        windows = (pending.shape[2] - 1) // 2  # windows of 3 frames at stride 2
        cache.set(self, pending[:, :, 2 * windows:].clone())
        parts = [] if head is None else [head]
        if windows > 0:
            parts.append(self.time_conv(pending[:, :, : 2 * windows + 1]))
        if not parts:  # too few frames for a window yet
            return x[:, :, :0]
        return torch.cat(parts, dim=2)


class ResidualBlock(nn.Module):
    """norm -> SiLU -> causal conv -> norm -> SiLU -> dropout -> causal conv, plus a (1x1x1) shortcut."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            RMSNorm(in_dim), nn.SiLU(), CausalConv3d(in_dim, out_dim, 3, padding=1),
            RMSNorm(out_dim), nn.SiLU(), nn.Dropout(dropout), CausalConv3d(out_dim, out_dim, 3, padding=1),
        )
        self.shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: Tensor, cache: FeatureCache) -> Tensor:
        # x: [B, C_in, T, H, W] -> [B, C_out, T, H, W]
        h = run_streaming(self.residual, x, cache)
        if _INPLACE and not torch.is_grad_enabled():
            return h.add_(self.shortcut(x))  # h is this block's own fresh tensor
        return self.shortcut(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the H*W positions of each frame (no temporal mixing)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = RMSNorm(dim, spatial_dims=2)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        nn.init.zeros_(self.proj.weight)  # block starts as identity, as in the official init

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        # x: [B, C, T, H, W]; cache unused (no temporal state)
        return x + _per_frame(self._attend, x)

    def _attend(self, x: Tensor) -> Tensor:
        # x: [N, C, H, W] with N = B*T
        n, c, h, w = x.shape
        # [N, HW, 3C] with unit stride along channels: SDPA's fused CPU/CUDA kernels need it; with the conv's
        # NCHW output as a strided view it falls back to the math path and builds the HW x HW matrix (1.6 GB
        # per frame at 1280x720).
        qkv = self.to_qkv(self.norm(x)).flatten(2).transpose(1, 2).contiguous()
        q, k, v = qkv.unsqueeze(1).chunk(3, dim=-1)  # each [N, 1, HW, C]
        y = F.scaled_dot_product_attention(q, k, v)  # [N, 1, HW, C]
        return self.proj(y.squeeze(1).transpose(1, 2).reshape(n, c, h, w))


_STREAMING = (CausalConv3d, Resample, ResidualBlock, AttentionBlock)


def run_streaming(layers: nn.Sequential, x: Tensor, cache: FeatureCache) -> Tensor:
    """Run a Sequential, handing the cache to the layers that take one."""
    fresh = False  # x was made by the previous layer here (may be overwritten)
    for layer in layers:
        if fresh and _INPLACE and isinstance(layer, nn.SiLU) and not torch.is_grad_enabled():
            x = F.silu(x, inplace=True)
        else:
            x = layer(x, cache) if isinstance(layer, _STREAMING) else layer(x)
        fresh = isinstance(layer, RMSNorm)
    return x
