"""Key names at the loading edge: wrapper prefixes and the official <-> diffusers DiT renaming.

Inside salt_core every DiT weight carries its official Wan 2.1 name; this module is the only
place that knows other spellings. All functions here work on names only (no tensors).
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping, TypeVar

V = TypeVar("V")

# ---- wrapper prefixes ------------------------------------------------------------------------

# Inserted anywhere in a name by torch wrappers: FSDP, activation checkpointing, torch.compile.
WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")
COMFYUI_PREFIX = "model.diffusion_model."
SELF_FORCING_PREFIX = "model."  # WanDiffusionWrapper.model
DDP_PREFIX = "module."


def strip_wrapper_segments(name: str) -> str:
    """Remove FSDP / checkpoint-wrapper / torch.compile segments wherever they occur."""
    for seg in WRAPPER_SEGMENTS:
        name = name.replace(seg, "")
    return name


def common_prefix(names: Iterable[str], prefix: str) -> bool:
    """True when every name starts with prefix (and there is at least one name)."""
    names = list(names)
    return bool(names) and all(n.startswith(prefix) for n in names)


# ---- official <-> diffusers --------------------------------------------------------------------
# Module paths (without the trailing .weight/.bias); parameters without a module suffix
# (`modulation`) are listed by their full name. Shapes are identical on both sides.

_TOP_LEVEL: tuple[tuple[str, str], ...] = (
    ("patch_embedding", "patch_embedding"),
    ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
    ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
    ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
    ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
    ("time_projection.1", "condition_embedder.time_proj"),
    ("head.head", "proj_out"),
    ("head.modulation", "scale_shift_table"),
)

_IN_BLOCK: tuple[tuple[str, str], ...] = (
    ("modulation", "scale_shift_table"),
    ("self_attn.q", "attn1.to_q"),
    ("self_attn.k", "attn1.to_k"),
    ("self_attn.v", "attn1.to_v"),
    ("self_attn.o", "attn1.to_out.0"),
    ("self_attn.norm_q", "attn1.norm_q"),
    ("self_attn.norm_k", "attn1.norm_k"),
    ("cross_attn.q", "attn2.to_q"),
    ("cross_attn.k", "attn2.to_k"),
    ("cross_attn.v", "attn2.to_v"),
    ("cross_attn.o", "attn2.to_out.0"),
    ("cross_attn.norm_q", "attn2.norm_q"),
    ("cross_attn.norm_k", "attn2.norm_k"),
    ("norm3", "norm2"),  # the affine cross-attention norm: official norm3 == diffusers norm2
    ("ffn.0", "ffn.net.0.proj"),
    ("ffn.2", "ffn.net.2"),
)

_PARAM_SUFFIXES = ("", ".weight", ".bias")
_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _tables(pairs, to_diffusers: bool) -> dict[str, str]:
    table = {}
    for official, diffusers in pairs:
        src, dst = (official, diffusers) if to_diffusers else (diffusers, official)
        for suffix in _PARAM_SUFFIXES:
            table[src + suffix] = dst + suffix
    return table


_TOP_TO_D, _TOP_TO_O = _tables(_TOP_LEVEL, True), _tables(_TOP_LEVEL, False)
_BLK_TO_D, _BLK_TO_O = _tables(_IN_BLOCK, True), _tables(_IN_BLOCK, False)

# Names that exist only in diffusers' spelling: their presence marks a diffusers file.
DIFFUSERS_MARKERS = ("condition_embedder.", "scale_shift_table", ".attn1.", ".attn2.", "proj_out.", ".ffn.net.")


def _rename(name: str, top: dict[str, str], block: dict[str, str]) -> str | None:
    if name in top:
        return top[name]
    m = _BLOCK_RE.match(name)
    if m and m.group(2) in block:
        return f"blocks.{m.group(1)}.{block[m.group(2)]}"
    return None


def official_to_diffusers_name(name: str) -> str | None:
    """One official Wan 2.1 DiT name -> its diffusers name, or None when the name is not a t2v DiT weight."""
    return _rename(name, _TOP_TO_D, _BLK_TO_D)


def diffusers_to_official_name(name: str) -> str | None:
    """One diffusers WanTransformer3DModel name -> its official name, or None when unknown."""
    return _rename(name, _TOP_TO_O, _BLK_TO_O)


def _convert(names: Iterable[str], one, direction: str, strict: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    taken: dict[str, str] = {}
    unknown = []
    for name in names:
        new = one(name)
        if new is None:
            unknown.append(name)
            new = name  # left as is: the caller's key check reports it as unexpected
        if new in taken:
            raise ValueError(f"{direction}: {taken[new]!r} and {name!r} both map to {new!r}")
        taken[new] = name
        out[name] = new
    if strict and unknown:
        raise ValueError(f"{direction}: {len(unknown)} names have no counterpart, e.g. {unknown[:5]}")
    return out


def official_to_diffusers_names(names: Iterable[str], *, strict: bool = True) -> dict[str, str]:
    """{official name: diffusers name}. strict=False passes unknown names through unchanged."""
    return _convert(names, official_to_diffusers_name, "official -> diffusers", strict)


def diffusers_to_official_names(names: Iterable[str], *, strict: bool = True) -> dict[str, str]:
    """{diffusers name: official name}. strict=False passes unknown names through unchanged."""
    return _convert(names, diffusers_to_official_name, "diffusers -> official", strict)


def official_to_diffusers(state_dict: Mapping[str, V]) -> dict[str, V]:
    """A DiT state dict with official names -> diffusers names (values untouched; unknown name: ValueError)."""
    mapping = official_to_diffusers_names(state_dict)
    return {mapping[k]: v for k, v in state_dict.items()}


def diffusers_to_official(state_dict: Mapping[str, V]) -> dict[str, V]:
    """A DiT state dict with diffusers names -> official names (values untouched; unknown name: ValueError)."""
    mapping = diffusers_to_official_names(state_dict)
    return {mapping[k]: v for k, v in state_dict.items()}


def is_diffusers_name(name: str) -> bool:
    return any(m in name for m in DIFFUSERS_MARKERS)
