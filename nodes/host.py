"""Everything the nodes need from the ComfyUI host, imported lazily and guarded.

Inside ComfyUI these call `folder_paths`, `comfy.utils`, `comfy.model_management` and
`latent_preview`; under plain pytest (no ComfyUI) each has a small stand-in, so every node
function runs without the host. Modules are looked up at call time (never cached at import),
so tests can inject fakes through `sys.modules`.
"""
from __future__ import annotations

import importlib
import logging
import os

import torch

log = logging.getLogger("salt.nodes")

SALT_FOLDER = "salt"  # models/salt, registered next to ComfyUI's own model folders
EMBEDDED = "(embedded default)"
MODEL_EXTENSIONS = {".safetensors", ".sft", ".pt", ".pth", ".ckpt", ".bin"}


def host_module(name: str):
    """The ComfyUI module `name`, or None outside ComfyUI."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def in_comfyui() -> bool:
    return host_module("folder_paths") is not None


# ---- model folders ------------------------------------------------------------------------------

def register_model_folder() -> None:
    """Add models/salt to ComfyUI's folder registry without replacing what is there
    (e.g. a `salt:` entry of extra_model_paths.yaml keeps its paths; ours is appended)."""
    fp = host_module("folder_paths")
    if fp is None:
        return
    ours = os.path.join(fp.models_dir, SALT_FOLDER)
    entry = fp.folder_names_and_paths.get(SALT_FOLDER)
    if entry is None:
        fp.folder_names_and_paths[SALT_FOLDER] = ([ours], set(fp.supported_pt_extensions))
        return
    paths, exts = entry
    if ours not in paths:
        paths.append(ours)
    if isinstance(exts, set) and not exts:  # created by add_model_folder_path with no extensions
        exts.update(fp.supported_pt_extensions)


def model_files(*folders: str) -> list[str]:
    """File names ComfyUI lists in these model folders (deduplicated, in folder order)."""
    fp = host_module("folder_paths")
    if fp is None:
        return []
    names: list[str] = []
    for folder in folders:
        try:
            listed = fp.get_filename_list(folder)
        except KeyError:
            continue
        names += [n for n in listed if n not in names]
    return names


def resolve_model_file(name: str, *folders: str) -> str:
    """A name from a model folder list (or, outside ComfyUI, any path) -> an existing file path."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("no model file selected")
    fp = host_module("folder_paths")
    if fp is not None:
        for folder in folders:
            try:
                path = fp.get_full_path(folder, name)
            except KeyError:
                path = None
            if path:
                return path
    if os.path.isfile(name):
        return name
    where = ", ".join(f"models/{f}" for f in folders)
    raise FileNotFoundError(f"model file {name!r} was not found in {where}; put it there (or pick another file) "
                            "and press R in ComfyUI to refresh the lists")


def output_directory() -> str:
    fp = host_module("folder_paths")
    if fp is not None:
        return fp.get_output_directory()
    return os.path.abspath(os.environ.get("SALT_OUTPUT_DIR", "output"))


def save_path(prefix: str, width: int, height: int) -> tuple[str, str, int, str]:
    """-> (folder, file stem, counter, subfolder) for a new output file, as ComfyUI's savers do."""
    out = output_directory()
    fp = host_module("folder_paths")
    if fp is not None:
        folder, stem, counter, subfolder, _ = fp.get_save_image_path(prefix, out, width, height)
        return folder, stem, counter, subfolder
    subfolder, stem = os.path.split(os.path.normpath(prefix))
    folder = os.path.join(out, subfolder)
    if os.path.commonpath((out, os.path.abspath(folder))) != out:
        raise ValueError(f"filename_prefix {prefix!r} points outside the output folder")
    os.makedirs(folder, exist_ok=True)
    taken = [f for f in os.listdir(folder) if f.startswith(stem + "_")]
    counter = 1 + max((int(f[len(stem) + 1:].split("_")[0]) for f in taken
                       if f[len(stem) + 1:].split("_")[0].isdigit()), default=0)
    return folder, stem, counter, subfolder


# ---- devices and model management -----------------------------------------------------------------

DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def device_choices() -> tuple[str, ...]:
    """The loader's `device` options on this machine: auto, cpu, cuda, and cuda:N when there are several GPUs."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ("auto", "cpu", "cuda", *(f"cuda:{i}" for i in range(count if count > 1 else 0)))


DEVICES = device_choices()


def compute_device(choice: str = "auto", role: str = "model") -> torch.device:
    """A loader's `device` setting -> the torch device; 'auto' follows ComfyUI (its VAE device for role 'vae').
    A device this machine does not have is refused, naming the setting and what is allowed here."""
    mm = host_module("comfy.model_management")
    if choice == "auto":
        if mm is not None:
            return mm.vae_device() if role == "vae" and hasattr(mm, "vae_device") else mm.get_torch_device()
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    usable = [c for c in device_choices() if c.startswith("cuda")] if torch.cuda.is_available() else []
    if choice in usable:
        return torch.device(choice)
    why = "no CUDA GPU is available" if not usable else f"this machine has {torch.cuda.device_count()} CUDA GPU(s)"
    raise ValueError(f"device {choice!r} was chosen but {why}; allowed here: {', '.join(['auto', 'cpu', *usable])}")


def offload_device(role: str = "model") -> torch.device:
    """Where ComfyUI keeps a model it is not using (the CPU, or the GPU with --highvram / --gpu-only)."""
    mm = host_module("comfy.model_management")
    if mm is None:
        return torch.device("cpu")
    return mm.vae_offload_device() if role == "vae" and hasattr(mm, "vae_offload_device") else mm.unet_offload_device()


def model_management():
    """(comfy.model_management, comfy.model_patcher.ModelPatcher) when the host manages models, else None."""
    mm = host_module("comfy.model_management")
    patcher = host_module("comfy.model_patcher")
    if mm is None or patcher is None or not hasattr(mm, "load_models_gpu") or not hasattr(patcher, "ModelPatcher"):
        return None
    return mm, patcher.ModelPatcher


def release_cache() -> None:
    mm = host_module("comfy.model_management")
    if mm is not None:
        mm.soft_empty_cache()


# ---- progress, interruption, previews ------------------------------------------------------------

def check_interrupt() -> None:
    """Raise ComfyUI's interruption exception if the user pressed Cancel."""
    mm = host_module("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


class Progress:
    """comfy.utils.ProgressBar when present (its hook also raises on interrupt), else a no-op."""

    def __init__(self, total: int):
        utils = host_module("comfy.utils")
        self.bar = utils.ProgressBar(total) if utils is not None else None
        self.total = total

    def update(self, value: int, preview=None) -> None:
        if self.bar is not None:
            self.bar.update_absolute(value, self.total, preview)


def previews_enabled() -> bool:
    cli = host_module("comfy.cli_args")
    if cli is None:
        return True  # outside ComfyUI a preview is only built when a test asks for it
    return cli.args.preview_method != cli.LatentPreviewMethod.NoPreviews


def preview_max_size() -> int:
    cli = host_module("comfy.cli_args")
    return int(getattr(cli.args, "preview_size", 512)) if cli is not None else 512


def core_latent_previewer():
    """ComfyUI's previewer for Wan 2.1 latents (latent2rgb or TAESD, as the user set it), or None."""
    lp = host_module("latent_preview")
    formats = host_module("comfy.latent_formats")
    if lp is None or formats is None or not hasattr(formats, "Wan21"):
        return None
    try:
        return lp.get_previewer(torch.device("cpu"), formats.Wan21())
    except Exception as e:  # a broken TAESD file must not stop sampling
        log.warning("salt: no latent preview (%s)", e)
        return None


def is_core_vae(obj) -> bool:
    """ComfyUI's own VAE object (comfy.sd.VAE), recognised by what it exposes."""
    return hasattr(obj, "first_stage_model") and callable(getattr(obj, "decode", None)) \
        and hasattr(obj, "latent_channels")


def interrupted_exception() -> type | None:
    mm = host_module("comfy.model_management")
    return getattr(mm, "InterruptProcessingException", None) if mm is not None else None
