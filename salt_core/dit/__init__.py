"""The Wan 2.1 DiT: one set of weights, bidirectional and block-causal (KV-cached) modes."""
from .model import WanDiT

__all__ = ["WanDiT"]
