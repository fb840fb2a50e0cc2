"""Geometry of the tiny text encoder (data). The vocabulary is not here: it travels with the
weights (see io.py), because it is what the embedding rows mean."""
from __future__ import annotations

import dataclasses

from ..fields import fields_from_dict
from dataclasses import dataclass


@dataclass(frozen=True)
class TextEncoderConfig:
    dim: int = 64          # model width
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 128
    text_dim: int = 32     # output width (the DiT's text_dim)
    max_len: int = 32      # longest prompt in words (learned positions)
    pad_to: int = 0        # encode() zero-pads every output to this many rows (0 = the longest prompt of the
                           # batch), so training batches and single prompts give the DiT the same context length
    eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("dim", "num_layers", "num_heads", "ffn_dim", "text_dim", "max_len"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"TextEncoderConfig.{name} must be a positive int, got {v!r}")
        if not isinstance(self.pad_to, int) or isinstance(self.pad_to, bool) or self.pad_to < 0:
            raise ValueError(f"TextEncoderConfig.pad_to must be an int >= 0, got {self.pad_to!r}")
        if self.pad_to and self.pad_to < self.max_len:
            raise ValueError(f"TextEncoderConfig.pad_to={self.pad_to} must be 0 or >= max_len={self.max_len}")
        if self.dim % self.num_heads:
            raise ValueError(f"TextEncoderConfig: dim={self.dim} is not divisible by num_heads={self.num_heads}")
        if not self.eps > 0:
            raise ValueError(f"TextEncoderConfig.eps must be positive, got {self.eps!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TextEncoderConfig":
        return cls(**fields_from_dict(cls, d))
