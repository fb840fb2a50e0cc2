"""umT5 weight names at the loading edge: which layout a file uses, and its names -> Wan's official ones.

Layouts (names only, no tensor data is read here):
* "official": Wan's `models_t5_umt5-xxl-enc-bf16.pth` (token_embedding., blocks.N.attn.q., norm.) = our names.
* "transformers": UMT5EncoderModel / UMT5ForConditionalGeneration (shared., encoder.block.N.layer.0.SelfAttention.q.,
  encoder.final_layer_norm.); a seq2seq file's decoder.* / lm_head.* are ignored with a note.
* "comfyui": the same names as transformers plus a `spiece_model` uint8 tensor (the SentencePiece tokenizer)
  and, in umt5_xxl_fp8_e4m3fn_scaled, a `scaled_fp8` marker and one `.scale_weight` per Linear.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from ...checkpoints import CheckpointError
from .config import UMT5_PRESETS, UMT5Config

FORMATS = ("official", "transformers", "comfyui")
SPIECE_KEY = "spiece_model"              # ComfyUI: the serialised SentencePiece model, uint8 [n_bytes]
SCALED_FP8_KEY = "scaled_fp8"            # ComfyUI: marker whose dtype is the fp8 storage type
SCALE_WEIGHT = ".scale_weight"           # ComfyUI: per-Linear dequantisation factor
SCALE_INPUT = ".scale_input"             # ComfyUI: activation scale for fp8 matmuls; meaningless once dequantised

# official (Wan) name -> transformers / ComfyUI name, inside block N
_BLOCK_NAMES: tuple[tuple[str, str], ...] = (
    ("norm1.weight", "layer.0.layer_norm.weight"),
    ("attn.q.weight", "layer.0.SelfAttention.q.weight"),
    ("attn.k.weight", "layer.0.SelfAttention.k.weight"),
    ("attn.v.weight", "layer.0.SelfAttention.v.weight"),
    ("attn.o.weight", "layer.0.SelfAttention.o.weight"),
    ("pos_embedding.embedding.weight", "layer.0.SelfAttention.relative_attention_bias.weight"),
    ("norm2.weight", "layer.1.layer_norm.weight"),
    ("ffn.gate.0.weight", "layer.1.DenseReluDense.wi_0.weight"),   # the GELU branch
    ("ffn.fc1.weight", "layer.1.DenseReluDense.wi_1.weight"),      # the linear branch
    ("ffn.fc2.weight", "layer.1.DenseReluDense.wo.weight"),
)
_TOP_NAMES: tuple[tuple[str, str], ...] = (
    ("token_embedding.weight", "shared.weight"),
    ("norm.weight", "encoder.final_layer_norm.weight"),
)
TIED_EMBEDDING = "encoder.embed_tokens.weight"   # transformers' second name for shared.weight
_HF_BLOCK = (re.compile(r"^encoder\.block\.(\d+)\.(.+)$"), "encoder.block.")
_OFFICIAL_BLOCK = (re.compile(r"^blocks\.(\d+)\.(.+)$"), "blocks.")
_TO_OFFICIAL = ({hf: off for off, hf in _TOP_NAMES}, {hf: off for off, hf in _BLOCK_NAMES}, _HF_BLOCK, _OFFICIAL_BLOCK)
_TO_HF = (dict(_TOP_NAMES), dict(_BLOCK_NAMES), _OFFICIAL_BLOCK, _HF_BLOCK)


def _rename(name: str, direction: tuple) -> Optional[str]:
    top, in_block, (source_block, _), (_, target_prefix) = direction
    if name in top:
        return top[name]
    m = source_block.match(name)
    if m and m.group(2) in in_block:
        return f"{target_prefix}{m.group(1)}.{in_block[m.group(2)]}"
    return None


def official_to_transformers_name(name: str) -> str:
    """One official name -> its transformers / ComfyUI spelling (ValueError for a name that is not umT5's)."""
    out = _rename(name, _TO_HF)
    if out is None:
        raise ValueError(f"{name!r} is not a umT5 encoder weight name")
    return out


def _transformers_to_official_name(name: str) -> Optional[str]:
    return _rename(name, _TO_OFFICIAL)


# ---- what a file that is not umT5 looks like -------------------------------------------------------------

_FOREIGN: tuple[tuple[tuple[str, ...], str], ...] = (
    (("patch_embedding.", "self_attn.q.", "cross_attn.", "condition_embedder.", ".attn1.to_q."),
     "a Wan DiT (diffusion model); give it as the checkpoint, not as the text encoder"),
    (("encoder.conv1.", "decoder.conv1.", "encoder.downsamples.", "decoder.upsamples.", "encoder.down_blocks.",
      "decoder.up_blocks.", "quant_conv."),
     "a video VAE; give it as the VAE, not as the text encoder"),
    (("text_model.encoder.layers.", "transformer.resblocks."), "a CLIP text encoder, not umT5-XXL"),
    (("model.layers.0.", "layers.0.attention.wq."), "a decoder-only language model (Llama / Qwen / Gemma-style keys)"),
    (("lora_A", "lora_B", "lora_down", "lora_up"), "a LoRA / adapter file, not a full text encoder"),
    (("position_embedding", ".qkv."), "the embedded default's tiny text encoder (load it with load_text_encoder)"),
)


def describe_foreign(names: Iterable[str]) -> Optional[str]:
    """What a file that is not a umT5 encoder looks like, or None when it looks like nothing known."""
    names = list(names)
    for markers, what in _FOREIGN:
        hits = [n for n in names if any(m in n for m in markers)]
        if hits:
            return f"{what} (keys like {hits[:3]})"
    return None


# ---- layout detection -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    format: str                            # one of FORMATS
    names: dict[str, str]                  # official name -> name in the file
    shapes: dict[str, tuple[int, ...]]     # official name -> shape
    scales: dict[str, str] = field(default_factory=dict)   # official name -> its .scale_weight in the file
    spiece_key: Optional[str] = None       # name of the embedded tokenizer tensor, if any
    notes: tuple[str, ...] = ()


def _hf_prefix(names: Iterable[str]) -> Optional[str]:
    """The prefix before `encoder.final_layer_norm.weight` (e.g. '' or 'umt5xxl.transformer.'), else None."""
    anchor = "encoder.final_layer_norm.weight"
    ends = [n[: -len(anchor)] for n in names if n.endswith(anchor)]
    return ends[0] if len(ends) == 1 else None


def detect_layout(shapes: Mapping[str, tuple], source: str) -> Layout:
    """File names and shapes -> Layout. Unknown extra keys are kept for the key check to report (as
    unexpected); a file that is no umT5 encoder at all gets one error saying what it looks like."""
    names = list(shapes)
    if all(k in shapes for k in ("token_embedding.weight", "norm.weight", "blocks.0.attn.q.weight")):
        return Layout("official", {n: n for n in names}, {n: tuple(shapes[n]) for n in names})
    prefix = _hf_prefix(names)
    if prefix is None:
        what = describe_foreign(names)
        looks = f"this looks like {what}" if what else f"found keys like {names[:5]} ({len(names)} keys)"
        raise CheckpointError(
            f"{source}: not a umT5 text encoder: {looks}. Expected Wan's models_t5_umt5-xxl-enc-bf16.pth "
            "(token_embedding.weight, blocks.N.attn.q.weight, ...), ComfyUI's umt5_xxl_*.safetensors or the "
            "transformers layout (shared.weight, encoder.block.N.layer.0.SelfAttention.q.weight, ...)")
    notes: list[str] = []
    mapping: dict[str, str] = {}
    scales: dict[str, str] = {}
    ignored: list[str] = []
    spiece_key = None
    comfy = False
    for name in names:
        if not name.startswith(prefix):
            mapping[name] = name           # reported as unexpected by the key check
            continue
        inner = name[len(prefix):]
        if inner == SPIECE_KEY:
            spiece_key, comfy = name, True
        elif inner == SCALED_FP8_KEY:
            comfy = True
        elif inner.endswith(SCALE_WEIGHT):
            official = _transformers_to_official_name(inner[: -len(SCALE_WEIGHT)] + ".weight")
            if official is None:
                mapping[name] = name
            else:
                scales[official] = name
            comfy = True
        elif inner.endswith(SCALE_INPUT) or inner.startswith(("decoder.", "lm_head.")) or inner == TIED_EMBEDDING:
            ignored.append(name)
        else:
            official = _transformers_to_official_name(inner)
            mapping[official if official is not None else name] = name
    if "token_embedding.weight" not in mapping and prefix + TIED_EMBEDDING in shapes:
        mapping["token_embedding.weight"] = prefix + TIED_EMBEDDING
        ignored.remove(prefix + TIED_EMBEDDING)
    if prefix:
        notes.append(f"stripped the prefix {prefix!r}")
    if any(n[len(prefix):].startswith(("decoder.", "lm_head.")) for n in ignored):
        notes.append("an encoder-decoder checkpoint: its decoder and lm_head weights are not used")
    if scales:
        notes.append(f"scaled fp8 weights: {len(scales)} Linear weights dequantised (weight * scale_weight)")
    return Layout("comfyui" if comfy else "transformers", mapping, {o: tuple(shapes[s]) for o, s in mapping.items()},
                  scales, spiece_key, tuple(notes))


# ---- geometry ---------------------------------------------------------------------------------------------

def _dim(shapes: Mapping[str, tuple], name: str, ndim: int, source: str, names: Mapping[str, str]) -> tuple:
    s = shapes.get(name)
    if s is None or len(s) != ndim:
        found = "missing" if s is None else f"of shape {tuple(s)}"
        raise CheckpointError(f"{source}: cannot work out the umT5 geometry: {names.get(name, name)!r} is {found} "
                              f"(expected {ndim} dimensions)")
    return tuple(s)


def detect_config(layout: Layout, source: str) -> tuple[UMT5Config, Optional[str]]:
    """Official-named shapes -> (config, preset name or None). A T5 v1.1 file (one relative-position table in
    block 0, shared by every layer, as the t5xxl of Flux / SD3) is refused by name."""
    s, n = layout.shapes, layout.names
    vocab, dim = _dim(s, "token_embedding.weight", 2, source, n)
    layers = {int(m.group(1)) for k in s if (m := _OFFICIAL_BLOCK[0].match(k))}
    if not layers:
        raise CheckpointError(f"{source}: no encoder blocks found (keys like {list(n.values())[:5]})")
    with_bias = {int(m.group(1)) for k in s
                 if (m := _OFFICIAL_BLOCK[0].match(k)) and k.endswith("pos_embedding.embedding.weight")}
    if "pos_embedding.embedding.weight" in s or (with_bias == {0} and len(layers) > 1):
        raise CheckpointError(
            f"{source}: a T5 v1.1 encoder (one relative position table in block 0, shared by all layers, like the "
            "t5xxl of Flux / SD3), not umT5 (a table in every layer). Wan 2.1 needs umT5-XXL, e.g. ComfyUI's "
            "umt5_xxl_fp16.safetensors or Wan's models_t5_umt5-xxl-enc-bf16.pth")
    buckets, heads = _dim(s, "blocks.0.pos_embedding.embedding.weight", 2, source, n)
    attn_dim = _dim(s, "blocks.0.attn.q.weight", 2, source, n)[0]
    ffn_dim = _dim(s, "blocks.0.ffn.gate.0.weight", 2, source, n)[0]
    if attn_dim % heads:
        raise CheckpointError(f"{source}: attention width {attn_dim} is not a multiple of the {heads} heads of the "
                              "relative position table")
    geometry = dict(vocab_size=vocab, dim=dim, num_heads=heads, head_dim=attn_dim // heads, ffn_dim=ffn_dim,
                    num_layers=max(layers) + 1, num_buckets=buckets)
    for name, preset in UMT5_PRESETS.items():
        if all(getattr(preset, k) == v for k, v in geometry.items()):
            return preset, name
    try:
        return UMT5Config(**geometry), None
    except ValueError as e:
        raise CheckpointError(f"{source}: unusable umT5 geometry {geometry}: {e}") from None
