"""How each tensor of a checkpoint is stored once loaded, and filling a model with checks.

* Dtypes: 8-bit float Linear weights stay 8-bit when `dtype=None` (their layer casts per call, with the file's
  `scale_weight`); everything else is held in one compute dtype. An explicit `dtype` casts every tensor,
  8-bit ones dequantised (`weight · scale`).
* Every tensor is checked for NaN / inf while it is filled (after the cast, so an fp16 overflow counts);
  a bad file is reported by name with its first bad keys and nothing is returned.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Mapping, Optional

import torch
from torch import nn

from ..quant.fp8 import FP8_DTYPES, SCALE_WEIGHT, is_8bit
from .io import CheckpointError, CheckpointReader, TensorInfo

MAX_LISTED = 10


@dataclass(frozen=True)
class StoragePlan:
    compute: torch.dtype  # dtype of every tensor not kept 8-bit; the forward runs in it
    kept_8bit: frozenset[str] = frozenset()  # official weight names stored 8-bit
    scales: dict[str, str] = field(default_factory=dict)  # official weight name -> its scale tensor's source name
    notes: tuple[str, ...] = ()


def listing(title: str, lines: list[str]) -> str:
    more = f"\n    ... and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
    return f"\n  {title} ({len(lines)}):\n    " + "\n    ".join(lines[:MAX_LISTED]) + more


def linear_weight_names(model: nn.Module) -> set[str]:
    return {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def _check_floating(infos: Mapping[str, TensorInfo], source: str) -> None:
    bad = [f"{k} ({i.dtype})" for k, i in infos.items() if not i.dtype.is_floating_point]
    if bad:
        raise CheckpointError(f"{source}: expected floating-point weights; found {bad[:MAX_LISTED]}")


def majority_dtype(infos: Mapping[str, TensorInfo], notes: list[str], what: str = "") -> Optional[torch.dtype]:
    """The dtype holding most elements (None for no tensors); a note when dtypes are mixed."""
    counts = Counter()
    for info in infos.values():
        counts[info.dtype] += max(1, int(torch.Size(info.shape).numel()))
    if not counts:
        return None
    chosen = counts.most_common(1)[0][0]
    if len(counts) > 1:
        notes.append(f"mixed dtypes{what} {sorted(str(d) for d in counts)}: loading them as {chosen}")
    return chosen


def choose_dtype(infos: Mapping[str, TensorInfo], dtype: Optional[torch.dtype], source: str,
                 notes: list[str]) -> torch.dtype:
    """One dtype for every tensor (the VAE): dtype, else the file's most common; 8-bit files load as bf16."""
    _check_floating(infos, source)
    if dtype is not None:
        return dtype
    chosen = majority_dtype(infos, notes)
    if is_8bit(chosen):
        notes.append(f"weights stored as {chosen}: loading as torch.bfloat16")
        return torch.bfloat16
    return chosen


def _check_scales(infos: Mapping[str, TensorInfo], reader: CheckpointReader, names: Mapping[str, str],
                  scales: Mapping[str, str], marker: Optional[str], linears: set[str], source: str) -> None:
    if marker is not None:
        missing = [f"{names[k]}  (no {names[k][: -len('weight')]}{SCALE_WEIGHT})" for k in sorted(infos)
                   if k in linears and is_8bit(infos[k].dtype) and k not in scales]
        if missing:
            raise CheckpointError(f"{source}: a scaled-fp8 file (it has the {marker!r} marker) whose 8-bit weights "
                                  "lack their scale, so their values are unknown; nothing was loaded."
                                  + listing("weights without a scale", missing))
    for k, s in scales.items():
        info, out = reader.infos[s], infos[k].shape[0]
        if not info.dtype.is_floating_point or tuple(info.shape) not in ((), (1,), (out,), (out, 1)):
            raise CheckpointError(f"{source}: {s!r} is {info.dtype} {tuple(info.shape)}; a weight scale must be a "
                                  f"float scalar, [1], [{out}] or [{out}, 1] for {names[k]!r} {infos[k].shape}")


def plan_storage(model: nn.Module, infos: Mapping[str, TensorInfo], reader: CheckpointReader,
                 names: Mapping[str, str], scales: Mapping[str, str], marker: Optional[str], *,
                 dtype: Optional[torch.dtype], compute_dtype: Optional[torch.dtype], source: str) -> StoragePlan:
    """infos: official name -> TensorInfo of the weights (scales apart). See the module doc for the rules."""
    _check_floating(infos, source)
    if dtype is not None and compute_dtype is not None:
        raise ValueError("give dtype (casts every tensor, 8-bit ones too) or compute_dtype (the dtype of everything "
                         "not kept 8-bit), not both")
    for name, value in (("dtype", dtype), ("compute_dtype", compute_dtype)):
        if value is not None and (not value.is_floating_point or is_8bit(value)):
            raise ValueError(f"{name}={value} must be a 16/32/64-bit float dtype; 8-bit weights stay 8-bit "
                             "with dtype=None")
    linears = linear_weight_names(model)
    _check_scales(infos, reader, names, scales, marker, linears, source)
    notes: list[str] = []
    eight = {k for k, i in infos.items() if is_8bit(i.dtype)}
    if dtype is not None:
        if eight:
            notes.append(f"{len(eight)} 8-bit tensors dequantised to {dtype}")
        return StoragePlan(dtype, frozenset(), dict(scales), tuple(notes))
    kept = frozenset(eight & linears)
    others = {k: i for k, i in infos.items() if k not in eight}
    compute = compute_dtype or majority_dtype(others, notes, " outside the 8-bit weights") or torch.bfloat16
    if kept:
        kinds = sorted({str(infos[k].dtype) for k in kept})
        how = "scaled per layer" if any(k in scales for k in kept) else "unscaled"
        notes.append(f"{len(kept)} Linear weights kept {'/'.join(kinds)} ({how}), cast per layer at each call; "
                     f"computing in {compute}")
    if eight - kept:
        notes.append(f"{len(eight - kept)} 8-bit tensors that are not Linear weights loaded as {compute}")
    return StoragePlan(compute, kept, dict(scales), tuple(notes))


# ---- filling -------------------------------------------------------------------------------------

def has_nonfinite(t: torch.Tensor) -> bool:
    """True when t holds a NaN or an infinity. One reduction for the common all-finite case."""
    if t.dtype in FP8_DTYPES:
        bits = t.view(torch.uint8)
        if t.dtype == torch.float8_e4m3fn:  # no infinities; NaN is exponent and mantissa all ones
            return bool((bits & 0x7F).amax() == 0x7F) if t.numel() else False
        return bool(((bits & 0x7C) == 0x7C).any())  # e5m2: exponent all ones = inf or NaN
    if not t.is_floating_point() or t.numel() == 0:
        return False
    # In the tensor's own dtype: 10x faster than asking for a float32 sum of a 16-bit tensor on CPU
    # (the reduction accumulates in float32 either way). NaN / inf anywhere makes the sum non-finite.
    if torch.isfinite(t.sum()):
        return False
    return not bool(torch.isfinite(t).all())  # a finite tensor whose sum overflows (fp16 past 65504)


def _scale_for(reader: CheckpointReader, name: str, device) -> torch.Tensor:
    """A weight scale as float32, shaped to broadcast over a [out, in] weight: [] or [out, 1]."""
    s = reader.read(name).to(device=device, dtype=torch.float32, copy=True)
    if s.numel() == 1:
        return s.reshape(())
    return s.reshape(-1, 1)


def fill(model: nn.Module, reader: CheckpointReader, names: Mapping[str, str], device, plan: StoragePlan) -> None:
    """Read, convert, check and assign every tensor of model's state dict; raise before assigning anything
    when a tensor is not finite."""
    state: dict[str, torch.Tensor] = {}
    bad, overflow = [], []
    for k in model.state_dict():
        src = reader.read(names[k])
        scale = _scale_for(reader, plan.scales[k], device) if k in plan.scales else None
        if k in plan.kept_8bit:
            t = src.to(device=device, copy=True)
            if scale is not None:
                state[k[: -len("weight")] + SCALE_WEIGHT] = scale
        elif scale is not None or is_8bit(src.dtype):
            t = src.to(device=device, dtype=torch.float32)
            t = (t * scale if scale is not None else t).to(plan.compute)
        else:
            t = src.to(device=device, dtype=plan.compute, copy=True)
        scale_bad = scale is not None and has_nonfinite(scale)
        if scale_bad or has_nonfinite(t):
            in_file = scale_bad or has_nonfinite(src)
            (bad if in_file else overflow).append(names[k] if not scale_bad else plan.scales[k])
        state[k] = t
    if bad or overflow:
        msg = f"{reader.path}: weights that are not finite; nothing was loaded."
        if bad:
            msg += listing("tensors holding NaN or inf in the file (damaged, or the training diverged)", bad)
        if overflow:
            msg += listing(f"finite in the file but out of range of {plan.compute} (load with dtype=torch.float32 "
                           "or torch.bfloat16)", overflow)
        raise CheckpointError(msg)
    for k in plan.kept_8bit:
        module = model.get_submodule(k[: -len(".weight")])
        scale = state.get(k[: -len("weight")] + SCALE_WEIGHT)
        if scale is not None:
            module.scale_weight = torch.empty(scale.shape, device="meta")  # a slot for load_state_dict to fill
    model.load_state_dict(state, strict=True, assign=True)
    for k in plan.kept_8bit:
        model.get_parameter(k).requires_grad_(False)  # 8-bit weights are for inference
