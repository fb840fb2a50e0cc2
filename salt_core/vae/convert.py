"""Wan 2.1 VAE state-dict names: official (Wan2.1_VAE.pth, ComfyUI wan_2.1_vae.safetensors)
<-> diffusers (`AutoencoderKLWan`). Our model uses the official names; this is the loading edge.

Both directions only rename keys (tensors are passed through untouched) and round-trip exactly.
The decoder is the one place where the layouts differ structurally: official keeps one flat
list `decoder.upsamples.N` (res blocks then a resample, per level), diffusers nests it as
`decoder.up_blocks.i.resnets.j` / `decoder.up_blocks.i.upsamplers.0`; the grouping is read
from the keys, so any depth / `num_res_blocks` works.
"""
from __future__ import annotations

import re
from typing import Mapping, TypeVar

from .config import VAE_PRESETS, VAEConfig

V = TypeVar("V")

# Inside a residual block.
_RESNET = (("residual.0.", "norm1."), ("residual.2.", "conv1."), ("residual.3.", "norm2."),
           ("residual.6.", "conv2."), ("shortcut.", "conv_shortcut."))
# Non-block parts under encoder. / decoder.
_PARTS = (("conv1.", "conv_in."), ("head.0.", "norm_out."), ("head.2.", "conv_out."))
# Top level: the posterior / latent 1x1x1 convs.
_TOP = {f"{o}.{p}": f"{d}.{p}" for o, d in (("conv1", "quant_conv"), ("conv2", "post_quant_conv"))
        for p in ("weight", "bias")}
_TOP_BACK = {d: o for o, d in _TOP.items()}
_MIDDLE = (("middle.0.", "mid_block.resnets.0."), ("middle.1.", "mid_block.attentions.0."),
           ("middle.2.", "mid_block.resnets.1."))

_OFFICIAL_MARKERS = ("encoder.downsamples.", "decoder.upsamples.", "encoder.middle.", "decoder.middle.")
_DIFFUSERS_MARKERS = ("encoder.down_blocks.", "decoder.up_blocks.", "encoder.mid_block.", "decoder.mid_block.")


def detect_vae_format(keys) -> str:
    """'official' or 'diffusers' for a Wan 2.1 VAE state dict's keys; ValueError otherwise."""
    keys = list(keys)
    if any(k.startswith(_OFFICIAL_MARKERS) for k in keys):
        return "official"
    if any(k.startswith(_DIFFUSERS_MARKERS) for k in keys):
        return "diffusers"
    sample = sorted(keys)[:5]
    raise ValueError(
        f"not a Wan 2.1 VAE state dict: expected keys under {_OFFICIAL_MARKERS[0]!r} (official) or "
        f"{_DIFFUSERS_MARKERS[0]!r} (diffusers); first keys: {sample}"
    )


def to_official(sd: Mapping[str, V]) -> dict[str, V]:
    """Official names for a Wan 2.1 VAE state dict in either naming."""
    return dict(sd) if detect_vae_format(sd) == "official" else diffusers_to_official(sd)


def _swap(key: str, table, forward: bool) -> str | None:
    """Replace the first matching prefix of `key` (official->diffusers if forward); None if none."""
    for official, diffusers in table:
        src, dst = (official, diffusers) if forward else (diffusers, official)
        if key.startswith(src):
            return dst + key[len(src):]
    return None


def _block_leaf(leaf: str, forward: bool) -> str:
    """Rename inside a block: residual parts are renamed; resample / attention parts keep their names."""
    renamed = _swap(leaf, _RESNET, forward)
    return leaf if renamed is None else renamed


def _unknown(key: str, direction: str) -> ValueError:
    return ValueError(f"cannot convert VAE key {key!r} ({direction}): not a Wan 2.1 VAE parameter")


# ---- official -> diffusers ----------------------------------------------------------------------

_UPSAMPLE_OFFICIAL = re.compile(r"decoder\.upsamples\.(\d+)\.(.+)")


def _official_decoder_groups(keys) -> dict[int, tuple[int, str]]:
    """Flat decoder index -> (level, 'resnets.j' or 'upsamplers.0')."""
    kinds: dict[int, str] = {}
    for key in keys:
        m = _UPSAMPLE_OFFICIAL.fullmatch(key)
        if m:
            idx, leaf = int(m.group(1)), m.group(2)
            kind = "resample" if leaf.startswith(("resample.", "time_conv.")) else (
                "resnet" if leaf.startswith(("residual.", "shortcut.")) else "other")
            if kind == "other":
                raise ValueError(f"cannot convert VAE key {key!r}: diffusers' Wan 2.1 decoder has no such block")
            kinds[idx] = kind
    groups, level, j = {}, 0, 0
    for idx in sorted(kinds):
        if kinds[idx] == "resnet":
            groups[idx] = (level, f"resnets.{j}")
            j += 1
        else:
            groups[idx] = (level, "upsamplers.0")
            level, j = level + 1, 0
    return groups


def official_to_diffusers(sd: Mapping[str, V]) -> dict[str, V]:
    groups = _official_decoder_groups(sd)
    out: dict[str, V] = {}
    for key, value in sd.items():
        new = _official_key_to_diffusers(key, groups)
        if new in out:
            raise ValueError(f"VAE key {key!r} maps onto {new!r} twice")
        out[new] = value
    return out


def _official_key_to_diffusers(key: str, groups: dict[int, tuple[int, str]]) -> str:
    side, _, rest = key.partition(".")
    if side not in ("encoder", "decoder"):
        if key not in _TOP:
            raise _unknown(key, "official -> diffusers")
        return _TOP[key]
    new = _swap(rest, _PARTS, forward=True)
    if new is not None:
        return f"{side}.{new}"
    for official, diffusers in _MIDDLE:
        if rest.startswith(official):
            return f"{side}.{diffusers}{_block_leaf(rest[len(official):], True)}"
    m = re.fullmatch(r"downsamples\.(\d+)\.(.+)", rest) if side == "encoder" else None
    if m:
        return f"encoder.down_blocks.{m.group(1)}.{_block_leaf(m.group(2), True)}"
    m = re.fullmatch(r"upsamples\.(\d+)\.(.+)", rest) if side == "decoder" else None
    if m:
        level, slot = groups[int(m.group(1))]
        return f"decoder.up_blocks.{level}.{slot}.{_block_leaf(m.group(2), True)}"
    raise _unknown(key, "official -> diffusers")


# ---- diffusers -> official ----------------------------------------------------------------------

_UP_BLOCK_DIFFUSERS = re.compile(r"decoder\.up_blocks\.(\d+)\.(resnets\.\d+|upsamplers\.0)\.(.+)")


def _diffusers_decoder_offsets(keys) -> dict[tuple[int, str], int]:
    """(level, 'resnets.j' or 'upsamplers.0') -> flat official index."""
    slots: dict[int, set[str]] = {}
    for key in keys:
        m = _UP_BLOCK_DIFFUSERS.fullmatch(key)
        if m:
            slots.setdefault(int(m.group(1)), set()).add(m.group(2))
    flat, index = {}, 0
    for level in sorted(slots):
        resnets = sorted((s for s in slots[level] if s.startswith("resnets.")), key=lambda s: int(s.split(".")[1]))
        for slot in resnets + (["upsamplers.0"] if "upsamplers.0" in slots[level] else []):
            flat[(level, slot)] = index
            index += 1
    return flat


def diffusers_to_official(sd: Mapping[str, V]) -> dict[str, V]:
    flat = _diffusers_decoder_offsets(sd)
    out: dict[str, V] = {}
    for key, value in sd.items():
        new = _diffusers_key_to_official(key, flat)
        if new in out:
            raise ValueError(f"VAE key {key!r} maps onto {new!r} twice")
        out[new] = value
    return out


def _diffusers_key_to_official(key: str, flat: dict[tuple[int, str], int]) -> str:
    side, _, rest = key.partition(".")
    if side not in ("encoder", "decoder"):
        if key not in _TOP_BACK:
            raise _unknown(key, "diffusers -> official")
        return _TOP_BACK[key]
    new = _swap(rest, _PARTS, forward=False)
    if new is not None:
        return f"{side}.{new}"
    for official, diffusers in _MIDDLE:
        if rest.startswith(diffusers):
            return f"{side}.{official}{_block_leaf(rest[len(diffusers):], False)}"
    m = re.fullmatch(r"down_blocks\.(\d+)\.(.+)", rest) if side == "encoder" else None
    if m:
        return f"encoder.downsamples.{m.group(1)}.{_block_leaf(m.group(2), False)}"
    m = _UP_BLOCK_DIFFUSERS.fullmatch(key)
    if m:
        index = flat[(int(m.group(1)), m.group(2))]
        return f"decoder.upsamples.{index}.{_block_leaf(m.group(3), False)}"
    raise _unknown(key, "diffusers -> official")


# ---- geometry from weights ----------------------------------------------------------------------

_DOWNSAMPLE_OFFICIAL = re.compile(r"encoder\.downsamples\.(\d+)\.(.+)")


def vae_config_from_state_dict(sd: Mapping[str, object], latent_mean=None, latent_std=None) -> VAEConfig:
    """The `VAEConfig` a Wan 2.1 VAE state dict (either naming) was built with, read from keys and shapes.

    Latent statistics are not stored in the weights: pass them, or get the released Wan 2.1 values
    when the geometry is the released one and identity (zeros / ones) otherwise.
    """
    sd = to_official(sd)
    try:
        dim = int(sd["encoder.conv1.weight"].shape[0])
        z_dim = int(sd["conv2.weight"].shape[0])
    except KeyError as err:
        raise ValueError(f"Wan 2.1 VAE state dict lacks {err.args[0]!r}") from None
    levels: list[list[int]] = [[]]  # output channels of each level's residual blocks
    temporal: list[bool] = []
    blocks: dict[int, set[str]] = {}
    for key in sd:
        m = _DOWNSAMPLE_OFFICIAL.fullmatch(key)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(m.group(2))
    for idx in sorted(blocks):
        leaves = blocks[idx]
        if "residual.2.weight" in leaves:
            levels[-1].append(int(sd[f"encoder.downsamples.{idx}.residual.2.weight"].shape[0]))
        elif "resample.1.weight" in leaves:
            temporal.append("time_conv.weight" in leaves)
            levels.append([])
    res_counts = {len(level) for level in levels}
    if len(res_counts) != 1 or 0 in res_counts:
        raise ValueError(f"Wan 2.1 VAE state dict has uneven encoder levels (residual blocks per level: "
                         f"{[len(level) for level in levels]})")
    dim_mult = tuple(level[0] // dim for level in levels)
    geometry = dict(dim=dim, z_dim=z_dim, dim_mult=dim_mult, num_res_blocks=res_counts.pop(),
                    temporal_downsample=tuple(temporal))
    real = VAE_PRESETS["wan2.1-vae"]
    is_real = all(getattr(real, k) == v for k, v in geometry.items())
    if latent_mean is None:
        latent_mean = real.latent_mean if is_real else ()
    if latent_std is None:
        latent_std = real.latent_std if is_real else ()
    return VAEConfig(**geometry, latent_mean=tuple(latent_mean), latent_std=tuple(latent_std))
