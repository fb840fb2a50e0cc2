"""A umT5 encoder with its tokenizer: prompts -> the context a Wan 2.1 DiT is conditioned on.

    enc = load_umt5("umt5_xxl_fp16.safetensors")                 # ComfyUI's file carries its tokenizer
    context, lengths = enc.encode(["a cat on a sofa"])          # [1, 512, 4096] float32, tensor([8])
    uncond, _ = enc.encode_negative()                           # Wan's default negative prompt

Rows at and after `lengths[i]` are exactly zero: Wan keeps the first seq_len states and its DiT zero-pads
them back to 512; ComfyUI zeroes the masked rows. Both feed the same [B, 512, 4096] to the DiT.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ..model import TruncatedPromptWarning
from .config import UMT5Config
from .model import UMT5Encoder
from .tokenizer import UMT5Tokenizer

# umT5's spiece.model has 256000 pieces; the embedding has 256384 rows, the last 384 for the <extra_id_*>
# sentinels that google/umt5-xxl's tokenizer.json adds. A tokenizer may leave at most that many rows unused.
SENTINEL_ROWS = 384

# Wan 2.1's `sample_neg_prompt` (wan/configs/shared_config.py), used by Wan when the negative prompt is empty.
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，"
    "残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，"
    "三条腿，背景人很多，倒着走"
)


@dataclass(frozen=True)
class UMT5LoadedInfo:
    path: str
    format: str                   # "official" | "transformers" | "comfyui"
    config: UMT5Config
    preset: Optional[str]
    dtype: torch.dtype
    tokenizer_source: str
    notes: tuple[str, ...] = ()


def check_tokenizer_matches(tokenizer: UMT5Tokenizer, config: UMT5Config, encoder_source: str) -> None:
    """The tokenizer's ids must index the embedding, and cover it up to the sentinel rows."""
    rows, n = config.vocab_size, tokenizer.vocab_size
    if n > rows or rows - n > SENTINEL_ROWS or max(tokenizer.eos_id, tokenizer.pad_id) >= rows:
        raise ValueError(
            f"the tokenizer {tokenizer.source} ({n} ids, end token {tokenizer.eos_id}) does not match the text "
            f"encoder {encoder_source} ({rows} embedding rows): the encoder needs a tokenizer with between "
            f"{rows - SENTINEL_ROWS} and {rows} ids (umT5-XXL: google/umt5-xxl's tokenizer.json or spiece.model)")


class UMT5TextEncoder:
    def __init__(self, model: UMT5Encoder, tokenizer: UMT5Tokenizer, info: Optional[UMT5LoadedInfo] = None):
        check_tokenizer_matches(tokenizer, model.config, info.path if info else "<model>")
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.info = info

    @property
    def config(self) -> UMT5Config:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device: str | torch.device) -> "UMT5TextEncoder":
        self.model.to(device)
        return self

    @torch.no_grad()   # not inference_mode: cached contexts must stay usable as inputs to training graphs
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts: B strings -> (context [B, text_len, dim] float32, lengths [B] int64), both on the encoder's
        device. lengths counts the tokens of each prompt with its end token; rows from there on are zero.
        A prompt longer than text_len - 1 tokens is cut (as Wan's tokenizer does) with a TruncatedPromptWarning."""
        c = self.config
        batch = self.tokenizer(prompts, c.text_len)
        cut = {i: d for i, d in enumerate(batch.dropped) if d}
        if cut:
            warnings.warn(f"umT5: prompts longer than {c.text_len - 1} tokens were cut: "
                          + "; ".join(f"prompt {i} lost its last {d} tokens" for i, d in cut.items()),
                          TruncatedPromptWarning, stacklevel=2)
        device = self.device
        # Only the longest prompt's length is computed: padded keys are masked, so the states of the real
        # tokens are those of a full text_len pass, and the rows past them are zero either way.
        states = self.model(batch.ids.to(device), batch.mask.to(device))                      # [B, L, dim]
        context = torch.zeros(states.shape[0], c.text_len, c.dim, dtype=torch.float32, device=device)
        context[:, : states.shape[1]] = states.float()
        return context, batch.lengths.to(device)

    def encode_negative(self, prompt: Optional[str] = None, batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """The unconditional context for classifier-free guidance, repeated batch_size times. prompt=None
        takes Wan's default negative prompt (what Wan's generate does for an empty one); a string, including
        "", is encoded as given (ComfyUI encodes an empty negative prompt literally)."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        context, lengths = self.encode([WAN_NEGATIVE_PROMPT if prompt is None else prompt])
        return context.repeat(batch_size, 1, 1), lengths.repeat(batch_size)
