"""LoRA adapters on the Wan DiT: PEFT, kohya / ComfyUI and diffusers layouts, applied on the fly or merged.

    dit2 = apply_lora(dit, "style.safetensors", strength=0.8)    # dit untouched; they share the base tensors
    dit3 = apply_lora(dit2, "motion.safetensors", 0.5)           # stacks
    merge_lora(dit3)                                             # fold the patches in (in place)
    model, info = load_dit("longlive_base.pt", lora=[("lora.pt", 1.0)])   # base + adapter in one call
"""
from .apply import apply_lora, lora_layers, match_lora, merge_lora
from .file import LoraFile, PeftSettings, read_lora

__all__ = ["apply_lora", "merge_lora", "match_lora", "lora_layers", "read_lora", "LoraFile", "PeftSettings"]
