"""Random weights of a full-size Wan 2.1 DiT, written straight to a safetensors file one tensor at a time (the
model is never materialised: its shapes come from a meta-device instance), under Self Forcing's flattened trainer
names (`generator.model.<official name>`)."""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch

from salt_core.config import DiTConfig
from salt_core.dit import WanDiT


def _random(name: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """Values of the scale a trained model has: xavier matrices, unit norm gains, small biases and tables."""
    if name.endswith("modulation"):
        return torch.randn(shape, generator=g) / math.sqrt(shape[-1])
    if len(shape) >= 2:
        fan_in, fan_out = math.prod(shape[1:]), shape[0]
        return torch.randn(shape, generator=g) * math.sqrt(2.0 / (fan_in + fan_out))
    if "norm" in name:
        return 1.0 + 0.05 * torch.randn(shape, generator=g)
    return 0.02 * torch.randn(shape, generator=g)


def write_random_dit(path: Path, config: DiTConfig, *, prefix: str = "generator.model.", seed: int = 0) -> int:
    """Write the file; returns the bytes of its tensors. bf16 tensors, names in the model's own order."""
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in WanDiT(config).state_dict().items()}
    header, offset = {}, 0
    for k, shape in shapes.items():
        size = 2 * math.prod(shape)
        header[prefix + k] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    g = torch.Generator().manual_seed(seed)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        for k, shape in shapes.items():
            f.write(_random(k, shape, g).to(torch.bfloat16).view(torch.int16).numpy().tobytes())
    return offset
