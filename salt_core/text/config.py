"""Geometry of the tiny text encoder (data). The vocabulary is not here: it travels with the
weights (see io.py), because it is what the embedding rows mean."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class TextEncoderConfig:
    dim: int = 64          # model width
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 128
    text_dim: int = 32     # output width (the DiT's text_dim)
    max_len: int = 32      # longest prompt in words (learned positions)
    eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("dim", "num_layers", "num_heads", "ffn_dim", "text_dim", "max_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"TextEncoderConfig.{name} must be a positive int, got {v!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"TextEncoderConfig: dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if not self.eps > 0:
            raise ValueError(f"TextEncoderConfig.eps must be positive, got {self.eps!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TextEncoderConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"TextEncoderConfig: unknown fields {unknown}; expected a subset of {sorted(known)}")
        return cls(**d)
