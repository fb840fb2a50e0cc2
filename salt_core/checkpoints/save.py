"""Our checkpoint format: safetensors with official key names and a small header, written atomically.

Header (safetensors `__metadata__`, all strings):
    salt_format        "1"
    salt_kind          "dit" | "vae"
    dit_config         DiTConfig JSON            (kind "dit")
    sampling           SamplingDefaults JSON     (kind "dit")
    vae_config         VAEConfig JSON            (kind "vae")
    salt_core_version  version of the writer
    plus any extra_metadata (string values; other values JSON-encoded).
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from .. import __version__
from ..config import DiTConfig, SamplingDefaults
from ..atomic import atomic_write  # noqa: F401  (re-exported)

SALT_FORMAT_VERSION = 1
RESERVED_METADATA = ("salt_format", "salt_kind", "dit_config", "sampling", "vae_config", "salt_core_version", "format")


def _write_safetensors(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str]) -> None:
    """The serialiser (a seam: tests replace it to fail midway)."""
    from safetensors.torch import save_file

    save_file(tensors, path, metadata=metadata)


def _unwrap(model: nn.Module) -> nn.Module:
    """DDP (.module) / torch.compile (._orig_mod) wrappers -> the model itself."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _cpu_tensors(model: nn.Module, dtype: Optional[torch.dtype]) -> dict[str, torch.Tensor]:
    patched = [n for n, m in model.named_modules() if getattr(m, "patches", None)]
    if patched:
        raise ValueError(f"cannot save: {len(patched)} layers carry unmerged LoRA patches (e.g. {patched[0]!r}), "
                         "which the state dict does not hold; call salt_core.lora.merge_lora(model) first")
    out = {}
    for name, t in model.state_dict().items():
        if t.is_meta:
            raise ValueError(f"cannot save: parameter {name!r} is on the meta device (no data)")
        t = t.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        out[name] = t.contiguous()
    return out


def _metadata(kind: str, fields: dict[str, Any], extra: Optional[Mapping[str, Any]]) -> dict[str, str]:
    meta = {"format": "pt", "salt_format": str(SALT_FORMAT_VERSION), "salt_kind": kind,
            "salt_core_version": __version__}
    meta.update({k: json.dumps(v, sort_keys=True) for k, v in fields.items()})
    for key, value in (extra or {}).items():
        if key in RESERVED_METADATA:
            raise ValueError(f"extra_metadata key {key!r} is reserved; reserved keys: {list(RESERVED_METADATA)}")
        meta[str(key)] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return meta


def _save(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    return atomic_write(path, lambda tmp: _write_safetensors(tensors, tmp, metadata))


def save_dit(path: str | os.PathLike, model: nn.Module, sampling: SamplingDefaults, *,
             extra_metadata: Optional[Mapping[str, Any]] = None, dtype: Optional[torch.dtype] = None) -> str:
    """Write a WanDiT (official names) + header to path atomically; returns the absolute path.

    dtype: cast floating tensors on the way out (e.g. torch.bfloat16); None keeps the model's."""
    model = _unwrap(model)
    config = getattr(model, "config", None)
    if not isinstance(config, DiTConfig):
        raise TypeError(f"save_dit needs a WanDiT (with a DiTConfig .config), got {type(model).__name__}")
    if not isinstance(sampling, SamplingDefaults):
        raise TypeError(f"sampling must be a SamplingDefaults, got {type(sampling).__name__}")
    tensors = _cpu_tensors(model, dtype)
    meta = _metadata("dit", {"dit_config": config.to_dict(), "sampling": sampling.to_dict()}, extra_metadata)
    return _save(path, tensors, meta)


def save_vae(path: str | os.PathLike, model: nn.Module, *, extra_metadata: Optional[Mapping[str, Any]] = None,
             dtype: Optional[torch.dtype] = None) -> str:
    """Write a WanVAE (official names) + header (its VAEConfig, latent statistics included) atomically."""
    from ..vae import VAEConfig

    model = _unwrap(model)
    config = getattr(model, "config", None)
    if not isinstance(config, VAEConfig):
        raise TypeError(f"save_vae needs a WanVAE (with a VAEConfig .config), got {type(model).__name__}")
    tensors = _cpu_tensors(model, dtype)
    return _save(path, tensors, _metadata("vae", {"vae_config": config.to_dict()}, extra_metadata))
