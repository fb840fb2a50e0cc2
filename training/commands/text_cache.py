"""`text-cache`: encode the run's prompts (and its negative prompt) once with the text encoder of text.encoder /
text.path (umT5 for real Wan runs) into text.cache_output, so training reads embeddings, not the encoder."""
from __future__ import annotations

import os

import torch

from ..config import TrainConfig
from ..config_load import ConfigError
from ..data.prompt_cache import encode_for_cache, write_prompt_cache
from ..data.prompts import read_prompts


def run(cfg: TrainConfig, command: str = "text-cache") -> dict:
    t = cfg.text
    if t.encoder != "umt5":
        raise ConfigError(f"text-cache encodes with umT5: set text.encoder: umt5 (got {t.encoder!r}) and text.path "
                          "to the umT5 file (Wan's .pth with text.tokenizer, or ComfyUI's umt5_xxl_*.safetensors)")
    if not t.cache_output:
        raise ConfigError("text.cache_output is empty: give the prompt cache file to write")
    if not cfg.data.path:
        raise ConfigError("data.path is empty: give the prompt file to encode")
    prompts = read_prompts(cfg.data.path)
    from salt_core.text.umt5 import load_umt5

    device = "cuda" if cfg.run.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    encoder = load_umt5(t.path, t.tokenizer or None, device=device,
                        dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    allp, embeddings = encode_for_cache(encoder, prompts, negative=t.negative_prompt)
    path = write_prompt_cache(t.cache_output, allp, embeddings, encoder=encoder.info.preset or "umt5",
                              text_len=encoder.config.text_len,
                              source=os.path.basename(t.path))
    print(f"wrote {len(allp)} prompt embeddings to {path}")
    return {"output": path, "count": len(allp)}
