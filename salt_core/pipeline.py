"""The generation pipeline shared by the CLI and the ComfyUI nodes.

prompt -> text embedding -> latents, chunk by chunk (causal) or whole clip (bidirectional), under the model's
trained settings with the user's overrides on top -> streaming VAE decode -> frames. Latents inside the pipeline
are in the model's normalised space; `SaltModel.to_raw_latents` converts to raw VAE space (ComfyUI's LATENT).
"""
from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import torch

from .config import SamplingDefaults, dit_preset
from .dit import WanDiT
from .kv_cache import CachePolicy
from .sampling import ChunkResult, PromptSegment, collect_chunks, sample_clip, stream_ar
from .sampling.settings import NO_OVERRIDES, SamplingOverrides, SamplingPlan, plan_sampling
from .vae import WAN21_LATENT_FORMAT, FrameDecoder, LatentFormat, WanVAE, vae_preset
from .validation import VAE_TIME, latent_frames_for, latent_size_for, pixel_frames_for

log = logging.getLogger("salt")

DEFAULT_ASSETS = Path(__file__).parent / "assets" / "default"
RANDOM_DEFAULT_NOTE = (
    "the embedded default model (salt_core/assets/default) is missing: using a tiny RANDOMLY INITIALISED model "
    "(the video will be structured noise, not your prompt)"
)

Prompts = Union[torch.Tensor, Sequence[PromptSegment]]


@dataclass
class SaltModel:
    """A loaded generator and what it was trained for (the SALT_MODEL of the nodes)."""

    dit: WanDiT
    sampling: SamplingDefaults
    name: str
    source: str
    text_encoder: Optional[object] = None  # tiny encoder of the embedded default
    vae: Optional[WanVAE] = None  # bundled VAE (embedded default)
    notes: tuple[str, ...] = ()
    latent_format: Optional[LatentFormat] = None  # the normalised space it works in; None = not recorded

    def __post_init__(self) -> None:
        if self.latent_format is None and self.vae is not None:
            self.latent_format = self.vae.config.latent_format

    @property
    def trained_policy(self) -> Optional[CachePolicy]:
        return self.sampling.cache

    def output_format(self) -> LatentFormat:
        """The format raw LATENTs are written in: the model's own; Wan 2.1's when the model records none."""
        return self.latent_format or WAN21_LATENT_FORMAT

    def to_raw_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised model latents -> raw VAE space."""
        return self.output_format().to_raw(z)

    def from_raw_latents(self, z: torch.Tensor) -> torch.Tensor:
        return self.output_format().from_raw(z)

    def plan(self, overrides: SamplingOverrides, *, frames: int, height: int, width: int, batch: int = 1) -> SamplingPlan:
        """The settings a video of this size samples with: trained values + `overrides`, all checked up front."""
        T, hw = latent_frames_for(frames), latent_size_for(height, width)
        c = self.dit.config
        self.dit.rope.check_grid(hw[0] // c.patch_size[1], hw[1] // c.patch_size[2])
        return plan_sampling(self.sampling, overrides, latent_frames=T, latent_hw=hw, batch=batch,
                             rope_positions=c.rope_max_positions)


def random_default(device="cpu", seed: int = 0) -> SaltModel:
    """A tiny causal model with random weights, standing in until the embedded default exists."""
    torch.manual_seed(seed)
    dit = WanDiT(dit_preset("tiny")).to(device).eval()
    vae = WanVAE(vae_preset("tiny")).to(device).eval()
    sampling = SamplingDefaults(causal=True, chunk_frames=3, shift=5.0, timesteps=(1000.0, 750.0, 500.0, 250.0))
    return SaltModel(dit, sampling, "random-tiny", "random", None, vae, (RANDOM_DEFAULT_NOTE,))


def load_salt_model(
    path: Optional[str] = None, *, device="cpu", dtype: Optional[torch.dtype] = None, attention: str = "sdpa"
) -> SaltModel:
    """Load a DiT checkpoint (any accepted format), or the embedded default when path is None."""
    if path is None:
        if (DEFAULT_ASSETS / "dit.safetensors").exists():
            return _load_embedded_default(device, dtype, attention)
        model = random_default(device)
        model.dit.set_attention_backend(attention)
        return model
    from .checkpoints import load_dit

    dit, info = load_dit(path, device=device, dtype=dtype)
    dit.set_attention_backend(attention)
    fmt = WAN21_LATENT_FORMAT if info.format != "salt" else None  # foreign files are Wan 2.1 models
    return SaltModel(dit.eval(), info.sampling, Path(path).name, str(path),
                     notes=tuple(getattr(info, "notes", ()) or ()), latent_format=fmt)


def _load_embedded_default(device, dtype, attention) -> SaltModel:
    from .checkpoints import load_dit, load_vae
    from .text import load_text_encoder

    dit, info = load_dit(str(DEFAULT_ASSETS / "dit.safetensors"), device=device, dtype=dtype)
    dit.set_attention_backend(attention)
    vae = load_vae(str(DEFAULT_ASSETS / "vae.safetensors"), device=device)[0]
    text = load_text_encoder(str(DEFAULT_ASSETS / "text_encoder.safetensors"))
    return SaltModel(dit.eval(), info.sampling, "embedded-default", str(DEFAULT_ASSETS), text, vae.eval())


def encode_prompt(model: SaltModel, text: str) -> tuple[torch.Tensor, list[str]]:
    """-> (context [1, L, text_dim], unknown words). Needs the model's own (tiny) text encoder;
    real Wan checkpoints take umT5 embeddings from ComfyUI's CLIPTextEncode instead."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("prompt is empty: give a text prompt")
    if model.text_encoder is not None:
        emb, unknown = model.text_encoder.encode([text])
        return emb.to(model.dit.device), list(unknown[0])
    if model.source == "random":
        return _hashed_embedding(text, model.dit.config.text_dim, model.dit.device), []
    raise ValueError(
        f"model {model.name!r} has no bundled text encoder: encode the prompt with umT5 "
        "(ComfyUI: CLIPLoader type 'wan' + CLIPTextEncode) and pass the embedding"
    )


def _hashed_embedding(text: str, dim: int, device) -> torch.Tensor:
    """Stand-in prompt embedding for the random default: one seeded vector per word."""
    words = text.lower().split()
    rows = []
    for w in words:
        seed = int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "little")
        rows.append(torch.randn(dim, generator=torch.Generator().manual_seed(seed)))
    return torch.stack(rows).unsqueeze(0).to(device)


def frames_for_seconds(seconds: float, fps: float, chunk: int = 1, limit: Optional[int] = None) -> int:
    """The shortest 4k+1 pixel-frame count lasting >= seconds at fps whose latent frames fill whole chunks (O(1))."""
    if not (math.isfinite(seconds) and seconds > 0 and math.isfinite(fps) and fps > 0):
        raise ValueError(f"the video length must be a positive, finite time at a positive frame rate; got "
                         f"{seconds!r} s at {fps!r} fps")
    need = math.ceil(seconds * fps - 1e-9)  # pixel frames
    latent = max(1, math.ceil((need - 1) / VAE_TIME) + 1)
    latent = math.ceil(latent / chunk) * chunk
    frames = pixel_frames_for(latent)
    if limit is not None and frames > limit:
        raise ValueError(f"{seconds:g} s at {fps:g} fps is {frames} frames, more than the {limit} allowed")
    return frames


def default_frames(model: SaltModel, seconds: float, fps: float, chunk_frames: Optional[int] = None) -> int:
    """The shortest 4k+1 pixel-frame count lasting >= seconds whose latent frames fill the model's chunks."""
    chunk = (chunk_frames or model.sampling.chunk_frames) if model.sampling.causal else 1
    return frames_for_seconds(seconds, fps, chunk)


def stream_latents(
    model: SaltModel,
    prompts: Prompts,
    *,
    width: int,
    height: int,
    frames: int,
    overrides: SamplingOverrides = NO_OVERRIDES,
    seed: int = 0,
    batch: int = 1,
) -> Iterator[ChunkResult]:
    """Normalised latents per finished chunk; a bidirectional model yields the whole clip as one chunk.
    Every setting is checked before the first forward (see `SaltModel.plan`)."""
    plan = model.plan(overrides, frames=frames, height=height, width=width, batch=batch)
    if plan.causal:
        yield from stream_ar(model.dit, prompts, layout=plan.layout, walk=plan.walk, policy=plan.policy, seed=seed)
        return
    if not isinstance(prompts, torch.Tensor):
        if len(prompts) != 1:
            raise ValueError("a prompt schedule needs a causal (autoregressive) model; this model is bidirectional")
        prompts = prompts[0].context
    shape = (batch, model.dit.config.in_dim, latent_frames_for(frames), *latent_size_for(height, width))
    yield ChunkResult(0, 1, 0, sample_clip(model.dit, prompts, latent_shape=shape, walk=plan.walk, seed=seed))


def generate_latents(
    model: SaltModel, prompts: Prompts, *, on_chunk: Optional[Callable[[ChunkResult], None]] = None, **kwargs
) -> torch.Tensor:
    """All chunks as [B, C, T, H, W] (normalised). on_chunk may raise StopSampling to end early."""
    return collect_chunks(stream_latents(model, prompts, **kwargs), on_chunk)


def decode_stream(model: SaltModel, vae: WanVAE, latent_chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Normalised latent chunks [B, C, t, h, w] -> pixel frames [n, H, W, 3] float 0..1, chunk by chunk. The
    latents are un-normalised with the model's latent format (the VAE's own when the model records none)."""
    decoder = FrameDecoder(vae, model.latent_format, who=f"model {model.name!r}")
    for z in latent_chunks:
        yield decoder.from_model_space(z)
