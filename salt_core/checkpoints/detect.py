"""What is in a checkpoint: its container, its key format, and the DiT geometry, from names and
shapes only (works on meta tensors and on safetensors headers; never reads tensor data).

Formats: "salt" (ours, with a header), "official" (Wan 2.1 names), "comfyui"
(`model.diffusion_model.` prefix), "diffusers" (WanTransformer3DModel names), "self_forcing"
(trainer dict `generator` / `generator_ema` / `critic` and/or the `model.` prefix).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

import torch

from ..config import DIT_PRESETS, DiTConfig
from ..quant.fp8 import SCALE_INPUT, SCALE_WEIGHT, SCALED_FP8_MARKER
from . import keys as K

FORMATS = ("salt", "official", "comfyui", "diffusers", "self_forcing")
TRAINER_KEYS = ("generator", "generator_ema", "critic")
WHICH = ("auto", "ema", "regular", "generator", "critic")
_WHICH_KEY = {"ema": "generator_ema", "regular": "generator", "generator": "generator", "critic": "critic"}
PREFER = ("ema", "regular")  # which="auto": the entry tried first (the other is the fallback)
WAN_HEAD_DIM = 128  # every released Wan 2.1 model; used for files without our header
NESTED_WRAPPERS = ("state_dict", "model", "module", "model_state_dict", "ema")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message starts with the file (or source) name."""


def _fail(source: str, msg: str) -> CheckpointError:
    return CheckpointError(f"{source}: {msg}")


# ---- containers ------------------------------------------------------------------------------

def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _present(obj: Mapping, key: str) -> bool:
    v = obj.get(key)
    return isinstance(v, Mapping) and len(v) > 0


def pick_trainer_entry(available: Iterable[str], which: str, source: str, prefer: str = "ema") -> tuple[str, str]:
    """Choose a sub-model of a Self Forcing trainer checkpoint -> (key, note). which="auto" takes the `prefer`red
    weights ("ema" = generator_ema, "regular" = generator) when present, else the other."""
    available = [k for k in TRAINER_KEYS if k in set(available)]
    if which not in WHICH:
        raise _fail(source, f"which={which!r} is not one of {list(WHICH)}")
    if prefer not in PREFER:
        raise ValueError(f"prefer={prefer!r} is not one of {list(PREFER)}")
    if which == "auto":
        order = ("generator_ema", "generator") if prefer == "ema" else ("generator", "generator_ema")
        for key in order:
            if key in available:
                why = f"{prefer} weights, preferred" if key == order[0] else f"the file has no '{order[0]}'"
                return key, f"Self Forcing trainer checkpoint: using '{key}' ({why}); entries: {available}"
        raise _fail(source, f"trainer checkpoint has no generator weights; entries: {available}")
    key = _WHICH_KEY[which]
    if key not in available:
        raise _fail(source, f"weights {which!r} ask for '{key}', but the trainer checkpoint has only {available}")
    return key, f"Self Forcing trainer checkpoint: using '{key}' (weights {which!r}); entries: {available}"


def unwrap_container(obj: Any, which: str = "auto", source: str = "<state dict>",
                     prefer: str = "ema") -> tuple[dict, Optional[str], list[str]]:
    """A loaded torch object -> (flat {name: tensor}, trainer entry used or None, notes)."""
    if not isinstance(obj, Mapping):
        raise _fail(source, f"expected a dict of tensors, found a {type(obj).__name__}")
    trainer = [k for k in TRAINER_KEYS if _present(obj, k)]
    if trainer:
        key, note = pick_trainer_entry(trainer, which, source, prefer)
        sub = obj[key]
        if not _is_tensor_dict(sub):
            raise _fail(source, f"'{key}' is not a dict of tensors")
        return dict(sub), key, [note]
    if which != "auto":
        raise _fail(source, f"weights {which!r} apply to Self Forcing trainer checkpoints "
                            f"(entries {list(TRAINER_KEYS)}); this file is a plain state dict")
    if _is_tensor_dict(obj):
        return dict(obj), None, []
    for key in NESTED_WRAPPERS:
        if _is_tensor_dict(obj.get(key)):
            return dict(obj[key]), None, [f"using the state dict stored under '{key}'"]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if tensors and len(tensors) >= len(obj) / 2:
        skipped = sorted(str(k) for k in obj if k not in tensors)
        return tensors, None, [f"ignored {len(skipped)} non-tensor entries: {skipped[:5]}"]
    raise _fail(source, f"no state dict found; top-level entries: {sorted(map(str, obj))[:10]}")


def split_flat_trainer_names(names: Iterable[str]) -> Optional[dict[str, list[str]]]:
    """Flattened trainer checkpoints (`generator_ema.model.blocks...`) -> {entry: [names]}, else None."""
    groups: dict[str, list[str]] = {}
    for n in names:
        head = n.split(".", 1)[0]
        if head not in TRAINER_KEYS:
            return None
        groups.setdefault(head, []).append(n)
    return groups or None


# ---- key layout ------------------------------------------------------------------------------

@dataclass(frozen=True)
class KeyLayout:
    format: str
    names: dict[str, str]  # official name -> name in the source
    notes: tuple[str, ...] = ()


def resolve_names(names: Iterable[str], *, trainer: bool = False, source: str = "<state dict>") -> KeyLayout:
    """Undo wrapper prefixes and foreign spellings -> official names, and name the format."""
    original = list(names)
    notes: list[str] = []
    cur = {n: K.strip_wrapper_segments(n) for n in original}  # source -> working name
    if any(cur[n] != n for n in original):
        notes.append("stripped wrapper segments (_fsdp_wrapped_module. / _orig_mod. / ...)")
    fmt = "self_forcing" if trainer else None

    def strip(prefix: str) -> None:
        nonlocal cur
        kept = {s: w[len(prefix):] for s, w in cur.items() if w.startswith(prefix)}
        if len(kept) < len(cur):
            sample = [s for s in cur if s not in kept][:3]
            notes.append(f"ignored {len(cur) - len(kept)} keys outside '{prefix}' (e.g. {sample})")
        cur = kept

    if K.common_prefix(cur.values(), K.DDP_PREFIX):
        strip(K.DDP_PREFIX)
        notes.append("stripped the DDP prefix 'module.'")
    if any(w.startswith(K.COMFYUI_PREFIX) for w in cur.values()):
        strip(K.COMFYUI_PREFIX)
        fmt = fmt or "comfyui"
    elif K.common_prefix(cur.values(), K.SELF_FORCING_PREFIX):
        strip(K.SELF_FORCING_PREFIX)
        fmt = fmt or "self_forcing"
    elif K.common_prefix(cur.values(), "diffusion_model."):
        strip("diffusion_model.")
        fmt = fmt or "comfyui"
    if any(K.is_diffusers_name(w) for w in cur.values()):
        try:
            rename = K.diffusers_to_official_names(cur.values(), strict=False)
        except ValueError as e:  # e.g. a mix of diffusers and official spellings
            raise _fail(source, f"mixed key spellings: {e}") from None
        cur = {s: rename[w] for s, w in cur.items()}
        fmt = fmt or "diffusers"
        if fmt != "diffusers":
            notes.append("converted diffusers names to official names")
    out: dict[str, str] = {}
    for s, w in cur.items():
        if w in out:
            raise _fail(source, f"keys {out[w]!r} and {s!r} both mean {w!r}")
        out[w] = s
    return KeyLayout(fmt or "official", out, tuple(notes))


# ---- architecture check ----------------------------------------------------------------------

_FOREIGN: tuple[tuple[tuple[str, ...], str], ...] = (
    (("lora_A", "lora_B", "lora_down", "lora_up", ".alpha"), "a LoRA / adapter file, not a full model"),
    (("img_emb.", ".k_img.", ".v_img.", "norm_k_img", "image_embedder", "add_k_proj", "add_v_proj"),
     "a Wan image-to-video / first-last-frame DiT (image-conditioning weights); only text-to-video is supported"),
    (("vace_blocks.", "vace_patch_embedding"), "a Wan VACE DiT; only plain text-to-video is supported"),
    (("motion_encoder.", "face_adapter.", "pose_patch_embedding"), "a Wan Animate DiT"),
    (("audio_injector.", "casual_audio_encoder.", "frame_packer.", "trainable_cond_mask"), "a Wan S2V (speech-to-video) DiT"),
    (("control_adapter.",), "a Wan camera/control DiT"),
)
_WAN_ANCHORS = ("patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight",
                "head.head.weight", "blocks.0.self_attn.q.weight")


def _looks_like(names: list[str]) -> Optional[str]:
    s = set(names)
    if any(n.startswith("decoder.") for n in s) and any(n.startswith("encoder.") for n in s) and "conv1.weight" in s:
        return "a video VAE (encoder./decoder./conv1 keys); load it as a VAE, not as a DiT"
    if any(n.startswith(("encoder.block.", "shared.", "token_embedding")) for n in s):
        return "a text encoder (T5-style keys)"
    if any(n.startswith(("input_blocks.", "down_blocks.")) for n in s):
        return "a UNet (Stable Diffusion family)"
    if any(n.startswith(("double_blocks.", "single_blocks.", "joint_blocks.", "transformer_blocks.")) for n in s):
        return "a different transformer family (Flux / SD3 / HunyuanVideo / LTX-style keys)"
    return None


def check_architecture(layout: KeyLayout, source: str) -> None:
    """Reject anything that is not a Wan 2.1 text-to-video DiT, saying what it looks like."""
    names = list(layout.names)
    for markers, what in _FOREIGN:
        hits = [layout.names[n] for n in names if any(m in n for m in markers)]
        if hits:
            raise _fail(source, f"not a Wan 2.1 text-to-video DiT: this looks like {what}; found keys like {hits[:4]}")
    anchors = sum(a in layout.names for a in _WAN_ANCHORS)
    if anchors < 2:
        what = _looks_like(names)
        sample = [layout.names[n] for n in names[:5]]
        hint = f" (it looks like {what})" if what else ""
        raise _fail(source, f"not a Wan 2.1 text-to-video DiT{hint}: found keys like {sample} "
                            f"({len(names)} keys; expected e.g. {list(_WAN_ANCHORS[:3])})")


# ---- geometry --------------------------------------------------------------------------------

_BLOCK_INDEX = re.compile(r"^blocks\.(\d+)\.")
_GEOMETRY_FIELDS = ("dim", "ffn_dim", "num_layers", "in_dim", "out_dim", "text_dim", "freq_dim",
                    "patch_size", "qk_norm", "cross_attn_norm")


def _shape(shapes: Mapping[str, tuple], name: str, ndim: int, source: str) -> tuple[int, ...]:
    s = shapes.get(name)
    if s is None:
        raise _fail(source, f"cannot work out the model geometry: key {name!r} is missing")
    if len(s) != ndim:
        raise _fail(source, f"{name!r} has shape {tuple(s)}; expected {ndim} dimensions")
    return tuple(s)


def preset_name(config: DiTConfig) -> Optional[str]:
    """The name of the preset equal to config, else None."""
    return next((n for n, c in DIT_PRESETS.items() if c == config), None)


def detect_config(shapes: Mapping[str, tuple], source: str = "<state dict>") -> tuple[DiTConfig, Optional[str], list[str]]:
    """Official-named shapes -> (config, preset name or None, notes). Heads: preset's, else dim / 128."""
    pe = _shape(shapes, "patch_embedding.weight", 5, source)
    dim, in_dim, patch = pe[0], pe[1], tuple(pe[2:])
    head = _shape(shapes, "head.head.weight", 2, source)
    if head[0] % math.prod(patch):
        raise _fail(source, f"head.head.weight has {head[0]} outputs, not a multiple of the patch volume {patch}")
    layers = {int(m.group(1)) for n in shapes if (m := _BLOCK_INDEX.match(n))}
    if not layers:
        raise _fail(source, "cannot work out the model geometry: no 'blocks.N.' keys")
    geometry = dict(
        dim=dim, in_dim=in_dim, patch_size=patch, out_dim=head[0] // math.prod(patch),
        text_dim=_shape(shapes, "text_embedding.0.weight", 2, source)[1],
        freq_dim=_shape(shapes, "time_embedding.0.weight", 2, source)[1],
        ffn_dim=_shape(shapes, "blocks.0.ffn.0.weight", 2, source)[0],
        num_layers=max(layers) + 1,
        qk_norm="blocks.0.self_attn.norm_q.weight" in shapes,
        cross_attn_norm="blocks.0.norm3.weight" in shapes,
    )
    if geometry["in_dim"] != 16 or geometry["out_dim"] != 16:
        raise _fail(source, f"not a Wan 2.1 text-to-video DiT: it has in_dim={geometry['in_dim']}, "
                            f"out_dim={geometry['out_dim']} latent channels (text-to-video has 16 / 16); "
                            "this looks like an image/control-conditioned variant (Wan 2.1 i2v / Fun) or "
                            "Wan 2.2 (TI2V-5B has 48). Pass config= explicitly if you know better")
    for name, preset in DIT_PRESETS.items():
        if all(getattr(preset, f) == v for f, v in geometry.items()):
            return preset, name, []
    if dim % WAN_HEAD_DIM:
        raise _fail(source, f"dim={dim} matches no preset and is not a multiple of Wan's head_dim "
                            f"{WAN_HEAD_DIM}, so the number of heads is unknown: pass config= explicitly")
    try:
        config = DiTConfig(num_heads=dim // WAN_HEAD_DIM, **geometry)
    except ValueError as e:
        raise _fail(source, f"the weights describe a model this loader does not accept: {e}") from None
    return config, None, [f"no preset matches; assumed head_dim {WAN_HEAD_DIM} -> {config.num_heads} heads"]


# ---- everything at once ----------------------------------------------------------------------

@dataclass(frozen=True)
class Detection:
    format: str
    config: DiTConfig
    preset: Optional[str]
    names: dict[str, str]  # official name -> name in the source
    shapes: dict[str, tuple[int, ...]]  # official name -> shape
    trainer_entry: Optional[str] = None
    notes: tuple[str, ...] = field(default=())
    fp8_scales: dict[str, str] = field(default_factory=dict)  # official weight name -> its scale_weight in the source
    fp8_marker: Optional[str] = None  # the `scaled_fp8` marker's name in the source, when present


def split_fp8_keys(shapes: Mapping[str, tuple]) -> tuple[dict[str, tuple], Optional[str], dict[str, str], list[str]]:
    """Set ComfyUI's scaled-fp8 extras apart from the weights (source names throughout)
    -> (weights, marker name or None, {weight name: its scale_weight name}, scale_input names)."""
    weights, scales, inputs, marker = {}, {}, [], None
    for name, shape in shapes.items():
        if name.rpartition(".")[2] == SCALED_FP8_MARKER:
            marker = name
        elif name.endswith("." + SCALE_WEIGHT):
            scales[name[: -len(SCALE_WEIGHT)] + "weight"] = name
        elif name.endswith("." + SCALE_INPUT):
            inputs.append(name)
        else:
            weights[name] = shape
    return weights, marker, scales, inputs


def _official_scales(layout: KeyLayout, scales: Mapping[str, str], source: str) -> dict[str, str]:
    official = {src: off for off, src in layout.names.items()}
    orphans = [s for w, s in scales.items() if w not in official]
    if orphans:
        raise _fail(source, f"scale tensors without their weight: {orphans[:5]} (each `<layer>.scale_weight` "
                            "needs a `<layer>.weight` beside it)")
    return {official[w]: s for w, s in scales.items()}


def detect_layout(shapes: Mapping[str, tuple], *, trainer_entry: Optional[str] = None,
                  source: str = "<state dict>") -> tuple[KeyLayout, dict[str, tuple[int, ...]]]:
    """Source-named shapes -> (layout, official-named shapes), rejecting non-Wan-2.1-t2v files."""
    layout = resolve_names(shapes, trainer=trainer_entry is not None, source=source)
    check_architecture(layout, source)
    return layout, {o: tuple(shapes[s]) for o, s in layout.names.items()}


def detect(state: Mapping[str, Any], *, which: str = "auto", config: Optional[DiTConfig] = None,
           source: str = "<state dict>") -> Detection:
    """Detect format and config of an in-memory state dict (tensors, meta tensors or plain shapes),
    including a nested Self Forcing trainer dict. No tensor data is read."""
    flat = all(isinstance(v, (torch.Tensor, tuple, list, torch.Size)) for v in state.values())
    entry, notes = None, []
    if which != "auto" or not flat or any(_present(state, k) for k in TRAINER_KEYS):
        state, entry, notes = unwrap_container(state, which, source)
    shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in state.items()}
    return detect_from_shapes(shapes, trainer_entry=entry, config=config, source=source, notes=notes)


def detect_from_shapes(shapes: Mapping[str, tuple], *, trainer_entry: Optional[str] = None,
                       config: Optional[DiTConfig] = None, source: str = "<state dict>",
                       notes: Iterable[str] = ()) -> Detection:
    weights, marker, scales, input_scales = split_fp8_keys(shapes)
    layout, official = detect_layout(weights, trainer_entry=trainer_entry, source=source)
    notes = [*notes, *layout.notes]
    if input_scales:
        notes.append(f"ignored {len(input_scales)} `scale_input` tensors (they serve ComfyUI's fp8 matmul; "
                     "here 8-bit weights are cast to the compute dtype)")
    if config is None:
        config, preset, more = detect_config(official, source)
        notes += more
    else:
        preset = preset_name(config)
    return Detection(layout.format, config, preset, layout.names, official, trainer_entry, tuple(notes),
                     _official_scales(layout, scales, source), marker)


# ---- VAE -------------------------------------------------------------------------------------

VAE_PREFIXES = ("first_stage_model.", "vae.", "model.", "module.")


@dataclass(frozen=True)
class VAEDetection:
    format: str  # "official" | "diffusers"
    config: Any  # VAEConfig
    preset: Optional[str]
    names: dict[str, str]  # official name -> name in the source
    shapes: dict[str, tuple[int, ...]]  # official name -> shape
    notes: tuple[str, ...] = ()


def _vae_shapes(config) -> dict[str, tuple[int, ...]]:
    from ..vae import WanVAE

    with torch.device("meta"):
        model = WanVAE(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def detect_vae(shapes: Mapping[str, tuple], *, config=None, source: str = "<state dict>") -> VAEDetection:
    """Format and config of a Wan 2.1 VAE from names and shapes (the config is the preset whose
    every shape matches, unless given)."""
    from ..vae import VAE_PRESETS, detect_vae_format, diffusers_to_official

    notes: list[str] = []
    cur = {K.strip_wrapper_segments(n): n for n in shapes}  # working name -> source name
    for prefix in VAE_PREFIXES:
        if K.common_prefix(cur, prefix):
            cur = {w[len(prefix):]: s for w, s in cur.items()}
            notes.append(f"stripped the prefix {prefix!r}")
    try:
        fmt = detect_vae_format(cur)
        if fmt == "diffusers":
            cur = diffusers_to_official(cur)
    except ValueError as e:
        layout = resolve_names(shapes, source=source)
        if sum(a in layout.names for a in _WAN_ANCHORS) >= 2:
            raise _fail(source, f"not a Wan 2.1 VAE: it looks like a Wan DiT (keys like "
                                f"{list(shapes)[:3]}); load it with load_dit") from None
        raise _fail(source, str(e)) from None
    official = {w: tuple(shapes[s]) for w, s in cur.items()}
    if config is not None:
        name = next((n for n, c in VAE_PRESETS.items() if c == config), None)
        return VAEDetection(fmt, config, name, cur, official, tuple(notes))
    # The preset sharing (nearly) every key and shape; a few differences are left for the key check to list.
    best, best_score = None, 0.0
    for name, preset in VAE_PRESETS.items():
        expected = _vae_shapes(preset)
        same = sum(official.get(k) == s for k, s in expected.items())
        score = same / max(len(expected), len(official))
        if score > best_score:
            best, best_score = name, score
    if best is not None and best_score >= 0.9:
        return VAEDetection(fmt, VAE_PRESETS[best], best, cur, official, tuple(notes))
    z = official.get("conv2.weight", ("?",))[0]
    dim = official.get("encoder.conv1.weight", ("?",))[0]
    raise _fail(source, f"a VAE with z_dim={z}, dim={dim} that matches no Wan 2.1 VAE preset "
                        f"{sorted(VAE_PRESETS)} (a Wan 2.2 VAE has z_dim 48); pass config= explicitly")
