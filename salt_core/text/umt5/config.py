"""Geometry of a umT5 encoder (data) and the named presets.

umT5-XXL as Wan 2.1 uses it (checked against Wan's t5.py `umt5_xxl`, transformers' UMT5Config and
ComfyUI's umt5_config_xxl.json): 24 layers, d_model 4096, 64 heads of 64, gated-GELU FFN of 10240,
vocabulary rows 256384, 32 relative-position buckets up to distance 128 in EVERY layer (T5 v1.1 shares
one table across layers; umT5 does not), RMS norm eps 1e-6, prompts padded / cut to 512 tokens.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...config import fields_from_dict


@dataclass(frozen=True)
class UMT5Config:
    vocab_size: int = 256384     # embedding rows (the tokenizer may leave the last few unused)
    dim: int = 4096              # d_model
    num_heads: int = 64
    head_dim: int = 64           # d_kv; num_heads * head_dim is the attention width
    ffn_dim: int = 10240         # d_ff
    num_layers: int = 24
    num_buckets: int = 32        # relative position buckets (half per direction)
    max_distance: int = 128      # distances from here on share the last bucket
    eps: float = 1e-6
    text_len: int = 512          # tokens per prompt, end-of-sequence included (Wan's text_len)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "dim", "num_heads", "head_dim", "ffn_dim", "num_layers", "num_buckets",
                     "max_distance", "text_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"UMT5Config.{name} must be a positive int, got {v!r}")
        if self.num_buckets % 4:
            raise ValueError(f"UMT5Config.num_buckets={self.num_buckets} must be a multiple of 4 (two directions, "
                             "each half exact and half log-spaced)")
        if self.max_distance <= self.num_buckets // 4:
            raise ValueError(f"UMT5Config.max_distance={self.max_distance} must exceed num_buckets / 4 = "
                             f"{self.num_buckets // 4} (the last exactly-bucketed distance)")
        if self.text_len < 2:
            raise ValueError(f"UMT5Config.text_len={self.text_len} must leave room for a token and the end token")
        if not self.eps > 0:
            raise ValueError(f"UMT5Config.eps must be positive, got {self.eps!r}")

    @property
    def attn_dim(self) -> int:
        return self.num_heads * self.head_dim

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UMT5Config":
        return cls(**fields_from_dict(cls, d))


UMT5_PRESETS: dict[str, UMT5Config] = {
    "umt5-xxl": UMT5Config(),
    # Tests: every mechanism of the real one (per-layer buckets, log buckets past distance 4, clamping past 16).
    "tiny": UMT5Config(vocab_size=128, dim=32, num_heads=4, head_dim=8, ffn_dim=48, num_layers=2,
                       num_buckets=16, max_distance=16, text_len=64),
}


def umt5_preset(name: str) -> UMT5Config:
    try:
        return UMT5_PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown umT5 preset {name!r}; allowed: {sorted(UMT5_PRESETS)}") from None
