"""LoRA key names -> the DiT parameter they patch (names only, no tensors).

A key is `<prefix><module><part>`:
* prefix: `base_model.model.` (PEFT), `diffusion_model.` / `model.diffusion_model.` (ComfyUI), `transformer.`
  (diffusers), `lora_unet_` / `lora_unet__` (kohya, dots written as underscores), or none;
* module: an official Wan name (`blocks.0.self_attn.q`), its diffusers name (`blocks.0.attn1.to_q`), or
  either with underscores (`blocks_0_self_attn_q`);
* part: `.lora_A.weight` / `.lora_B.weight` (PEFT, diffusers; also with `.default`), `.lora_down.weight` /
  `.lora_up.weight` / `.alpha` (kohya, ComfyUI), `.diff` / `.diff_b` (full weight / bias differences, which
  some Wan LoRAs carry for norms and biases, as ComfyUI's comfy/lora.py reads them).
"""
from __future__ import annotations

from typing import Iterable, Optional

from ..checkpoints import keys as K

PARTS: tuple[tuple[str, str], ...] = (
    (".lora_A.default.weight", "down"), (".lora_B.default.weight", "up"),
    (".lora_A.weight", "down"), (".lora_B.weight", "up"),
    (".lora_down.weight", "down"), (".lora_up.weight", "up"),
    (".alpha", "alpha"), (".diff_b", "diff_b"), (".diff", "diff"),
)
UNSUPPORTED = {
    ".dora_scale": "DoRA", ".lora_magnitude_vector": "DoRA", ".lora_mid.": "LoCon (Tucker)", ".hada_": "LoHa",
    ".lokr_": "LoKr", ".oft_": "OFT", ".set_weight": "weight replacement", ".w_norm": "norm patch",
    ".b_norm": "norm patch", "reshape_weight": "reshaped patch",
}
PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.", "lora_unet__",
            "lora_unet_", "lycoris_", "unet.", "model.", "module.")
TEXT_ENCODER_PREFIXES = ("lora_te", "text_encoder", "text_encoders.", "te_", "te1_", "te2_")


def split_part(key: str) -> Optional[tuple[str, str]]:
    """'<module><part>' -> (module spelling, part kind), or None for an unknown part."""
    for suffix, kind in PARTS:
        if key.endswith(suffix):
            return key[: -len(suffix)], kind
    return None


def unsupported_kind(key: str) -> Optional[str]:
    return next((what for marker, what in UNSUPPORTED.items() if marker in key), None)


def is_text_encoder_key(key: str) -> bool:
    return key.startswith(TEXT_ENCODER_PREFIXES)


def target_table(param_names: Iterable[str]) -> dict[str, str]:
    """Every accepted spelling of a module (or of a bare parameter such as `modulation`) -> its official name."""
    params = set(param_names)
    modules = set()
    for p in params:
        head, _, leaf = p.rpartition(".")
        modules.add(head if leaf in ("weight", "bias") else p)
    table: dict[str, str] = {}
    for m in sorted(modules):
        spellings = [m]
        d = K.official_to_diffusers_name(m + ".weight") if m + ".weight" in params else K.official_to_diffusers_name(m)
        if d is not None:
            spellings.append(d[: -len(".weight")] if d.endswith(".weight") and m + ".weight" in params else d)
        for s in spellings:
            table.setdefault(s, m)
            table.setdefault(s.replace(".", "_"), m)
    return table


def resolve_module(spelling: str, table: dict[str, str]) -> Optional[str]:
    """A module spelling with any known prefixes -> official module name, or None."""
    s = K.strip_wrapper_segments(spelling)
    while True:
        if s in table:
            return table[s]
        prefix = next((p for p in PREFIXES if s.startswith(p)), None)
        if prefix is None:
            return None
        s = s[len(prefix):]
