"""Real-size checkpoint files of the released families, written cheaply: the real key names and the real 1.3B / 14B
shapes in each family's own container, holding no weights worth reading.

* Trainer `.pt` (Self Forcing layout): every tensor is a stride-0 view of one bfloat16 scalar, so torch.save
  writes one storage and a 1.3B trainer file is ~90 KB; torch.load(weights_only=True) gives the real shapes back.
* `.safetensors`: a real header (names, dtypes, shapes, offsets, metadata) over a sparse data region (the file
  has its full size but no blocks on disk); nothing past the header is ever read by detection.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import torch

from salt_core.config import dit_preset
from salt_core.dit import WanDiT

SIZES = {"1.3b": "wan2.1-t2v-1.3b", "14b": "wan2.1-t2v-14b"}
_ST_NAMES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.float8_e4m3fn: "F8_E4M3"}


def meta_shapes(size: str) -> dict[str, tuple[int, ...]]:
    """Official names -> shapes of a Wan 2.1 T2V DiT, built on the meta device."""
    with torch.device("meta"):
        model = WanDiT(dit_preset(SIZES[size]))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def linear_weights(size: str) -> set[str]:
    with torch.device("meta"):
        model = WanDiT(dit_preset(SIZES[size]))
    return {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def write_trainer_pt(path: Path, shapes: dict, entries=("generator", "generator_ema"), prefix="model.") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    one = torch.zeros((), dtype=torch.bfloat16)
    state = {prefix + k: one.expand(s) for k, s in shapes.items()}
    torch.save({e: state for e in entries}, path)
    return path


def write_sparse_safetensors(path: Path, tensors: dict, metadata: dict | None = None) -> Path:
    """tensors: name -> (torch dtype, shape). A valid safetensors file whose data region is a hole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": _ST_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return path


def plain(shapes: dict, dtype=torch.bfloat16, prefix: str = "") -> dict:
    return {prefix + k: (dtype, s) for k, s in shapes.items()}


def comfyui_scaled_fp8(size: str) -> dict:
    """ComfyUI's scaled-fp8 layout: Linear weights float8_e4m3fn with a per-layer `scale_weight`, a marker."""
    shapes, linears = meta_shapes(size), linear_weights(size)
    out = {}
    for k, s in shapes.items():
        out[k] = (torch.float8_e4m3fn if k in linears else torch.bfloat16, s)
        if k in linears:
            out[k[: -len("weight")] + "scale_weight"] = (torch.float32, ())
    out["scaled_fp8"] = (torch.float8_e4m3fn, (0,))
    return out


def write_sharded(folder: Path, tensors: dict, shards: int = 6) -> Path:
    """The official 14B release layout: diffusion_pytorch_model-0000N-of-0000M.safetensors + index."""
    names = list(tensors)
    per = math.ceil(len(names) / shards)
    weight_map = {}
    for i in range(shards):
        shard = f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[i * per:(i + 1) * per]}
        write_sparse_safetensors(folder / shard, part)
        weight_map.update({n: shard for n in part})
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def our_header(size: str, sampling) -> dict:
    config = dit_preset(SIZES[size])
    return {"format": "pt", "salt_format": "1", "salt_kind": "dit", "salt_core_version": "test",
            "dit_config": json.dumps(config.to_dict()), "sampling": json.dumps(sampling.to_dict())}
