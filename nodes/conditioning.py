"""SaltTextEncode and SaltPromptSchedule: prompts -> CONDITIONING / a prompt timeline."""
from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("salt.nodes")


@dataclass(frozen=True)
class PromptSchedule:
    """What SALT_PROMPT_SCHEDULE carries: prompts by the pixel frame they start at.

    entries: ((start_frame, context [1, L, text_dim]), ...) sorted by start_frame."""

    entries: tuple[tuple[int, object], ...]

    def with_entry(self, start_frame: int, context) -> PromptSchedule:
        for start, _ in self.entries:
            if start == start_frame:
                raise ValueError(f"the prompt schedule already has a prompt starting at frame {start_frame}")
        return PromptSchedule(tuple(sorted(self.entries + ((start_frame, context),), key=lambda e: e[0])))


def conditioning_tensor(conditioning, who: str = "conditioning"):
    """ComfyUI CONDITIONING [[Tensor [B, L, D], {...}], ...] -> the first entry's tensor [1, L, D]."""
    import torch

    if isinstance(conditioning, torch.Tensor):
        ctx = conditioning
    else:
        try:
            ctx = conditioning[0][0]
        except (TypeError, IndexError, KeyError):
            raise ValueError(f"{who}: expected ComfyUI CONDITIONING ([[tensor, {{...}}], ...]), "
                             f"got {type(conditioning).__name__}") from None
        if len(conditioning) > 1:
            log.warning("salt: %s has %d entries (combined conditioning); only the first is used",
                        who, len(conditioning))
    if not isinstance(ctx, torch.Tensor) or ctx.ndim != 3:
        shape = tuple(ctx.shape) if isinstance(ctx, torch.Tensor) else type(ctx).__name__
        raise ValueError(f"{who}: the embedding must be a tensor [B, L, dim], got {shape}")
    if ctx.shape[0] > 1:
        log.warning("salt: %s holds a batch of %d prompts; only the first is used", who, ctx.shape[0])
    return ctx[:1]


class SaltTextEncode:
    """Encode a prompt with the embedded default's own text encoder."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("SALT_MODEL", {
                    "tooltip": "A model with a bundled text encoder (the embedded default). For real Wan "
                               "models use ComfyUI's CLIPLoader (type 'wan', umT5) + CLIPTextEncode instead."}),
                "text": ("STRING", {
                    "multiline": True, "dynamicPrompts": True,
                    "default": "a red circle moves left on a blue background",
                    "tooltip": "The prompt. The embedded default knows the words of its synthetic world "
                               "(shapes, colours, sizes, backgrounds, motions). Each unknown word is encoded as "
                               "the unknown-word token <unk> and listed on the node; a prompt with no known word "
                               "is an error (it would give an unconditioned video)."}),
            }
        }

    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("The prompt embedding, usable by SaltSampler and SaltPromptSchedule.",)
    FUNCTION = "encode"
    CATEGORY = "Salt"
    DESCRIPTION = "Encodes a prompt with the text encoder bundled with the embedded default model."

    def encode(self, model, text):
        from salt_core.pipeline import encode_prompt

        emb, unknown = encode_prompt(model, text)
        result = ([[emb.detach().float().cpu(), {"pooled_output": None}]],)
        if unknown:
            words = ", ".join(map(repr, unknown))
            msg = ("words not in the model's vocabulary, each encoded as the unknown-word token <unk> (it carries "
                   f"no meaning of its own; the known words still condition the video): {words}")
            log.warning("salt: SaltTextEncode: %s", msg)
            return {"ui": {"text": [msg]}, "result": result}
        return result


class SaltPromptSchedule:
    """One entry of a prompt timeline; chain several to switch prompts during a video."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "conditioning": ("CONDITIONING", {
                    "tooltip": "The prompt from this frame on (SaltTextEncode, or CLIPTextEncode for Wan)."}),
                "start_frame": ("INT", {
                    "default": 0, "min": 0, "max": 1_000_000, "step": 1,
                    "tooltip": "Video frame at which this prompt starts. The switch happens at the nearest chunk "
                               "boundary of a causal model; the timeline needs one prompt at frame 0."}),
            },
            "optional": {
                "previous": ("SALT_PROMPT_SCHEDULE", {
                    "tooltip": "The timeline so far (another SaltPromptSchedule); empty starts a new one."}),
            },
        }

    RETURN_TYPES = ("SALT_PROMPT_SCHEDULE",)
    RETURN_NAMES = ("schedule",)
    OUTPUT_TOOLTIPS = ("The prompt timeline for SaltSampler (causal models only). On each switch the KV cache is "
                       "re-computed under the new prompt when the cache policy says recache_on_switch.",)
    FUNCTION = "build"
    CATEGORY = "Salt"
    DESCRIPTION = "Builds a timeline of prompts (frame -> conditioning) for long videos with prompt switches."

    def build(self, conditioning, start_frame, previous=None):
        if not isinstance(start_frame, int) or start_frame < 0:
            raise ValueError(f"start_frame must be a non-negative integer, got {start_frame!r}")
        if previous is not None and not isinstance(previous, PromptSchedule):
            raise ValueError(f"previous must be a SALT_PROMPT_SCHEDULE, got {type(previous).__name__}")
        ctx = conditioning_tensor(conditioning, f"conditioning at frame {start_frame}")
        schedule = previous or PromptSchedule(())
        return (schedule.with_entry(start_frame, ctx),)
