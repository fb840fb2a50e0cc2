"""Shared setup of the quality suite: the models, the sampling conventions and a memo of judged clips.

Every model samples on the same uniform(K) grid warped by shift 5 (what the students' K-step grids are),
noise seeded by the prompt index, latents [16, 9, 8, 8] (33 frames of 64x64 at 16 fps), decoded by the
world VAE and scored by training.judge against the prompt. Causal models roll out in chunks of
`info.sampling.chunk_frames` latent frames under the cache policy they were trained with (header
`sampling.cache`). Teachers use CFG (scale 4, the DMD teacher's x_c + 3·(x_c − x_neg)) with the
empty negative prompt; students sample without CFG.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch

from salt_core.checkpoints import load_dit, load_vae
from salt_core.kv_cache import CachePolicy
from salt_core.sampling import ChunkLayout, Guidance, Walk, sample_ar, sample_clip
from salt_core.schedules import StepGrid
from salt_core.vae import decode_to_frames
from salt_core.text import load_text_encoder
from salt_core.validation import pixel_frames_for
from training.judge import score_clip

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# "-tf": scored by the AR teacher, each chunk given its clean past (training/configs/world/*-tf.yaml); "-2s": by
# both teachers, each with its own critic (second_score); "-long": then tuned on long streams (ar.rollout_frames);
# "-warm": the AR teacher started from the bidirectional teacher's weights (teacher-ar-warm*.yaml) and what
# learnt from it; "teacher-long": the bidirectional teacher trained 6000 steps more (teacher-long.yaml);
# "-warm-more": the warm AR teacher trained 3000 steps more (teacher-ar-warm-more.yaml) and what learnt from it;
# "-warm-more2": 3000 more again (teacher-ar-warm-more2.yaml); "-long-clips": then trained on 8 s clips
# (teacher-ar-long-clips.yaml), the student tuned on long streams against it (salt-ar-long-clips*.yaml) and one
# distilled from it (salt-ar-long-clips-tf.yaml)
MODELS = ("teacher", "teacher-ar", "dmd-4", "dmd-8", "sc-dmd-8", "ar-dmd", "salt-ar", "dmd-4-tf", "salt-ar-tf",
          "salt-ar-2s", "salt-ar-2s-long", "teacher-ar-warm", "salt-ar-warm-tf", "salt-ar-warm-2s",
          "salt-ar-warm-tf-long", "teacher-long", "teacher-ar-warm-more", "salt-ar-warm-more-tf",
          "dmd-4-warm-more-tf", "salt-ar-warm-more-tf-long", "teacher-ar-warm-more2", "salt-ar-warm-more2-tf",
          "salt-ar-warm-more2-tf-long", "teacher-ar-long-clips", "salt-ar-long-clips", "salt-ar-long-clips-36",
          "salt-ar-long-clips-tf")
AR_TEACHERS = ("teacher-ar", "teacher-ar-warm", "teacher-ar-warm-more", "teacher-ar-warm-more2",
               "teacher-ar-long-clips")
TEACHERS = ("teacher", "teacher-long", *AR_TEACHERS)
AR_STUDENTS = ("ar-dmd", "salt-ar", "salt-ar-tf", "salt-ar-2s", "salt-ar-2s-long", "salt-ar-warm-tf",
               "salt-ar-warm-2s", "salt-ar-warm-tf-long", "salt-ar-warm-more-tf", "salt-ar-warm-more-tf-long",
               "salt-ar-warm-more2-tf", "salt-ar-warm-more2-tf-long", "salt-ar-long-clips", "salt-ar-long-clips-36",
               "salt-ar-long-clips-tf")
STUDENTS = tuple(m for m in MODELS if m not in TEACHERS)
NFES = (1, 2, 4, 8)
TEACHER_STEPS = 50
SHIFT = 5.0
LATENT = (16, 9, 8, 8)
CLIP_FRAMES = pixel_frames_for(LATENT[1])  # 33 pixel frames of
CLIP_SIDE = 8 * LATENT[2]                  # 64x64
CFG_SCALE = 4.0
FPS = 16.0
DECODE_STEP = 3  # latent frames per VAE decoder pass (same video as 1 up to float rounding, ~1.5x faster)

DEFAULT_CHECKPOINTS = os.path.join(HERE, "checkpoints")
DEFAULT_VAE = os.path.join(ROOT, "salt_core", "assets", "default", "vae.safetensors")
DEFAULT_TEXT_ENCODER = os.path.join(ROOT, "salt_core", "assets", "default", "text_encoder.safetensors")
DEFAULT_PROMPTS = os.path.join(HERE, "prompts-heldout.txt")


def read_prompts(path: str, count: int) -> list[str]:
    lines = [ln.strip() for ln in open(path, encoding="utf-8") if ln.strip() and not ln.startswith("#")]
    if len(lines) < count:
        raise ValueError(f"{path} holds {len(lines)} prompts, {count} asked for")
    return lines[:count]


def checkpoint_path(checkpoints: str, name: str) -> str:
    return os.path.join(checkpoints, f"{name}.safetensors")


def trained_policy(info) -> CachePolicy:
    """The cache policy a causal model was trained with (header), else `full` over the clip."""
    return info.sampling.cache or CachePolicy("full", max_frames=LATENT[1])


def guidance_of(scale: float, neg) -> Guidance:
    return Guidance(scale, neg) if scale != 1.0 else Guidance()


def steps_for(name: str) -> tuple[int, ...]:
    return (TEACHER_STEPS,) if name in TEACHERS else NFES


def guidance_for(name: str) -> float:
    return CFG_SCALE if name in TEACHERS else 1.0


@torch.no_grad()
def generate(model, info, ctx, neg, steps: int, seed: int, guidance: float) -> torch.Tensor:
    """One clip of LATENT size on the uniform(steps) grid warped by SHIFT -> normalised latents [1, C, T, h, w]."""
    s = info.sampling
    if s.causal:
        return causal_rollout(model, info, ctx, neg, steps, seed, guidance, LATENT[1], trained_policy(info))
    return sample_clip(model, ctx, latent_shape=(1, *LATENT), walk=Walk(StepGrid.uniform(steps, SHIFT), s.transition),
                       seed=seed, guidance=guidance_of(guidance, neg))


@torch.no_grad()
def causal_rollout(model, info, prompts, neg, steps: int, seed: int, guidance: float, latent_frames: int,
                   policy: CachePolicy) -> torch.Tensor:
    """A causal model's rollout of `latent_frames` (a prompt embedding or a PromptSegment schedule) under `policy`,
    chunk by chunk at its trained chunk size, same grid/seed/CFG conventions as `generate`."""
    s = info.sampling
    return sample_ar(model, prompts, layout=ChunkLayout(latent_frames, LATENT[2:], s.chunk_frames),
                     walk=Walk(StepGrid.uniform(steps, SHIFT), s.transition), policy=policy, seed=seed,
                     guidance=guidance_of(guidance, neg))


@torch.no_grad()
def to_video(vae, z: torch.Tensor) -> torch.Tensor:
    """Normalised latents [1, C, T, h, w] -> [T', H, W, 3] in 0..1 (T' = 1 + 4(T-1))."""
    return decode_to_frames(vae, z.float(), frames_per_step=DECODE_STEP)


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    return (video * 255).round().to(torch.uint8)


@dataclass
class Clip:
    latents: torch.Tensor  # [1, C, T, h, w] normalised
    scores: dict  # judge dimensions + total
    video: Optional[torch.Tensor] = None  # uint8 [T', H, W, 3], kept only where asked (consistency)


class Bench:
    """Loaded VAE + text encoder, models loaded on first use, and a memo of judged clips
    keyed by (model, steps, prompt index) so that sections share the clips they both need."""

    def __init__(self, checkpoints: str, vae: str, text_encoder: str, prompts: list[str]):
        self.checkpoints = checkpoints
        self.vae, _ = load_vae(vae)
        self.vae.eval()
        self.enc = load_text_encoder(text_encoder)
        self.prompts = prompts
        self._models: dict[str, tuple] = {}
        self._ctx: dict[str, torch.Tensor] = {}
        self._clips: dict[tuple, Clip] = {}
        self.neg = self.encode("")
        self.keep_video = lambda name, steps, i: False  # set by the caller: which clips keep their video

    def available(self, names=MODELS) -> list[str]:
        return [n for n in names if os.path.isfile(checkpoint_path(self.checkpoints, n))]

    def model(self, name: str):
        if name not in self._models:
            model, info = load_dit(checkpoint_path(self.checkpoints, name))
            self._models[name] = (model.eval(), info)
        return self._models[name]

    @torch.no_grad()
    def encode(self, prompt: str) -> torch.Tensor:
        """One prompt at a time (no padding against other prompts) -> [1, L, text_dim]."""
        if prompt not in self._ctx:
            self._ctx[prompt] = self.enc.encode([prompt])[0]
        return self._ctx[prompt]

    def clip(self, name: str, steps: int, i: int) -> Clip:
        key = (name, steps, i)
        keep = self.keep_video(name, steps, i)
        got = self._clips.get(key)
        if got is not None and (got.video is not None or not keep):
            return got
        model, info = self.model(name)
        z, video, scores = self.judged(model, info, steps, i, guidance_for(name))
        clip = Clip(z, scores, to_uint8(video) if keep else None)
        self._clips[key] = clip
        return clip

    def judged(self, model, info, steps: int, i: int, guidance: float):
        """Prompt i's clip from `model` (seed i) -> (latents, video [T', H, W, 3] in 0..1, judge scores)."""
        prompt = self.prompts[i]
        z = generate(model, info, self.encode(prompt), self.neg, steps, seed=i, guidance=guidance)
        video = to_video(self.vae, z)
        return z, video, score_clip(video, prompt)
