"""Model configurations (data, not code) and the named presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


def fields_from_dict(cls, d: dict) -> dict:
    """Check that d names only fields of the dataclass cls; a clear error lists the unknown ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {unknown}; expected a subset of {sorted(known)}")
    return dict(d)


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
}


def dit_preset(name: str) -> DiTConfig:
    try:
        return DIT_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown DiT preset {name!r}; allowed: {sorted(DIT_PRESETS)}") from None


@dataclass(frozen=True)
class SamplingDefaults:
    """What a checkpoint was trained for; stored in our checkpoint header so loaders need no guessing."""

    causal: bool = False
    chunk_frames: int = 3
    shift: float = 5.0
    timesteps: tuple[float, ...] = (1000.0, 750.0, 500.0, 250.0)  # before the shift warp
    transition: str = "renoise"
    context_t: float = 0.0
    integer_timesteps: bool = False  # official Wan truncates t to int; Self Forcing / ComfyUI pass floats
    train_iterations: int = 0  # optimisation steps the weights were trained for (the sampling grid is `timesteps`)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["timesteps"] = list(self.timesteps)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SamplingDefaults":
        d = fields_from_dict(cls, d)
        if "timesteps" in d:
            d["timesteps"] = tuple(float(t) for t in d["timesteps"])
        return cls(**d)
