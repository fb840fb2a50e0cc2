"""SaltLoraLoader: a LoRA from ComfyUI's loras folder applied to a SALT_MODEL (chainable)."""
from __future__ import annotations

import dataclasses
import logging

from . import host
from .memory import placement, set_placement

log = logging.getLogger("salt.nodes")

LORA_FOLDER = "loras"


class SaltLoraLoader:
    """Apply a LoRA to a Salt / Wan 2.1 generator (SALT_MODEL in, SALT_MODEL out)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("SALT_MODEL", {"tooltip": "The generator to patch (from Salt Model Loader or another "
                                                    "Salt LoRA Loader: LoRAs stack)."}),
                "lora_name": (host.model_files(LORA_FOLDER), {
                    "tooltip": "A LoRA for the Wan 2.1 text-to-video DiT in models/loras: PEFT (e.g. LongLive's "
                               "adapter), kohya / ComfyUI or diffusers layout."}),
                "strength": ("FLOAT", {
                    "default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01,
                    "tooltip": "How strongly the LoRA applies: its update is multiplied by this (0 = off, "
                               "negative = inverted)."}),
            }
        }

    RETURN_TYPES = ("SALT_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The generator with the LoRA applied; the input model is unchanged and shares its weights "
                       "(only the LoRA factors take extra memory).",)
    FUNCTION = "apply"
    CATEGORY = "Salt"
    DESCRIPTION = "Applies a LoRA to a Salt model (also on 8-bit fp8 weights, which stay 8-bit)."

    def apply(self, model, lora_name, strength=1.0):
        from salt_core.lora import apply_lora, read_lora

        lora = read_lora(host.resolve_model_file(lora_name, LORA_FOLDER))
        for note in lora.notes:
            log.info("salt: %s: %s", lora_name, note)
        patched = dataclasses.replace(model, dit=apply_lora(model.dit, lora, float(strength)),
                                      notes=(*model.notes, f"LoRA {lora_name} at strength {float(strength):g}"))
        set_placement(patched, placement(model))
        return (patched,)
