"""SaltCachePolicy and SaltSampler: few-step sampling, chunk by chunk for causal models."""
from __future__ import annotations

import logging
import math

import torch

from . import host
from .conditioning import PromptSchedule, conditioning_tensor
from .memory import dit_on_device

log = logging.getLogger("salt.nodes")

try:
    from salt_core.kv_cache import POLICIES, POSITIONS
    from salt_core.sampling import TRANSITIONS
except Exception:  # pragma: no cover - keep the pack importable; the node reports the real error
    POLICIES, POSITIONS, TRANSITIONS = ("full", "window", "sink_window"), ("absolute", "cache_relative"), \
        ("renoise", "ode")

MODEL_DEFAULT = "model default"
SEED_MAX = 0xFFFFFFFFFFFFFFFF


class SaltCachePolicy:
    """Which past frames the KV cache of a causal model keeps: each setting overrides the model's trained one."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "policy": ([MODEL_DEFAULT, *POLICIES], {
                    "default": MODEL_DEFAULT,
                    "tooltip": "model default: the policy the model was trained with. full: keep every past frame "
                               "(memory grows, up to max_frames). window: keep the last window_frames (Self "
                               "Forcing). sink_window: also keep the first sink_frames forever (LongLive); time and "
                               "memory per chunk stay flat however long the video."}),
                "window_frames": ("INT", {
                    "default": 0, "min": 0, "max": 4096,
                    "tooltip": "window / sink_window: past latent frames kept (1 latent frame = 4 video frames); "
                               "0 = the model's."}),
                "sink_frames": ("INT", {
                    "default": 0, "min": 0, "max": 4096,
                    "tooltip": "sink_window: first latent frames kept for the whole video; 0 = the model's."}),
                "max_frames": ("INT", {
                    "default": 0, "min": 0, "max": 1_000_000,
                    "tooltip": "full: the most latent frames the cache may hold (longer videos stop with an error "
                               "before sampling); 0 = the model's, widened to the video."}),
                "positions": ([MODEL_DEFAULT, *POSITIONS], {
                    "default": MODEL_DEFAULT,
                    "tooltip": "absolute: RoPE index = true frame index (what released checkpoints were trained "
                               "with; limited by the RoPE table). cache_relative: cached frames are re-indexed at "
                               "attention time (no length limit). model default: as trained."}),
                "context_t": ("FLOAT", {
                    "default": -1.0, "min": -1.0, "max": 1000.0, "step": 1.0,
                    "tooltip": "Timestep of the context pass that writes a finished chunk into the cache (0 = clean); "
                               "-1 = the model's."}),
                "recache_on_switch": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "On a prompt switch, recompute the cached frames' keys/values under the new prompt "
                               "(LongLive re-cache) instead of only swapping the cross-attention prompt."}),
            },
            "optional": {
                "model": ("SALT_MODEL", {"tooltip": "Connect the model to show the policy it was trained with."}),
            },
        }

    RETURN_TYPES = ("SALT_CACHE_POLICY",)
    RETURN_NAMES = ("cache_policy",)
    OUTPUT_TOOLTIPS = ("KV-cache overrides for SaltSampler, applied on top of the model's trained policy (ignored "
                       "when nothing is set).",)
    FUNCTION = "build"
    CATEGORY = "Salt"
    DESCRIPTION = ("Chooses the KV-cache memory policy of an autoregressive (causal) model; settings left at "
                   "'model default' / 0 keep what the model was trained with.")

    def build(self, policy=MODEL_DEFAULT, window_frames=0, sink_frames=0, max_frames=0, positions=MODEL_DEFAULT,
              context_t=-1.0, recache_on_switch=True, model=None):
        from salt_core.sampling.settings import CacheOverrides

        overrides = CacheOverrides(
            kind=None if policy == MODEL_DEFAULT else policy,
            window_frames=window_frames or None, sink_frames=sink_frames or None, max_frames=max_frames or None,
            positions=None if positions == MODEL_DEFAULT else positions,
            context_t=None if context_t is None or context_t < 0 else float(context_t),
            recache_on_switch=bool(recache_on_switch))
        if model is None:
            return (overrides,)
        trained = model.trained_policy
        text = f"{model.name} was trained with: " + (trained.describe() if trained else "no recorded cache policy")
        return {"ui": {"text": [text]}, "result": (overrides,)}


# ---- helpers (input parsing only; the sampling itself is salt_core.pipeline) ----------------------

def parse_timesteps(text: str):
    """'1000, 750, 500, 250' -> [1000.0, 750.0, 500.0, 250.0]; '' -> None."""
    text = (text or "").strip().strip("[]")
    if not text:
        return None
    try:
        return [float(t) for t in text.replace(";", ",").replace(" ", ",").split(",") if t]
    except ValueError:
        raise ValueError(f"timesteps must be numbers separated by commas (e.g. '1000, 750, 500, 250'), "
                         f"got {text!r}") from None


def latent_frame_of(pixel_frame: int) -> int:
    """The latent frame holding video frame `pixel_frame` (frame 0 alone, then 4 per latent frame)."""
    return 0 if pixel_frame <= 0 else (pixel_frame - 1) // 4 + 1


def schedule_segments(schedule: PromptSchedule, latent_frames: int, chunk: int, frames: int):
    """Prompt timeline in video frames -> PromptSegments at chunk starts (nearest chunk boundary)."""
    from salt_core.sampling import PromptSegment

    segments, origin = [], {}
    for start, ctx in schedule.entries:
        snapped = int(math.floor(latent_frame_of(start) / chunk + 0.5)) * chunk
        if snapped >= latent_frames:
            raise ValueError(f"the prompt starting at frame {start} begins after the end of the video "
                             f"({frames} frames)")
        if snapped in origin:
            raise ValueError(f"the prompts at frames {origin[snapped]} and {start} fall into the same chunk "
                             f"(a chunk is {4 * chunk} video frames here); move them further apart")
        if snapped != latent_frame_of(start) or (start and (start - 1) % 4):
            log.info("salt: prompt at frame %d switches at the chunk boundary, latent frame %d", start, snapped)
        origin[snapped] = start
        segments.append(PromptSegment(snapped, ctx))
    if 0 not in origin:
        raise ValueError(f"the prompt schedule needs a prompt at frame 0; its first prompt starts at frame "
                         f"{min(s for s, _ in schedule.entries)}")
    return segments


def _prompts(model, conditioning, schedule, frames: int, chunk: int):
    from salt_core.validation import latent_frames_for

    if conditioning is None and schedule is None:
        raise ValueError("connect a conditioning (SaltTextEncode / CLIPTextEncode) or a prompt schedule")
    if conditioning is not None and schedule is not None:
        raise ValueError("connect either conditioning or a prompt schedule, not both")
    if conditioning is not None:
        contexts = [conditioning_tensor(conditioning)]
        prompts = contexts[0]
    else:
        if not isinstance(schedule, PromptSchedule) or not schedule.entries:
            raise ValueError("the prompt schedule is empty")
        if not model.sampling.causal and len(schedule.entries) > 1:
            raise ValueError(f"model {model.name!r} is bidirectional (whole clip at once): a prompt schedule "
                             "with switches needs a causal (autoregressive) model")
        prompts = schedule_segments(schedule, latent_frames_for(frames), chunk, frames)
        contexts = [s.context for s in prompts]
    want = model.dit.config.text_dim
    for ctx in contexts:
        if ctx.shape[-1] != want:
            hint = ("encode the prompt with CLIPLoader (type 'wan', umT5-XXL) + CLIPTextEncode" if want == 4096
                    else "encode the prompt with SaltTextEncode and this model")
            raise ValueError(f"the conditioning has {ctx.shape[-1]}-dim embeddings but model {model.name!r} "
                             f"expects {want}-dim ones: {hint}")
    return prompts


def _guidance(model, cfg, negative):
    """Classifier-free guidance of the node's cfg and negative inputs (checked before any compute)."""
    from salt_core.sampling import NO_GUIDANCE, Guidance

    if isinstance(cfg, bool) or not isinstance(cfg, (int, float)) or not 1.0 <= cfg <= 30.0:
        raise ValueError(f"cfg must be a number from 1 (no guidance) to 30, got {cfg!r}")
    if cfg == 1.0:
        if model.guidance_scale != 1.0:
            log.info("salt: SaltSampler: model %r samples with CFG %g in its family; cfg 1 samples without it",
                     model.name, model.guidance_scale)
        return NO_GUIDANCE
    if negative is None:
        raise ValueError(f"cfg {cfg:g} needs a negative prompt: connect `negative` (encoded like the prompt; Wan: "
                         "CLIPTextEncode of Wan's negative prompt), or set cfg 1")
    ctx = conditioning_tensor(negative, "negative")
    want = model.dit.config.text_dim
    if ctx.shape[-1] != want:
        raise ValueError(f"negative: {ctx.shape[-1]}-dim embeddings, but model {model.name!r} expects {want}-dim "
                         "ones; encode it as the prompt is")
    return Guidance(float(cfg), ctx.to(model.dit.device))


PREVIEW_SIDE = 256  # px: the longer side of the chunk previews our VAE streams (a cheap fraction of the decode)


class _ChunkPreview:
    """A small picture of the newest frame of each chunk for ComfyUI's progress preview. With the model's own VAE
    the chunks stream through a reduced-size decoder that keeps the causal state, so a later chunk's colours are
    right (a latent frame decoded alone is not: benchmarks/results/vae_tiled.md)."""

    def __init__(self, model, enabled: bool):
        self.model = model
        self.enabled = enabled and host.previews_enabled()
        self.core = host.core_latent_previewer() if self.enabled and model.vae is None else None
        self.stream = None  # FrameDecoder at preview size, made at the first chunk

    @torch.no_grad()
    def __call__(self, z: torch.Tensor):
        """z: [B, C, F, h, w] normalised latents of a finished chunk (chunks of one video, in order)."""
        if not self.enabled:
            return None
        vae = self.model.vae
        if vae is not None and z.shape[1] == vae.config.z_dim:
            from PIL import Image

            from salt_core.vae import FrameDecoder
            from salt_core.video_io import to_uint8_frames

            if self.stream is None:
                side = min(host.preview_max_size(), PREVIEW_SIDE)
                self.stream = FrameDecoder(vae, self.model.latent_format, preview_side=side)
            frame = to_uint8_frames(self.stream.from_model_space(z[:1])[-1:])[0]
            return ("JPEG", Image.fromarray(frame.numpy()), host.preview_max_size())
        if self.core is not None:
            return self.core.decode_latent_to_preview_image("JPEG", z[:1, :, -1:])
        return None


class SaltSampler:
    """Sample a video with a few-step Salt / Self Forcing-family model."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("SALT_MODEL", {"tooltip": "The generator from SaltModelLoader."}),
                "width": ("INT", {
                    "default": 832, "min": 16, "max": 8192, "step": 16,
                    "tooltip": "Video width in pixels, a multiple of 16 (Wan 1.3B: 832)."}),
                "height": ("INT", {
                    "default": 480, "min": 16, "max": 8192, "step": 16,
                    "tooltip": "Video height in pixels, a multiple of 16 (Wan 1.3B: 480)."}),
                "frames": ("INT", {
                    "default": 81, "min": 1, "max": 100_001, "step": 4,
                    "tooltip": "Number of video frames, 4k+1 (81 = 21 latent frames = 5 s at 16 fps). Causal "
                               "models need the latent frames to fill whole chunks."}),
                "steps": ("INT", {
                    "default": 0, "min": 0, "max": 1000,
                    "tooltip": "Denoising steps per chunk; 0 = the model's trained grid (4 for Self Forcing). "
                               "Few-step students allow divisors or doublings of their grid."}),
                "timesteps": ("STRING", {
                    "default": "", "multiline": False,
                    "tooltip": "Optional explicit timesteps on the 0..1000 scale before the shift, e.g. "
                               "'1000, 750, 500, 250'. Overrides steps."}),
                "transition": ([MODEL_DEFAULT, *TRANSITIONS], {
                    "default": MODEL_DEFAULT,
                    "tooltip": "How to go from one step to the next: renoise (Self Forcing: fresh noise on the "
                               "prediction) or ode (deterministic). 'model default' uses what it was trained with."}),
                "seed": ("INT", {
                    "default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True,
                    "tooltip": "Random seed; the same seed and settings give the same video on any device."}),
                "chunk_frames": ("INT", {
                    "default": 0, "min": 0, "max": 1024,
                    "tooltip": "Causal models: latent frames generated per chunk; 0 = the model's own (3 for Self "
                               "Forcing, 1 for frame-wise models). Ignored by bidirectional models."}),
            },
            "optional": {
                "conditioning": ("CONDITIONING", {
                    "tooltip": "The prompt: SaltTextEncode (embedded default) or CLIPTextEncode with a umT5 "
                               "CLIPLoader (type 'wan') for Wan models."}),
                "schedule": ("SALT_PROMPT_SCHEDULE", {
                    "tooltip": "A prompt timeline from SaltPromptSchedule (instead of conditioning)."}),
                "cache_policy": ("SALT_CACHE_POLICY", {
                    "tooltip": "KV-cache overrides from SaltCachePolicy, applied on top of the policy the model was "
                               "trained with (without it: exactly the trained policy; a model that records none keeps "
                               "every frame of the video)."}),
                "negative": ("CONDITIONING", {
                    "tooltip": "Negative prompt of classifier-free guidance (cfg > 1), encoded like the prompt (Wan "
                               "teachers: CLIPTextEncode of Wan's negative prompt)."}),
                "cfg": ("FLOAT", {
                    "default": 1.0, "min": 1.0, "max": 30.0, "step": 0.1, "round": 0.01,
                    "tooltip": "Classifier-free guidance scale; 1 = none, as distilled students sample. Wan 2.1 "
                               "teachers sample with 6 (1.3B) / 5 (14B), two forwards per step; needs negative."}),
            },
        }

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The video latents in raw Wan VAE space (decode with SaltDecode, or core VAEDecode with the "
                       "matching Wan 2.1 VAE).",)
    FUNCTION = "sample"
    CATEGORY = "Salt"
    DESCRIPTION = ("Generates video latents. Bidirectional models denoise the whole clip at once; causal models "
                   "stream chunk by chunk against a KV cache, with progress and a preview per chunk.")

    def sample(self, model, width, height, frames, steps=0, timesteps="", transition=MODEL_DEFAULT, seed=0,
               chunk_frames=0, conditioning=None, schedule=None, cache_policy=None, negative=None, cfg=1.0):
        from salt_core.pipeline import stream_latents
        from salt_core.sampling.settings import CacheOverrides, SamplingOverrides
        from salt_core.validation import latent_frames_for, latent_size_for

        if cache_policy is not None and not isinstance(cache_policy, CacheOverrides):
            raise ValueError(f"cache_policy must come from SaltCachePolicy, got {type(cache_policy).__name__}")
        overrides = SamplingOverrides(
            steps=steps or None, timesteps=parse_timesteps(timesteps),
            transition=None if transition == MODEL_DEFAULT else transition,
            chunk_frames=chunk_frames or None if model.sampling.causal else None,
            cache=cache_policy or CacheOverrides())
        plan = model.plan(overrides, frames=frames, height=height, width=width)  # every check before any compute
        for note in plan.notes:
            log.info("salt: SaltSampler: %s", note)
        chunk = plan.layout.chunk_frames if plan.causal else latent_frames_for(frames)
        total = plan.layout.num_chunks if plan.causal else 1
        prompts = _prompts(model, conditioning, schedule, frames, chunk)
        guidance = _guidance(model, cfg, negative)
        options = dict(width=width, height=height, frames=frames, overrides=overrides, seed=seed, guidance=guidance)

        progress = host.Progress(total)
        preview = _ChunkPreview(model, enabled=progress.bar is not None)
        chunks = []
        with dit_on_device(model, plan, latent_frames_for(frames), latent_size_for(height, width),
                           guided=guidance.active):
            host.check_interrupt()
            stream = stream_latents(model, prompts, **options)
            try:
                for res in stream:
                    chunks.append(model.to_raw_latents(res.latents.float()).cpu())
                    progress.update(res.index + 1, preview(res.latents))
                    host.check_interrupt()
            finally:
                stream.close()
        return ({"samples": torch.cat(chunks, dim=2)},)
