"""Applying LoRA adapters to a WanDiT: on the fly by default, merged on request.

Choice: a LoRA'd model is a new WanDiT that shares every base tensor with the input model; each patched
Linear gets its factors as a weight patch and computes `W + s·up@down` (one fused addmm) at each call.
* Memory: the factors only, rank·(in+out) values per layer, plus one transient layer-sized weight during a
  call. LongLive's rank-256 adapter on every block Linear of the 1.3B is 350M values (25% of the base; 0.65 GiB
  in bf16), a rank-32 style LoRA 3%; a merged copy would instead hold a second set of every patched weight
  (1.39B values) while the original lives. `load_dit(..., lora=...)` owns its model, so it merges in place and
  ends with no extra memory at all.
* 8-bit base weights stay 8-bit: the update is added after the per-call cast and never rounded to 8 bits.
  (ComfyUI's ModelPatcher merges into an fp32 copy of each weight when it moves the model to the device, keeps
  a backup of the original, and rounds the result back to the weight's dtype, stochastically for fp8: a small
  update survives only on average, under the rounding noise of a 3-bit mantissa.)
* Strength changes and stacking are free: another `apply_lora` on the original, or on the result (patches add).
* Cost: per call an extra out·in·rank multiply-add per patched layer, rank/tokens of the layer's own work
  (rank 256 on a 3-frame 832×480 chunk of 4,680 tokens: 5%).
`merge_lora` folds the patches into the weights when a model keeps one adapter for good (faster calls; the
merged layers hold the compute dtype). Full diffs on non-Linear tensors (norms, modulation tables, the patch
embedding) are added into a new tensor of the copy at once: they are small.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import nn

from ..checkpoints.io import CheckpointError
from ..checkpoints.storage import listing
from .file import LoraFile, read_lora
from .names import is_text_encoder_key, resolve_module, split_part, target_table, unsupported_kind
from .patches import DiffPatch, LowRankPatch

LoraSource = Union[str, os.PathLike, LoraFile]


@dataclass(frozen=True)
class Target:
    """What one adapter does to one module: low-rank factors and / or full diffs (source keys)."""

    module: str  # official name
    down: Optional[str] = None
    up: Optional[str] = None
    alpha: Optional[str] = None
    diff: Optional[str] = None
    diff_b: Optional[str] = None


def _fail(path: str, msg: str) -> CheckpointError:
    return CheckpointError(f"{path}: {msg}")


def _group(lora: LoraFile, table: dict[str, str]) -> tuple[dict[str, dict[str, str]], list[str]]:
    groups: dict[str, dict[str, str]] = {}
    unknown, unsupported, notes = [], [], []
    text_keys = [k for k in lora.tensors if is_text_encoder_key(k)]
    if text_keys:
        notes.append(f"ignored {len(text_keys)} text-encoder keys (e.g. {text_keys[0]!r}): only the DiT is patched")
    for key in lora.tensors:
        if key in text_keys:
            continue
        what = unsupported_kind(key)
        if what:
            unsupported.append(f"{key}  ({what})")
            continue
        split = split_part(key)
        module = resolve_module(split[0], table) if split else None
        if module is None:
            unknown.append(key)
            continue
        parts = groups.setdefault(module, {})
        if split[1] in parts:
            raise _fail(lora.path, f"keys {parts[split[1]]!r} and {key!r} both patch {module!r}")
        parts[split[1]] = key
    if unsupported:
        raise _fail(lora.path, "uses adapter kinds that are not supported (only LoRA up/down factors, alpha and "
                               "full .diff / .diff_b patches are); nothing was applied." + listing("keys", unsupported))
    if unknown:
        hint = ""
        if len(unknown) == len(lora.tensors) - len(text_keys):
            hint = " None of its keys names a Wan 2.1 DiT layer: it is probably for another model family."
            if all(split_part(k) is None for k in unknown):
                hint = (" None of its keys is a LoRA part (lora_A / lora_down / .alpha / .diff ...): it holds plain "
                        "weights, a full model (load it as a model), not a LoRA.")
        raise _fail(lora.path, f"keys that match no layer of the Wan 2.1 DiT; nothing was applied.{hint}"
                    + listing("unmatched keys", unknown))
    return groups, notes


def _scale(lora: LoraFile, t: Target, rank: int, alpha: Optional[float]) -> float:
    s = lora.settings
    if alpha is None and t.alpha is not None:
        alpha = float(lora.tensors[t.alpha].float().reshape(-1)[0])
    if alpha is None:
        alpha = next((a for k, a in s.alpha_pattern.items() if t.module == k or t.module.endswith("." + k)), s.alpha)
    if alpha is None:
        return 1.0  # no alpha anywhere: the factors are taken as they are (alpha = rank), as ComfyUI does
    return alpha / (math.sqrt(rank) if s.use_rslora else rank)


def _check_low_rank(lora: LoraFile, t: Target, shape: torch.Size) -> None:
    if t.down is None or t.up is None:
        have, lack = (t.down, "up") if t.up is None else (t.up, "down")
        raise _fail(lora.path, f"{have!r} has no matching {lack} factor for {t.module!r}")
    down, up = lora.tensors[t.down], lora.tensors[t.up]
    rank = down.shape[0] if down.ndim >= 2 else 0
    ok = (rank > 0 and up.ndim == down.ndim and up.shape[:2] == (shape[0], rank) and up.numel() == shape[0] * rank
          and down.numel() == rank * math.prod(shape[1:]))
    if not ok:
        raise _fail(lora.path, f"{t.up!r} {tuple(up.shape)} @ {t.down!r} {tuple(down.shape)} does not make the "
                               f"shape {tuple(shape)} of {t.module!r} (a LoRA for another model size?)")


def _check_diff(lora: LoraFile, key: str, name: str, shape) -> None:
    if tuple(lora.tensors[key].shape) != tuple(shape):
        raise _fail(lora.path, f"{key!r} has shape {tuple(lora.tensors[key].shape)}; "
                               f"{name!r} of the model has {tuple(shape)}")


def match_lora(lora: LoraFile, model: nn.Module) -> tuple[list[Target], list[str]]:
    """Which module each key patches, every shape checked -> (targets, notes). Works on a meta model."""
    params = dict(model.named_parameters())
    groups, notes = _group(lora, target_table(params))
    targets = []
    for module, parts in groups.items():
        t = Target(module, **parts)
        weight = f"{module}.weight" if f"{module}.weight" in params else module
        if t.down or t.up:
            _check_low_rank(lora, t, params[weight].shape)
        elif t.alpha and not (t.diff or t.diff_b):
            raise _fail(lora.path, f"{t.alpha!r} has no LoRA factors beside it")
        if t.diff:
            _check_diff(lora, t.diff, weight, params[weight].shape)
        if t.diff_b:
            if f"{module}.bias" not in params:
                raise _fail(lora.path, f"{t.diff_b!r} patches a bias, but {module!r} has none")
            _check_diff(lora, t.diff_b, f"{module}.bias", params[f"{module}.bias"].shape)
        targets.append(t)
    return targets, [*lora.notes, *notes]


def _copy_sharing_tensors(model: nn.Module) -> nn.Module:
    """A new module tree whose parameters are new Parameter objects over the same storage (moving or
    re-assigning one model's tensors never touches the other's) and whose buffers are the same tensors."""
    memo: dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(p.data, requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = b
    return copy.deepcopy(model, memo)


def _patch_linear(layer: nn.Module, lora: LoraFile, t: Target, strength: float, alpha: Optional[float]) -> None:
    dtype, device = layer.compute_dtype, layer.weight.device
    moved = lambda key: lora.tensors[key].to(device=device, dtype=dtype)  # noqa: E731
    new = list(layer.patches or ())
    if t.down:
        down = lora.tensors[t.down]
        new.append(LowRankPatch(moved(t.up).flatten(1), moved(t.down).flatten(1),
                                strength * _scale(lora, t, down.shape[0], alpha)))
    if t.diff or t.diff_b:
        new.append(DiffPatch(moved(t.diff) if t.diff else None, moved(t.diff_b) if t.diff_b else None, strength))
    layer.patches = nn.ModuleList(new)


def _add_into(model: nn.Module, name: str, delta: torch.Tensor) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_name) if owner_name else model
    old = getattr(owner, leaf)
    value = (old.detach().float() + delta.to(old.device, torch.float32).reshape(old.shape)).to(old.dtype)
    setattr(owner, leaf, nn.Parameter(value, requires_grad=old.requires_grad))


def _patch_tensor(model: nn.Module, lora: LoraFile, t: Target, strength: float, alpha: Optional[float]) -> None:
    params = dict(model.named_parameters())
    weight = f"{t.module}.weight" if f"{t.module}.weight" in params else t.module
    if t.down:
        down, up = lora.tensors[t.down].float(), lora.tensors[t.up].float()
        scale = strength * _scale(lora, t, down.shape[0], alpha)
        _add_into(model, weight, scale * (up.flatten(1) @ down.flatten(1)))
    if t.diff:
        _add_into(model, weight, strength * lora.tensors[t.diff].float())
    if t.diff_b:
        _add_into(model, f"{t.module}.bias", strength * lora.tensors[t.diff_b].float())


def apply_lora(dit: nn.Module, lora: LoraSource, strength: float = 1.0, *, alpha: Optional[float] = None,
               in_place: bool = False) -> nn.Module:
    """A new model: dit with the adapter applied at strength (dit itself is untouched; they share storage).

    lora: a file (see salt_core.lora.file) or a LoraFile. alpha: overrides the file's / adapter_config's alpha
    (scale = strength · alpha / rank; without any alpha the factors apply as they are). in_place: patch dit
    itself and return it (for a model nothing else uses: a later merge_lora then frees each old weight)."""
    if not math.isfinite(strength):
        raise ValueError(f"strength must be a finite number, got {strength}")
    lora = lora if isinstance(lora, LoraFile) else read_lora(lora)
    targets, _ = match_lora(lora, dit)
    new = dit if in_place else _copy_sharing_tensors(dit)
    if strength == 0:
        return new
    modules = dict(new.named_modules())
    with torch.no_grad():
        for t in targets:
            module = modules.get(t.module)
            if module is not None and hasattr(module, "patches"):
                _patch_linear(module, lora, t, strength, alpha)
            else:
                _patch_tensor(new, lora, t, strength, alpha)
    return new


def lora_layers(model: nn.Module) -> list[str]:
    """Names of the layers that carry unmerged weight patches."""
    return [n for n, m in model.named_modules() if getattr(m, "patches", None)]


def merge_lora(dit: nn.Module) -> nn.Module:
    """Fold every layer's weight patches into its weight, in place; returns dit. A merged 8-bit layer holds
    its weight in the compute dtype from then on. Storage shared with another model is never written: each
    merged weight is a new tensor (the old one is freed when nothing else holds it)."""
    with torch.no_grad():
        for name in lora_layers(dit):
            layer = dit.get_submodule(name)
            dtype = layer.compute_dtype
            w, b = layer.effective_weight(dtype), layer.effective_bias(dtype)
            layer.weight = nn.Parameter(w, requires_grad=layer.weight.requires_grad)
            if b is not None:
                layer.bias = nn.Parameter(b, requires_grad=layer.bias.requires_grad)
            layer.scale_weight = None
            layer.patches = None
    return dit
