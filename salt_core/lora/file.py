"""Reading a LoRA / adapter file: its tensors, and rank / alpha settings stored beside it.

Accepted containers: a `.safetensors` file (kohya, ComfyUI, diffusers, PEFT `adapter_model.safetensors`),
a PEFT folder (`adapter_model.safetensors` or `.bin` with `adapter_config.json`), and `.pt/.pth/.bin`
files read with `torch.load(weights_only=True)` only, including LongLive's `lora.pt`
(`{"generator_lora": {...}, "critic_lora": {...}, "step": n}`: the generator's adapter is used).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch

from ..checkpoints.detect import unwrap_container
from ..checkpoints.io import CheckpointError, load_torch_file, open_checkpoint
from ..checkpoints.storage import has_nonfinite, listing

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TRAINER_ADAPTERS = ("generator_lora", "critic_lora")  # LongLive / Self Forcing trainers with LoRA


@dataclass(frozen=True)
class PeftSettings:
    """What adapter_config.json says about scaling (rank itself is read from the tensors)."""

    alpha: Optional[float] = None  # lora_alpha
    rank: Optional[int] = None  # r
    alpha_pattern: dict[str, float] = field(default_factory=dict)  # module-name suffix -> alpha
    use_rslora: bool = False  # scale alpha / sqrt(rank) instead of alpha / rank


@dataclass(frozen=True)
class LoraFile:
    path: str
    tensors: dict[str, torch.Tensor]  # source key -> tensor
    settings: PeftSettings = PeftSettings()
    notes: tuple[str, ...] = ()


def _fail(path: str, msg: str) -> CheckpointError:
    return CheckpointError(f"{path}: {msg}")


def _resolve(path: str) -> str:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such LoRA file")
    if not os.path.isdir(path):
        return path
    for name in PEFT_WEIGHTS:
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    singles = sorted(e for e in os.listdir(path) if e.endswith(".safetensors"))
    if len(singles) == 1:
        return os.path.join(path, singles[0])
    raise _fail(path, f"a LoRA folder must hold {' or '.join(PEFT_WEIGHTS)} or one .safetensors file; "
                      f"found {singles or 'none'}")


def _read_settings(folder: str) -> tuple[PeftSettings, list[str]]:
    cfg_path = os.path.join(folder, PEFT_CONFIG)
    if not os.path.isfile(cfg_path):
        return PeftSettings(), []
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
        if not isinstance(cfg, dict):
            raise ValueError("not a JSON object")
        if cfg.get("use_dora"):
            raise _fail(cfg_path, "a DoRA adapter (use_dora: true); only plain LoRA is supported")
        alpha = cfg.get("lora_alpha")
        rank = cfg.get("r")
        settings = PeftSettings(
            alpha=None if alpha is None else float(alpha),
            rank=None if rank is None else int(rank),
            alpha_pattern={str(k): float(v) for k, v in (cfg.get("alpha_pattern") or {}).items()},
            use_rslora=bool(cfg.get("use_rslora", False)),
        )
    except CheckpointError:
        raise
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise _fail(cfg_path, f"unreadable PEFT adapter config ({e}); expected JSON with 'r' and 'lora_alpha'") from None
    return settings, [f"rank / alpha from {cfg_path}: r={settings.rank}, lora_alpha={settings.alpha}"]


def _torch_tensors(path: str, notes: list[str]) -> dict[str, torch.Tensor]:
    obj: Any = load_torch_file(path)
    if isinstance(obj, Mapping) and any(k in obj for k in TRAINER_ADAPTERS):
        if "generator_lora" not in obj:
            raise _fail(path, f"a trainer LoRA checkpoint without 'generator_lora' (entries: {sorted(map(str, obj))})")
        others = sorted(str(k) for k in obj if k != "generator_lora")
        notes.append(f"trainer LoRA checkpoint: using 'generator_lora' (ignored: {others})")
        obj = obj["generator_lora"]
    tensors, _, more = unwrap_container(obj, source=path)
    notes += more
    return tensors


def read_lora(path: str | os.PathLike) -> LoraFile:
    """Read every tensor of a LoRA file (small: factors only) and the PEFT settings beside it."""
    path = _resolve(os.fspath(path))
    notes: list[str] = []
    settings, more = _read_settings(os.path.dirname(path) or ".")
    notes += more
    with open(path, "rb") as f:
        head = f.read(9)
    if head[8:9] == b"{":  # safetensors
        with open_checkpoint(path) as reader:
            tensors = {k: reader.read(k) for k in reader.infos}
    else:
        tensors = _torch_tensors(path, notes)
    if not tensors:
        raise _fail(path, "holds no tensors")
    bad = [f"{k} ({t.dtype})" for k, t in tensors.items() if not t.is_floating_point()]
    if bad:
        raise _fail(path, f"expected floating-point LoRA tensors; found {bad[:10]}")
    nonfinite = [k for k, t in tensors.items() if has_nonfinite(t)]
    if nonfinite:
        raise _fail(path, "LoRA tensors holding NaN or inf; nothing was applied." + listing("tensors", nonfinite))
    return LoraFile(path, tensors, settings, tuple(notes))
