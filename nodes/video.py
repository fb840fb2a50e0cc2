"""SaltDecode (latents -> IMAGE, streamed) and SaltSaveVideo (IMAGE -> MP4 in the output folder)."""
from __future__ import annotations

import logging
import math
import os
from typing import Optional

import torch

from . import host
from .memory import decode_bytes, vae_on_device

log = logging.getLogger("salt.nodes")


# The IMAGE a decode returns holds every frame in RAM; refuse one larger than this share of the free memory
# (the decode's own working memory and the copies later nodes make need the rest).
IMAGE_RAM_SHARE = 0.5
WAN_TIME_FACTOR, WAN_SPACE_FACTOR = 4, 8  # ComfyUI's Wan 2.1 VAE: 4x in time (frames = 4k+1), 8x in space


def _latents(samples) -> torch.Tensor:
    z = samples.get("samples") if isinstance(samples, dict) else samples
    if not isinstance(z, torch.Tensor) or z.ndim != 5:
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"expected a video LATENT with samples [B, 16, T, H/8, W/8], got {shape}; "
                         "an image latent (4-D) cannot be decoded into a video")
    if not z.is_floating_point():
        raise ValueError(f"the LATENT's samples must be floating point, got {z.dtype}")
    if 0 in z.shape:
        raise ValueError(f"the LATENT is empty: samples have shape {tuple(z.shape)}")
    return z


def _check_finite(z: torch.Tensor) -> None:
    if not bool(torch.isfinite(z).all()):
        raise ValueError("the LATENT's samples contain NaN or inf values (did the sampler diverge?); nothing to decode")


def free_ram_bytes() -> Optional[int]:
    """Memory available to new allocations (psutil, else Linux's MemAvailable); None when unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_image_size(batch: int, frames: int, height: int, width: int, copies: int = 1) -> None:
    """Refuse, before allocating, an IMAGE [batch*frames, height, width, 3] float32 that would not fit in RAM
    (`copies` of it alive at once while it is made)."""
    need = batch * frames * height * width * 3 * 4 * copies
    free = free_ram_bytes()
    if free is not None and need > IMAGE_RAM_SHARE * free:
        gib = 1024 ** 3
        raise ValueError(
            f"decoding these latents would make an IMAGE of {batch * frames} frames of {width}x{height} "
            f"({need / gib:.1f} GiB of float32{' with the tiled decode blend buffer' if copies > 1 else ''}), "
            f"more than {IMAGE_RAM_SHARE:.0%} of the {free / gib:.1f} GiB of "
            "free memory (an IMAGE holds every frame at once); sample fewer frames, or make long videos with "
            "`python -m salt_core generate`, which streams the frames into the MP4")


def decode_core_vae(vae, z: torch.Tensor, tile: int = 0, overlap: int = 8) -> torch.Tensor:
    """ComfyUI's own VAE object: its decode already runs causally frame by frame; tile > 0 takes its own tiled
    decode (tiles of `tile` latent cells sharing `overlap`, as VAEDecodeTiled)."""
    if getattr(vae, "latent_dim", 3) != 3 or vae.latent_channels != z.shape[1]:
        raise ValueError(f"incompatible VAE: the latents have {z.shape[1]} channels [B, C, T, h, w] but this VAE "
                         f"decodes {vae.latent_channels}-channel {'video' if vae.latent_dim == 3 else 'image'} "
                         "latents; load the Wan 2.1 VAE (wan_2.1_vae.safetensors)")
    B, _, T, h, w = z.shape
    check_image_size(B, 1 + WAN_TIME_FACTOR * (T - 1), h * WAN_SPACE_FACTOR, w * WAN_SPACE_FACTOR)
    _check_finite(z)
    images = vae.decode_tiled(z, tile_x=tile, tile_y=tile, overlap=overlap) if tile else vae.decode(z)
    return images.reshape(-1, *images.shape[-3:]) if images.ndim == 5 else images


def plan_salt_decode(vae, z: torch.Tensor, chunk: int, tiling=None):
    """How our VAE decodes raw latents z [B, C, T, h, w], settled before any compute (a bad tile or a budget too
    small raises here): returns (decode(device) -> IMAGE [B*N, H, W, 3], the decode's device bytes besides the
    weights). Untiled: streamed `chunk` latent frames at a time. Tiled: the whole clip one tile at a time
    (`decode_tiled`: one tile's caches alive, a fraction of the streamed decode's peak), assembled in RAM."""
    from salt_core.vae import plan_clip_decode

    cfg = vae.config
    if z.shape[1] != cfg.z_dim:
        raise ValueError(f"incompatible VAE: the latents have {z.shape[1]} channels but this VAE has z_dim="
                         f"{cfg.z_dim}; use the VAE that belongs to the model")
    B, _, T, h, w = z.shape
    tiled = tiling is not None and tiling.active
    # the tiled decode blends in a float32 video beside the IMAGE it becomes
    s = cfg.spatial_factor
    check_image_size(B, cfg.pixel_frames(T), h * s, w * s, copies=2 if tiled else 1)
    _check_finite(z)
    if not tiled:
        need = decode_bytes(vae, (h, w), B, min(chunk, T))
        return (lambda device: _decode_streamed(vae, z, chunk, device)), need
    plan, need = plan_clip_decode(vae, B, T, (h, w), tiling, output_on_device=False)
    return (lambda device: _decode_tiled_clip(vae, z, tiling, plan.count, device)), need.total


def _decode_streamed(vae, z: torch.Tensor, chunk: int, device: torch.device) -> torch.Tensor:
    from salt_core.video_io import frames_from_model_space

    cfg = vae.config
    B, _, T, h, w = z.shape
    N, H, W = cfg.pixel_frames(T), h * cfg.spatial_factor, w * cfg.spatial_factor
    out = torch.empty(B, N, H, W, 3, dtype=torch.float32)  # IMAGE holds all frames; the decode itself is bounded
    decoder = vae.streaming_decoder()
    progress = host.Progress(math.ceil(T / chunk))
    n = 0
    for i, zc in enumerate(z.split(chunk, dim=2)):
        host.check_interrupt()
        px = decoder.decode_next(zc.to(device, vae.dtype)).float().cpu()  # [B, 3, k, H, W] in [-1, 1]
        k = px.shape[2]
        for b in range(B):
            out[b, n:n + k] = frames_from_model_space(px[b])
        n += k
        progress.update(i + 1)
    return out.reshape(B * N, H, W, 3)


def _decode_tiled_clip(vae, z: torch.Tensor, tiling, tiles: int, device: torch.device) -> torch.Tensor:
    from salt_core.vae import decode_tiled
    from salt_core.video_io import frames_from_model_space

    progress = host.Progress(tiles)

    def on_tile(done: int, total: int) -> None:
        progress.update(done)
        host.check_interrupt()

    host.check_interrupt()
    video = decode_tiled(vae, z.to(device, vae.dtype), tiling.tile, tiling.overlap, tiling.memory_budget,
                         on_tile=on_tile, output_device="cpu")  # [B, 3, N, H, W] in [-1, 1], in RAM
    return torch.cat([frames_from_model_space(v.float()) for v in video])


class SaltDecode:
    """Decode video latents to frames, chunk by chunk."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "samples": ("LATENT", {"tooltip": "Video latents in raw Wan VAE space (SaltSampler's output)."}),
                "vae": ("SALT_VAE,VAE", {
                    "tooltip": "SaltVAELoader's VAE (streamed with bounded memory), or ComfyUI's VAE from "
                               "VAELoader (the Wan 2.1 VAE)."}),
                "chunk_frames": ("INT", {
                    "default": 1, "min": 1, "max": 1024,
                    "tooltip": "Latent frames decoded per step with a Salt VAE (1 = least memory). The result "
                               "is the same for any value."}),
            },
            "optional": {
                "tile": ("INT", {
                    "default": 0, "min": 0, "max": 4096,
                    "tooltip": "Tile side in latent cells (8 px) for a decode tiled in space; 0 = untiled, or "
                               "the largest tile that fits memory_budget_mb. A Salt VAE needs tiles of at least "
                               "its receptive field (25 cells for Wan 2.1); ComfyUI's VAE uses its own tiled "
                               "decode."}),
                "tile_overlap": ("INT", {
                    "default": 8, "min": 0, "max": 4096,
                    "tooltip": "Latent cells shared by neighbouring tiles, blended so the seams do not show."}),
                "memory_budget_mb": ("INT", {
                    "default": 0, "min": 0, "max": 1 << 30,
                    "tooltip": "Salt VAE: MiB the decode may use besides the weights (0 = no limit); without a "
                               "tile, the largest tile that fits is chosen, and a budget too small for any tile "
                               "is refused before decoding."}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The video frames, [frames, height, width, 3] in 0..1.",)
    FUNCTION = "decode"
    CATEGORY = "Salt"
    DESCRIPTION = "Decodes video latents into frames with a streaming (chunked, causal) Wan 2.1 VAE decode."

    def decode(self, samples, vae, chunk_frames=1, tile=0, tile_overlap=8, memory_budget_mb=0):
        for name, value, low, what in (("chunk_frames", chunk_frames, 1, "latent frames decoded per step"),
                                       ("tile", tile, 0, "latent cells per tile side, 0 = untiled"),
                                       ("tile_overlap", tile_overlap, 0, "latent cells shared by neighbouring tiles"),
                                       ("memory_budget_mb", memory_budget_mb, 0, "MiB, 0 = no limit")):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low} ({what}), got {value!r}")
        z = _latents(samples)
        if host.is_core_vae(vae):
            return (decode_core_vae(vae, z, tile, tile_overlap),)
        from salt_core.vae import DecodeTiling, WanVAE

        if not isinstance(vae, WanVAE):
            raise TypeError(f"vae must come from SaltVAELoader or VAELoader, got {type(vae).__name__}")
        tiling = DecodeTiling(tile or None, tile_overlap, memory_budget_mb << 20 or None)
        try:
            decode, need = plan_salt_decode(vae, z, chunk_frames, tiling)
        except ValueError as e:
            if not tiling.active:
                raise
            raise ValueError(f"SaltDecode (tile={tile}, tile_overlap={tile_overlap}, memory_budget_mb="
                             f"{memory_budget_mb}): {e}") from None
        with vae_on_device(vae, need) as device, torch.no_grad():
            return (decode(device),)


class SaltSaveVideo:
    """Write frames to an H.264 MP4 in ComfyUI's output folder and show it on the node."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The frames to save, [frames, height, width, 3]."}),
                "fps": ("FLOAT", {
                    "default": 16.0, "min": 0.1, "max": 240.0, "step": 1.0,
                    "tooltip": "Frames per second (Wan 2.1 / Self Forcing: 16)."}),
                "filename_prefix": ("STRING", {
                    "default": "salt/video",
                    "tooltip": "File name prefix inside the output folder; may contain a subfolder and the "
                               "placeholders %width% and %height%."}),
                "crf": ("INT", {
                    "default": 19, "min": 0, "max": 51,
                    "tooltip": "H.264 quality: 0 is near lossless, 51 the worst; 19 is visually transparent."}),
            }
        }

    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"
    CATEGORY = "Salt"
    DESCRIPTION = "Saves frames as an MP4 video (H.264, yuv420p) in the output folder."

    def save(self, images, fps=16.0, filename_prefix="salt/video", crf=19):
        from salt_core.video_io import write_mp4

        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be an IMAGE [frames, height, width, 3], got {shape}")
        if images.shape[0] == 0:
            raise ValueError("images: the IMAGE has no frames; nothing to save")
        if not isinstance(filename_prefix, str) or not filename_prefix.strip(" ./\\") or "\0" in filename_prefix:
            raise ValueError(f"filename_prefix must name a file (e.g. 'salt/video'), got {filename_prefix!r}")
        _, H, W, _ = images.shape
        try:
            folder, stem, counter, subfolder = host.save_path(filename_prefix, W, H)
        except FileExistsError as e:
            raise ValueError(f"filename_prefix {filename_prefix!r}: {e.filename} is a file, not a folder") from None
        except OSError as e:
            raise ValueError(f"filename_prefix {filename_prefix!r}: cannot make the output folder "
                             f"{e.filename or ''}: {e.strerror or e}") from None
        name = f"{stem}_{counter:05}_.mp4"
        path, count = write_mp4(os.path.join(folder, name), images, fps=fps, crf=int(crf), pad_odd=True, name="images")
        log.info("salt: saved %d frames to %s", count, path)
        return {"ui": {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}],
                       "animated": (True,)}}
