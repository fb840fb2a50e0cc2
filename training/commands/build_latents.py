"""`build-latents`: video clips (folder, manifest or callable) -> VAE latents + text embeddings on disk.
`build.source: random` writes a random latent dataset of build.latent_shape instead (no VAE needed)."""
from __future__ import annotations

import os

from salt_core.checkpoints import load_vae

from ..config import TrainConfig
from ..config_load import ConfigError
from ..data.build import build_latents, callable_clips, video_folder_clips
from ..data.random_source import write_random_latents
from ..data.shards import INDEX
from ..data.text import build_text_encoder
from ..distributed import pick_device
from .common import apply_threads


def run(cfg: TrainConfig, command: str = "build-latents") -> dict:
    b = cfg.build
    if not b.output:
        raise ConfigError("build.output is empty: give the dataset folder to write")
    if os.path.exists(os.path.join(b.output, INDEX)):
        raise ConfigError(f"build.output {b.output!r} already holds a dataset; remove it or choose another folder")
    if b.source == "random":
        if len(b.latent_shape) != 4:
            raise ConfigError(f"build.latent_shape must be [C, T, H, W], got {list(b.latent_shape)}")
        text_dim = cfg_text_dim(cfg)
        write_random_latents(b.output, count=b.limit or 16, latent_shape=tuple(b.latent_shape), text_dim=text_dim,
                             max_tokens=cfg.text.max_tokens, seed=cfg.run.seed, samples_per_shard=b.samples_per_shard,
                             negative_prompt=cfg.text.negative_prompt)
        print(f"wrote {b.limit or 16} random latent samples to {b.output}")
        return {"output": b.output, "count": b.limit or 16}
    if not b.path:
        what = "video folder / manifest" if b.source == "videos" else "module:function"
        raise ConfigError(f"build.path is empty: give the {what}")
    if b.source == "videos" and not os.path.exists(b.path):
        raise ConfigError(f"build.path {b.path!r}: no such folder or manifest")
    if not b.vae or not os.path.exists(b.vae):
        raise ConfigError(f"build.vae {b.vae!r}: VAE checkpoint not found")
    apply_threads(cfg)
    device = pick_device(cfg.run.device)
    vae, _ = load_vae(b.vae, device=device)
    encoder = build_text_encoder(cfg.text, cfg_text_dim(cfg))
    clips = video_folder_clips(b.path) if b.source == "videos" else callable_clips(b.path, b.frames)
    n = build_latents(clips, vae, encoder, b.output, frames=b.frames, limit=b.limit,
                      samples_per_shard=b.samples_per_shard, negative_prompt=cfg.text.negative_prompt, device=device,
                      meta={"source": b.source, "path": b.path, "vae": os.path.abspath(b.vae)})
    print(f"wrote {n} samples to {b.output}")
    return {"output": b.output, "count": n}


def cfg_text_dim(cfg: TrainConfig) -> int:
    """Width of the text embeddings to produce: the teacher's text_dim (its preset or checkpoint)."""
    from ..models import resolve_config

    try:
        return resolve_config("teacher", cfg.teacher).text_dim
    except ConfigError:
        raise ConfigError("build-latents needs the text width: set teacher.preset (e.g. 'tiny') "
                          "or teacher.init") from None
