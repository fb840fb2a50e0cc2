"""Checkpoints: read any supported Wan 2.1 DiT / VAE file safely, detect its format and config,
load it all-or-nothing; write our own format (safetensors + header) atomically.

    model, info = load_dit("wan2.1_t2v_1.3B_fp16.safetensors")   # official / ComfyUI / diffusers / Self Forcing / ours
    save_dit("student.safetensors", model, SamplingDefaults(causal=True))
    vae, vinfo = load_vae("wan_2.1_vae.safetensors")
"""
from .detect import FORMATS, Detection, VAEDetection, detect, detect_config, detect_from_shapes, detect_vae
from .io import CheckpointError, CheckpointReader, TensorInfo, open_checkpoint, read_safetensors_header
from .keys import diffusers_to_official as dit_diffusers_to_official
from .keys import official_to_diffusers as dit_official_to_diffusers
from .keys import strip_wrapper_segments
from .load import LoadedInfo, VAELoadedInfo, inspect_dit, load_dit, load_vae
from .save import SALT_FORMAT_VERSION, atomic_write, save_dit, save_vae

__all__ = [
    "load_dit", "inspect_dit", "load_vae", "save_dit", "save_vae", "LoadedInfo", "VAELoadedInfo",
    "detect", "detect_from_shapes", "detect_config", "detect_vae", "Detection", "VAEDetection", "FORMATS",
    "open_checkpoint", "read_safetensors_header", "CheckpointReader", "TensorInfo", "CheckpointError",
    "dit_official_to_diffusers", "dit_diffusers_to_official", "strip_wrapper_segments",
    "SALT_FORMAT_VERSION", "atomic_write",
]
