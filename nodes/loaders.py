"""SaltModelLoader and SaltVAELoader: files from ComfyUI's model folders -> salt_core objects."""
from __future__ import annotations

import logging

from . import host
from .host import DEVICES, DTYPES, EMBEDDED, SALT_FOLDER
from .memory import Placement, set_placement

log = logging.getLogger("salt.nodes")

try:
    from salt_core.dit.attention import BACKENDS as ATTENTION_BACKENDS
    from salt_core.families.table import family_names
except Exception:  # pragma: no cover - salt_core broken: keep the pack importable, fail in the node
    ATTENTION_BACKENDS = ("sdpa", "sage", "flash")

    def family_names() -> list[str]:
        return []

_MODEL_FOLDERS = (SALT_FOLDER, "diffusion_models")
_VAE_FOLDERS = ("vae", SALT_FOLDER)
_COMPANION_FOLDERS = ("vae", "text_encoders", SALT_FOLDER)  # where a checkpoint's recorded VAE / text encoder may be


def _companion_folders() -> list[str]:
    folder_paths = getattr(host.host_module("folder_paths"), "get_folder_paths", None)
    folders: list[str] = []
    for name in _COMPANION_FOLDERS if folder_paths is not None else ():
        try:
            folders += list(folder_paths(name))
        except KeyError:
            continue
    return folders


def _dtype(name: str, device):
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is unknown; allowed: {list(DTYPES)}")
    dtype = DTYPES[name]
    if dtype is None and device.type == "cpu":
        import torch

        return torch.float32  # half precision on the CPU is slow and partly unsupported
    return dtype


class SaltModelLoader:
    """Load a Salt / Wan 2.1 video generator (SALT_MODEL)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": ([EMBEDDED] + host.model_files(*_MODEL_FOLDERS), {
                    "tooltip": "The generator. '(embedded default)' is the tiny model shipped with the pack "
                               "(runs on a CPU, no download). Other entries are files in models/salt and "
                               "models/diffusion_models: official Wan 2.1 t2v, ComfyUI repackaged, diffusers, "
                               "Self Forcing / LongLive / Causal Forcing trainer checkpoints or Salt students."}),
                "dtype": (list(DTYPES), {
                    "default": "auto",
                    "tooltip": "Weight precision. 'auto' keeps the file's precision on a GPU (fp8 Linear weights stay "
                               "8-bit and are cast per layer) and uses fp32 on the CPU."}),
                "attention": (list(ATTENTION_BACKENDS), {
                    "default": "sdpa",
                    "tooltip": "Attention kernel. 'sage' / 'flash' need SageAttention / FlashAttention on CUDA; "
                               "when unusable the model falls back to PyTorch SDPA and says so in the log."}),
                "device": (list(DEVICES), {
                    "default": "auto",
                    "tooltip": "Where the model runs. 'auto' follows ComfyUI's device (the GPU, or the CPU "
                               "with --cpu)."}),
                "offload": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "On: ComfyUI manages the weights like a core model's: loaded for sampling, left "
                               "loaded between runs, moved to CPU memory when another model needs the room, on "
                               "Unload Models, and partly per layer with --lowvram / --novram. Off: the weights "
                               "never leave the device."}),
            },
            "optional": {
                "blocks_on_device": ("INT", {
                    "default": 0, "min": 0, "max": 1024,
                    "tooltip": "Block swap, for a model bigger than the GPU: keep this many transformer blocks "
                               "on the device and stream the others from pinned CPU memory while sampling, one "
                               "block ahead of the compute (1.3B: 30 blocks of ~93 MB in bf16; 14B: 40 of "
                               "~0.7 GB). 0 = all blocks on the device (off)."}),
                "family": (["auto", *family_names()], {
                    "default": "auto",
                    "tooltip": "The model family, which sets the sampling defaults (chunk size, steps, shift, cache "
                               "sink / window, CFG) and which trainer weights load. 'auto' detects it from the "
                               "file's header, name, layout and size and says why on the node; a family that "
                               "contradicts the file is refused."}),
                "weights": (["auto", "ema", "regular"], {
                    "default": "auto",
                    "tooltip": "Trainer checkpoints hold EMA and regular weights: 'auto' loads the family's "
                               "(Salt + Causal Forcing: EMA; Salt + LongLive, LongLive: regular)."}),
            },
        }

    RETURN_TYPES = ("SALT_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The loaded generator with its sampling defaults (causal or bidirectional, chunk size, "
                       "step grid, shift).",)
    FUNCTION = "load"
    CATEGORY = "Salt"
    DESCRIPTION = "Loads a Wan 2.1 video generator: the embedded default or a checkpoint from models/salt or " \
                  "models/diffusion_models. The file format and model size are detected from the file."

    def load(self, model_name, dtype="auto", attention="sdpa", device="auto", offload=True, blocks_on_device=0,
             family="auto", weights="auto"):
        from salt_core.dit.offload import check_blocks_on_device
        from salt_core.pipeline import load_salt_model
        from salt_core.sampling.settings import describe_trained

        run_on = host.compute_device(device)
        path = None if model_name == EMBEDDED else host.resolve_model_file(model_name, *_MODEL_FOLDERS)
        # ComfyUI (or, with offload off, this node) moves the weights to the device when sampling starts; the
        # blocks a block swap streams are read into CPU memory and stay there.
        if blocks_on_device:
            load_on = "cpu"
        elif offload or host.model_management():
            load_on = host.offload_device()
        else:
            load_on = run_on
        if path is None and (family, weights) != ("auto", "auto"):
            raise ValueError("family / weights apply to a checkpoint file, not to the embedded default")
        extra = {} if path is None else {"family": family, "weights": weights, "search": _companion_folders()}
        model = load_salt_model(path, device=load_on, dtype=_dtype(dtype, run_on), attention=attention, **extra)
        if path is None and DTYPES.get(dtype) is not None:
            model.dit.to(DTYPES[dtype])
        check_blocks_on_device(blocks_on_device, len(model.dit.blocks))  # the depth is known once read
        for note in model.notes:
            log.warning("salt: %s: %s", model.name, note)
        set_placement(model, Placement(device, bool(offload), int(blocks_on_device)))
        trained = f"{model.name}: trained with {describe_trained(model.sampling)}"
        if model.family:
            cfg = f", CFG {model.guidance_scale:g}" if model.guidance_scale != 1 else ""
            trained += f"; family {model.family}{cfg}"
        log.info("salt: %s", trained)
        return {"ui": {"text": [trained, *model.notes]}, "result": (model,)}


class SaltVAELoader:
    """Load a Wan 2.1 VAE for SaltDecode (SALT_VAE)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "vae_name": ([EMBEDDED] + host.model_files(*_VAE_FOLDERS), {
                    "tooltip": "'(embedded default)' is the tiny VAE of the embedded default model. Other entries "
                               "are Wan 2.1 VAE files in models/vae or models/salt (e.g. wan_2.1_vae.safetensors "
                               "or Wan2.1_VAE.pth)."}),
                "dtype": (list(DTYPES), {
                    "default": "auto",
                    "tooltip": "Weight precision; 'auto' keeps the file's precision on a GPU and uses fp32 on "
                               "the CPU."}),
                "device": (list(DEVICES), {
                    "default": "auto",
                    "tooltip": "Where decoding runs. 'auto' follows ComfyUI's device."}),
            }
        }

    RETURN_TYPES = ("SALT_VAE",)
    RETURN_NAMES = ("vae",)
    OUTPUT_TOOLTIPS = ("The VAE, decoding latents chunk by chunk with bounded memory.",)
    FUNCTION = "load"
    CATEGORY = "Salt"
    DESCRIPTION = "Loads a Wan 2.1 video VAE (official, ComfyUI, diffusers or Salt file) for streaming decode."

    def load(self, vae_name, dtype="auto", device="auto"):
        run_on = host.compute_device(device, role="vae")
        torch_dtype = _dtype(dtype, run_on)
        if vae_name == EMBEDDED:
            from salt_core.pipeline import load_salt_model

            vae = load_salt_model(None, device="cpu").vae
            if vae is None:
                raise ValueError("the embedded default model has no VAE bundled")
            if torch_dtype is not None:
                vae = vae.to(torch_dtype)
        else:
            from salt_core.checkpoints import load_vae

            vae, info = load_vae(host.resolve_model_file(vae_name, *_VAE_FOLDERS), device="cpu", dtype=torch_dtype)
            for note in info.notes:
                log.info("salt: %s: %s", vae_name, note)
        set_placement(vae, Placement(device, True))
        return (vae,)
