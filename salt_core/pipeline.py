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
from .sampling import NO_GUIDANCE, ChunkResult, Guidance, PromptSegment, collect_chunks, sample_clip, stream_ar
from .sampling.settings import NO_OVERRIDES, SamplingOverrides, SamplingPlan, plan_sampling
from .vae import WAN21_LATENT_FORMAT, FrameDecoder, LatentFormat, WanVAE, vae_preset
from .validation import VAE_TIME, check_pixel_frames, latent_frames_for, latent_size_for, pixel_frames_for

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
    text_encoder: Optional[object] = None  # the tiny world encoder or umT5 it was trained with (when known)
    vae: Optional[WanVAE] = None  # the VAE it was trained with (when known)
    notes: tuple[str, ...] = ()
    latent_format: Optional[LatentFormat] = None  # the normalised space it works in; None = not recorded
    family: str = ""  # salt_core.families name ("" for the embedded default)
    guidance_scale: float = 1.0  # classifier-free guidance its family samples with (1 = none)

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
        chunk = (overrides.chunk_frames or self.sampling.chunk_frames) if self.sampling.causal else None
        T, hw = check_pixel_frames(frames, chunk), latent_size_for(height, width)
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
    path: Optional[str] = None, *, device="cpu", dtype: Optional[torch.dtype] = None, attention: str = "sdpa",
    family: str = "auto", weights: str = "auto", lora: Sequence[tuple[str, float]] = (),
    text_encoder: Optional[str] = None, tokenizer: Optional[str] = None, vae: Optional[str] = None,
    search: Sequence[str] = (),
) -> SaltModel:
    """Load a DiT checkpoint (any accepted format; its family detected or given, `weights` auto / ema / regular),
    or the embedded default when path is None. The VAE and text encoder are the ones given, else the ones the
    checkpoint records (found next to it, in the embedded default's folder or in `search`). Every check — family,
    weights, adapters, encoder width, latent formats — runs before sampling."""
    if path is None:
        if (DEFAULT_ASSETS / "dit.safetensors").exists():
            return _load_embedded_default(device, dtype, attention)
        model = random_default(device)
        model.dit.set_attention_backend(attention)
        return model
    from .checkpoints import load_dit, load_vae
    from .text.prompts import load_prompt_encoder

    which = {"auto": "auto", "ema": "ema", "regular": "regular"}.get(weights)
    if which is None:
        raise ValueError(f"weights={weights!r} is not one of ['auto', 'ema', 'regular']")
    dit, info = load_dit(path, device=device, dtype=dtype, which=which, family=family, lora=lora)
    dit.set_attention_backend(attention)
    notes = list(info.notes)
    record, found_vae, found_text = trained_companions(str(path), info.metadata, search, notes,
                                                       want_vae=vae is None, want_text=text_encoder is None)
    vae_path, text_path = vae or found_vae, text_encoder or found_text
    encoder = load_prompt_encoder(text_path, tokenizer, device=device) if text_path else None
    if tokenizer is not None and text_path is None:
        raise ValueError(f"a tokenizer ({tokenizer}) was given without a text encoder: pass the umT5 file too")
    if encoder is not None:
        _check_encoder_width(encoder, dit, text_path, str(path))
    loaded_vae = load_vae(vae_path, device=device)[0].eval() if vae_path else None
    if record is not None and record.latent_format is not None:
        fmt = record.format()
    elif info.format == "salt":
        fmt = loaded_vae.config.latent_format if loaded_vae is not None and record is not None else None
    else:
        fmt = WAN21_LATENT_FORMAT  # foreign files are Wan 2.1 models
    return SaltModel(dit.eval(), info.sampling, Path(path).name, str(path), encoder, loaded_vae, tuple(notes), fmt,
                     info.family, info.guidance_scale)


def trained_companions(path: str, metadata: dict, search: Sequence[str] = (), notes: Optional[list] = None, *,
                       want_vae: bool = True, want_text: bool = True):
    """The VAE and text encoder a checkpoint records, looked for next to it, in the embedded default's folder and in
    `search` -> (record or None, vae path or None, text encoder path or None); what was found goes into `notes`."""
    from .checkpoints.trained_with import read_trained_with

    notes = [] if notes is None else notes
    record = read_trained_with(metadata, path)
    if record is None:
        return None, None, None
    folders = [str(Path(path).parent), str(DEFAULT_ASSETS), *search]
    vae = _companion(record.vae, "VAE", folders, notes) if want_vae else None
    text = _companion(record.text_encoder, "text encoder", folders, notes) if want_text else None
    return record, vae, text


def _companion(companion, what: str, folders: Sequence[str], notes: list[str]) -> Optional[str]:
    """Where the recorded companion is, with a note either way; None when it is not found."""
    from .checkpoints.trained_with import find_companion

    if companion is None:
        return None
    found, mismatch = find_companion(companion, folders)
    if found is not None:
        notes.append(f"trained with the {what} {companion.describe()}: using {found}")
        return found
    notes.append(f"trained with the {what} {companion.describe()}, not found in {list(dict.fromkeys(folders))}"
                 + (f"; {mismatch}" if mismatch else "") + f": pass the {what} explicitly")
    return None


def _check_encoder_width(encoder, dit: WanDiT, text_path: str, dit_path: str) -> None:
    from .text.prompts import context_dim

    if context_dim(encoder) != dit.config.text_dim:
        raise ValueError(f"the text encoder {text_path} gives {context_dim(encoder)}-wide states, but the DiT "
                         f"{dit_path} reads text_dim={dit.config.text_dim}: use the text encoder it was trained with "
                         "(umT5-XXL, 4096, for every released Wan 2.1 model)")


def _load_embedded_default(device, dtype, attention) -> SaltModel:
    from .checkpoints import load_dit, load_vae
    from .text import load_text_encoder

    dit, info = load_dit(str(DEFAULT_ASSETS / "dit.safetensors"), device=device, dtype=dtype)
    dit.set_attention_backend(attention)
    vae = load_vae(str(DEFAULT_ASSETS / "vae.safetensors"), device=device)[0]
    text = load_text_encoder(str(DEFAULT_ASSETS / "text_encoder.safetensors"))
    return SaltModel(dit.eval(), info.sampling, "embedded-default", str(DEFAULT_ASSETS), text, vae.eval())


def encode_prompt(model: SaltModel, text: str) -> tuple[torch.Tensor, list[str]]:
    """-> (context [1, L, text_dim], unknown words) with the model's text encoder (the tiny world one or umT5).
    Inside ComfyUI, real Wan checkpoints can also take umT5 embeddings from CLIPTextEncode."""
    from .text.prompts import encode_prompts

    if not isinstance(text, str) or not text.strip():
        raise ValueError("prompt is empty: give a text prompt")
    if model.text_encoder is not None:
        emb, unknown = encode_prompts(model.text_encoder, [text])
        return emb.to(model.dit.device), list(unknown[0])
    if model.source == "random":
        return _hashed_embedding(text, model.dit.config.text_dim, model.dit.device), []
    raise ValueError(
        f"model {model.name!r} has no text encoder: give its umT5 file (--text-encoder; ComfyUI: CLIPLoader type "
        "'wan' + CLIPTextEncode)"
    )


def guidance_for(model: SaltModel, scale: Optional[float] = None, negative_prompt: Optional[str] = None) -> Guidance:
    """Classifier-free guidance at `scale` (default: the model family's) under the negative prompt (default: Wan's
    for umT5); NO_GUIDANCE at scale 1."""
    from .text.prompts import encode_negative

    scale = model.guidance_scale if scale is None else float(scale)
    if scale == 1.0:
        return NO_GUIDANCE
    if model.text_encoder is None:
        raise ValueError(f"guidance scale {scale:g} needs a negative prompt, and model {model.name!r} has no text "
                         "encoder to encode one: give its umT5 file (--text-encoder) or guidance 1")
    return Guidance(scale, encode_negative(model.text_encoder, negative_prompt).to(model.dit.device))


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
    guidance: Guidance = NO_GUIDANCE,
) -> Iterator[ChunkResult]:
    """Normalised latents per finished chunk; a bidirectional model yields the whole clip as one chunk.
    Every setting is checked before the first forward (see `SaltModel.plan`)."""
    plan = model.plan(overrides, frames=frames, height=height, width=width, batch=batch)
    if plan.causal:
        yield from stream_ar(model.dit, prompts, layout=plan.layout, walk=plan.walk, policy=plan.policy, seed=seed,
                             guidance=guidance)
        return
    if not isinstance(prompts, torch.Tensor):
        if len(prompts) != 1:
            raise ValueError("a prompt schedule needs a causal (autoregressive) model; this model is bidirectional")
        prompts = prompts[0].context
    shape = (batch, model.dit.config.in_dim, latent_frames_for(frames), *latent_size_for(height, width))
    yield ChunkResult(0, 1, 0, sample_clip(model.dit, prompts, latent_shape=shape, walk=plan.walk, seed=seed,
                                           guidance=guidance))


def generate_latents(
    model: SaltModel, prompts: Prompts, *, on_chunk: Optional[Callable[[ChunkResult], None]] = None, **kwargs
) -> torch.Tensor:
    """All chunks as [B, C, T, H, W] (normalised). on_chunk may raise StopSampling to end early."""
    return collect_chunks(stream_latents(model, prompts, **kwargs), on_chunk)


def frame_decoder_for(model: SaltModel, vae: WanVAE, tiling=None) -> FrameDecoder:
    """The model's path from latents to frames through `vae` (tiled in space when `tiling` asks for it)."""
    return FrameDecoder(vae, model.latent_format, tiling=tiling, who=f"model {model.name!r}")


def decode_stream(model: SaltModel, vae: WanVAE, latent_chunks: Iterable[torch.Tensor], *,
                  decoder: Optional[FrameDecoder] = None) -> Iterator[torch.Tensor]:
    """Normalised latent chunks [B, C, t, h, w] -> pixel frames [n, H, W, 3] float 0..1, chunk by chunk. The
    latents are un-normalised with the model's latent format (the VAE's own when the model records none).
    decoder: a `frame_decoder_for` the caller made (and planned) already."""
    decoder = decoder or frame_decoder_for(model, vae)
    for z in latent_chunks:
        yield decoder.from_model_space(z)
