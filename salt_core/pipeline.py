"""The generation pipeline shared by the CLI and the ComfyUI nodes.

prompt -> text embedding -> latents, chunk by chunk (causal) or whole clip (bidirectional)
-> streaming VAE decode -> frames. Latents inside the pipeline are in the model's normalised space;
`SaltModel.to_raw_latents` converts to raw Wan VAE space (ComfyUI's LATENT convention).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import torch

from .config import SamplingDefaults, dit_preset
from .dit import WanDiT
from .kv_cache import CachePolicy
from .sampling import ChunkResult, PromptSegment, sample_clip, stream_ar
from .sampling.autoregressive import collect_chunks
from .schedules import resolve_grid
from .vae import WAN21_LATENT_MEAN, WAN21_LATENT_STD, WanVAE, vae_preset
from .validation import check_chunking, latent_frames_for, latent_size_for
from .video_io import frames_from_model_space

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
    trained_policy: Optional[CachePolicy] = None  # the KV-cache policy a causal student was trained under

    def _stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.vae is not None:
            mean, std = self.vae.config.latent_mean, self.vae.config.latent_std
        else:
            mean, std = WAN21_LATENT_MEAN, WAN21_LATENT_STD
        C = z.shape[1]
        m = torch.tensor(mean if len(mean) == C else [0.0] * C, dtype=z.dtype, device=z.device)
        s = torch.tensor(std if len(std) == C else [1.0] * C, dtype=z.dtype, device=z.device)
        return m.view(1, C, 1, 1, 1), s.view(1, C, 1, 1, 1)

    def to_raw_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised model latents -> raw VAE space: z·std + mean."""
        m, s = self._stats(z)
        return z * s + m

    def from_raw_latents(self, z: torch.Tensor) -> torch.Tensor:
        m, s = self._stats(z)
        return (z - m) / s


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
    return SaltModel(dit.eval(), info.sampling, Path(path).name, str(path),
                     notes=tuple(getattr(info, "notes", ()) or ()), trained_policy=trained_cache_policy(info.metadata))


def trained_cache_policy(metadata: dict, source: str = "checkpoint") -> Optional[CachePolicy]:
    """The cache policy our trainer stored in a causal student's header (`salt_trainer_cache_policy`), or None.
    A malformed entry is logged and ignored (generation then uses the caller's or the default policy)."""
    raw = (metadata or {}).get("salt_trainer_cache_policy")
    if not raw:
        return None
    try:
        fields = json.loads(raw) if isinstance(raw, str) else dict(raw)
        known = {f.name for f in dataclasses.fields(CachePolicy)}
        return CachePolicy(**{k: v for k, v in fields.items() if k in known})
    except (TypeError, ValueError) as e:
        log.warning("salt: %s: ignoring its stored cache policy %r (%s)", source, raw, e)
        return None


def default_policy(model: SaltModel, latent_frames: int) -> CachePolicy:
    """The policy used when the caller gives none: the one the model was trained under (a `full` one widened to
    the requested length), else `full` over the whole video."""
    trained = model.trained_policy
    if trained is None:
        return CachePolicy("full", max_frames=max(latent_frames, 1))
    if trained.kind == "full" and trained.max_frames < latent_frames:
        return dataclasses.replace(trained, max_frames=latent_frames)
    return trained


def _load_embedded_default(device, dtype, attention) -> SaltModel:
    from .checkpoints import load_dit, load_vae
    from .text import load_text_encoder

    dit, info = load_dit(str(DEFAULT_ASSETS / "dit.safetensors"), device=device, dtype=dtype)
    dit.set_attention_backend(attention)
    vae = load_vae(str(DEFAULT_ASSETS / "vae.safetensors"), device=device)[0]
    text = load_text_encoder(str(DEFAULT_ASSETS / "text_encoder.safetensors"))
    return SaltModel(dit.eval(), info.sampling, "embedded-default", str(DEFAULT_ASSETS), text, vae.eval(),
                     trained_policy=trained_cache_policy(info.metadata, "embedded default"))


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


def default_frames(model: SaltModel, seconds: float, fps: float, chunk_frames: Optional[int] = None) -> int:
    """The shortest 4k+1 pixel-frame count lasting >= seconds whose latent frames fill whole chunks."""
    chunk = (chunk_frames or model.sampling.chunk_frames) if model.sampling.causal else 1
    latent = 1
    while (1 + 4 * (latent - 1)) < seconds * fps or latent % chunk:
        latent += 1
    return 1 + 4 * (latent - 1)


def stream_latents(
    model: SaltModel,
    prompts: Prompts,
    *,
    width: int,
    height: int,
    frames: int,
    steps: Optional[int] = None,
    timesteps: Optional[Sequence[float]] = None,
    transition: Optional[str] = None,
    seed: int = 0,
    chunk_frames: Optional[int] = None,
    policy: Optional[CachePolicy] = None,
    batch: int = 1,
) -> Iterator[ChunkResult]:
    """Normalised latents per finished chunk; a bidirectional model yields the whole clip as one chunk."""
    T = latent_frames_for(frames)
    hw = latent_size_for(height, width)
    s = model.sampling
    grid = resolve_grid(steps=steps, timesteps=timesteps, trained_timesteps=s.timesteps, shift=s.shift)
    transition = transition or s.transition
    if s.causal:
        chunk = chunk_frames or s.chunk_frames
        check_chunking(T, chunk)
        policy = policy or default_policy(model, T)
        yield from stream_ar(
            model.dit, prompts, latent_frames=T, latent_hw=hw, chunk_frames=chunk, grid=grid, policy=policy,
            transition=transition, seed=seed, batch=batch, integer_timesteps=s.integer_timesteps,
        )
        return
    if not isinstance(prompts, torch.Tensor):
        if len(prompts) != 1:
            raise ValueError("a prompt schedule needs a causal (autoregressive) model; this model is bidirectional")
        prompts = prompts[0].context
    shape = (batch, model.dit.config.in_dim, T, *hw)
    x = sample_clip(model.dit, prompts, latent_shape=shape, grid=grid, transition=transition, seed=seed,
                    integer_timesteps=s.integer_timesteps)
    yield ChunkResult(0, 1, 0, x)


def generate_latents(
    model: SaltModel, prompts: Prompts, *, on_chunk: Optional[Callable[[ChunkResult], None]] = None, **kwargs
) -> torch.Tensor:
    """All chunks as [B, C, T, H, W] (normalised). on_chunk may raise StopSampling to end early."""
    return collect_chunks(stream_latents(model, prompts, **kwargs), on_chunk)


def decode_stream(model: SaltModel, vae: WanVAE, latent_chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
    """Normalised latent chunks [B, C, t, h, w] -> pixel frames [n, H, W, 3] float 0..1, chunk by chunk."""
    dec = vae.streaming_decoder(frames_per_step=None)  # whole chunks per pass while they fit the memory budget
    with torch.no_grad():
        for z in latent_chunks:
            raw = model.to_raw_latents(z).to(device=next(vae.parameters()).device, dtype=vae.dtype)
            yield frames_from_model_space(dec.decode_next(raw).float())
