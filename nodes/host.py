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


# ---- devices -------------------------------------------------------------------------------------

DEVICES = ("auto", "cpu", "cuda")
DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def compute_device(choice: str = "auto") -> torch.device:
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was chosen but no CUDA GPU is available; use 'auto' or 'cpu'")
    mm = host_module("comfy.model_management")
    if choice == "auto" and mm is not None:
        return mm.get_torch_device()
    if choice == "cuda" or torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def offload_device() -> torch.device:
    mm = host_module("comfy.model_management")
    return mm.unet_offload_device() if mm is not None else torch.device("cpu")


def make_room(nbytes: int, device: torch.device) -> None:
    """Ask ComfyUI to unload its own models until `nbytes` fit on `device`."""
    mm = host_module("comfy.model_management")
    if mm is not None and device.type != "cpu":
        mm.free_memory(nbytes, device)


def release_cache() -> None:
    mm = host_module("comfy.model_management")
    if mm is not None:
        mm.soft_empty_cache()


def module_bytes(module: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


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
