"""Any text encoder a DiT is conditioned on, behind one small surface: the embedded default's tiny word-level
encoder or umT5-XXL (real Wan models), chosen from the file itself.

    enc = load_prompt_encoder("umt5_xxl_fp16.safetensors")          # or text_encoder.safetensors (tiny)
    context, unknown = encode_prompts(enc, ["a fox in the snow"])   # [1, L, text_dim], unknown words ([] for umT5)
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import torch

from ..checkpoints.io import read_safetensors_header
from .io import FORMAT as TINY_FORMAT
from .io import load_text_encoder
from .model import TextEncoder
from .umt5 import UMT5TextEncoder, load_umt5

KINDS = ("salt", "umt5")


def text_encoder_kind(path: str | os.PathLike) -> str:
    """'salt' for the tiny encoder's file (its header says so), else 'umt5'."""
    path = os.fspath(path)
    if os.path.isfile(path) and path.endswith((".safetensors", ".sft")):
        try:
            if read_safetensors_header(path)[1].get("format") == TINY_FORMAT:
                return "salt"
        except ValueError:
            pass  # damaged: the umT5 loader names the problem
    return "umt5"


def load_prompt_encoder(path: str | os.PathLike, tokenizer: Optional[str | os.PathLike] = None, *,
                        device: str | torch.device = "cpu", dtype: Optional[torch.dtype] = None):
    """The tiny encoder or umT5 (with `tokenizer`, or the one a ComfyUI file carries) from `path`."""
    if text_encoder_kind(path) == "salt":
        if tokenizer is not None:
            raise ValueError(f"{os.fspath(path)}: the embedded default's text encoder carries its own vocabulary; "
                             f"a tokenizer ({os.fspath(tokenizer)}) applies to umT5 files only")
        return load_text_encoder(path, device=device)
    return load_umt5(path, tokenizer, device=device, dtype=dtype)


def context_dim(encoder) -> int:
    """Width of the states the encoder gives (the DiT's text_dim must equal it)."""
    return encoder.config.dim if isinstance(encoder, UMT5TextEncoder) else encoder.config.text_dim


def describe_encoder(encoder) -> str:
    if isinstance(encoder, UMT5TextEncoder):
        return f"umT5 {encoder.info.path if encoder.info else ''}".strip()
    return "the tiny world text encoder"


def encode_prompts(encoder, prompts: Sequence[str]) -> tuple[torch.Tensor, list[list[str]]]:
    """-> (context [B, L, text_dim] float32, words the encoder does not know per prompt)."""
    if isinstance(encoder, UMT5TextEncoder):
        context, _ = encoder.encode(list(prompts))
        return context, [[] for _ in prompts]
    if isinstance(encoder, TextEncoder):
        return encoder.encode(list(prompts))
    raise TypeError(f"not a text encoder: {type(encoder).__name__}")


def encode_negative(encoder, prompt: Optional[str] = None) -> torch.Tensor:
    """The unconditional context of classifier-free guidance: umT5 takes Wan's default negative prompt for None."""
    if isinstance(encoder, UMT5TextEncoder):
        return encoder.encode_negative(prompt)[0]
    if not prompt:
        raise ValueError("the tiny world text encoder has no negative prompt of its own: give one made of its words")
    return encode_prompts(encoder, [prompt])[0]
