"""Model configurations (data, not code) and the named presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

from .fields import fields_from_dict  # noqa: F401  (re-exported: the configs' one home for it)
from .kv_cache import CachePolicy
from .schedules import TimestepConvention


# (field, type, lowest, highest) of a DiTConfig. Wide enough for every Wan 2.1 model (the 14B: dim 5120, 40 layers,
# 40 heads, ffn 13824) with room to spare; narrow enough that a damaged or hostile header cannot make the model,
# the text padding (text_len) or the RoPE tables (rope_max_positions) ask for tens of GB before anything runs.
_DIT_LIMITS: tuple[tuple[str, type, float, float], ...] = (
    ("dim", int, 1, 16384), ("ffn_dim", int, 1, 65536), ("num_heads", int, 1, 256), ("num_layers", int, 1, 256),
    ("in_dim", int, 1, 1024), ("out_dim", int, 1, 1024), ("text_dim", int, 1, 16384), ("text_len", int, 1, 4096),
    ("freq_dim", int, 2, 4096), ("qk_norm", bool, 0, 1), ("cross_attn_norm", bool, 0, 1),
    ("eps", float, 1e-12, 0.1), ("rope_max_positions", int, 1, 65536), ("rope_theta", float, 1.0, 1e9),
)


_KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false"}


def _check_field(name: str, value, kind: type, low: float, high: float) -> None:
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise ValueError(f"DiTConfig: {name}={value!r} must be {_KIND_NAMES[kind]}")
    if kind is not bool and not low <= value <= high:
        raise ValueError(f"DiTConfig: {name}={value!r} is outside the allowed range {low:g}..{high:g}")


def _check_patch_size(value) -> None:
    ok = isinstance(value, (tuple, list)) and len(value) == 3 and all(
        isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 16 for p in value)
    if not ok:
        raise ValueError(f"DiTConfig: patch_size={value!r} must be 3 integers in 1..16 (time, height, width)")


@dataclass(frozen=True)
class DiTConfig:
    """Geometry of a Wan 2.1 text-to-video DiT. Field names follow the official config."""

    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    in_dim: int = 16
    out_dim: int = 16
    text_dim: int = 4096
    text_len: int = 512
    freq_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)
    qk_norm: bool = True
    cross_attn_norm: bool = True
    eps: float = 1e-6
    rope_max_positions: int = 1024
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        _check_patch_size(self.patch_size)
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        for name, kind, low, high in _DIT_LIMITS:
            _check_field(name, getattr(self, name), kind, low, high)
        if self.freq_dim % 2:
            raise ValueError(f"DiTConfig: freq_dim={self.freq_dim} must be even (cosine and sine halves)")
        if self.dim % self.num_heads:
            raise ValueError(f"DiTConfig: dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(f"DiTConfig: head_dim={self.head_dim} must be even and >= 6 for 3-D RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DiTConfig":
        return cls(**fields_from_dict(cls, d))


DIT_PRESETS: dict[str, DiTConfig] = {
    "wan2.1-t2v-1.3b": DiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30),
    "wan2.1-t2v-14b": DiTConfig(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40),
    # Tiny presets: same architecture, sizes for tests and CPU training.
    "tiny": DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, text_len=16),
    "tiny-wide": DiTConfig(dim=128, ffn_dim=256, num_heads=4, num_layers=4, text_dim=32, text_len=16),
    # 3.1 M params: the world teacher's capacity probe (benchmarks/quality/teacher-probes/RESULTS.md)
    "tiny-deep": DiTConfig(dim=192, ffn_dim=384, num_heads=4, num_layers=6, text_dim=32, text_len=16),
}


def dit_preset(name: str) -> DiTConfig:
    try:
        return DIT_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown DiT preset {name!r}; allowed: {sorted(DIT_PRESETS)}") from None


@dataclass(frozen=True)
class SamplingDefaults:
    """What a checkpoint was trained for, stored typed in our checkpoint header so loaders need no guessing.
    User choices at sampling time are applied on top of these (salt_core.sampling.settings), never instead."""

    causal: bool = False
    chunk_frames: int = 3
    shift: float = 5.0
    timesteps: tuple[float, ...] = (1000.0, 750.0, 500.0, 250.0)  # before the shift warp
    transition: str = "renoise"
    integer_timesteps: bool = False  # official Wan truncates t to int; Self Forcing / ComfyUI pass floats
    cache: Optional[CachePolicy] = None  # causal: the KV-cache policy it was trained under (None = not known)
    resolution: Optional[tuple[int, int]] = None  # (height, width) in pixels it was trained at (None = not known)
    train_iterations: int = 0  # optimisation steps the weights were trained for (the sampling grid is `timesteps`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "timesteps", tuple(float(t) for t in self.timesteps))
        if self.resolution is not None:
            if len(self.resolution) != 2 or any(int(v) < 1 for v in self.resolution):
                raise ValueError(f"SamplingDefaults: resolution must be (height, width) > 0, got {self.resolution!r}")
            object.__setattr__(self, "resolution", (int(self.resolution[0]), int(self.resolution[1])))
        if self.cache is not None and not isinstance(self.cache, CachePolicy):
            raise ValueError(f"SamplingDefaults: cache must be a CachePolicy, got {type(self.cache).__name__}")
        if self.cache is not None and not self.causal:
            raise ValueError("SamplingDefaults: a cache policy only applies to causal models (causal=false here)")
        if self.causal and (not isinstance(self.chunk_frames, int) or self.chunk_frames < 1):
            raise ValueError(f"SamplingDefaults: chunk_frames={self.chunk_frames!r} must be a positive integer")

    @property
    def timestep_convention(self) -> TimestepConvention:
        return TimestepConvention(integer=bool(self.integer_timesteps))

    @property
    def context_t(self) -> float:
        """Timestep of the context pass that commits a finished chunk (0 = clean) — the cache policy's."""
        return self.cache.context_t if self.cache is not None else 0.0

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["timesteps"] = list(self.timesteps)
        d["cache"] = self.cache.to_dict() if self.cache is not None else None
        d["resolution"] = list(self.resolution) if self.resolution is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SamplingDefaults":
        d = dict(d)
        legacy_context_t = float(d.pop("context_t", 0.0) or 0.0)  # headers before the typed cache policy
        d = fields_from_dict(cls, d)
        cache = d.get("cache")
        if isinstance(cache, dict):
            d["cache"] = CachePolicy.from_dict(cache)
        elif cache is None and d.get("causal") and legacy_context_t:
            d["cache"] = CachePolicy(context_t=legacy_context_t)
        return cls(**d)
