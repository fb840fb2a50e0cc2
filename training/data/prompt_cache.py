"""A prompt-embedding cache: every prompt of a run (and its negative prompt) encoded once, so the text encoder
(umT5-XXL: 5.7B parameters) is never resident while training.

File (safetensors): `tokens` [total, D] — each prompt's real token rows one after the other (Wan zeroes the rows
after a prompt's length, so nothing else needs storing), `offsets` [N + 1] int64; metadata `salt_prompt_cache`
"1", `prompts` (JSON list), `encoder` (what made it, e.g. "umt5-xxl"), `text_len` (the length it padded to) and
`source` (the encoder file's name). Reading gives [B, L, D] with L = the longest prompt of the batch, zero rows
after each prompt — what the encoder itself gives, up to its padding (the DiT pads to its text_len).
"""
from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from salt_core.atomic import atomic_write
from salt_core.checkpoints import read_safetensors_header

MARKER = "salt_prompt_cache"


def write_prompt_cache(path: str, prompts: Sequence[str], embeddings: Sequence[torch.Tensor], *, encoder: str,
                       text_len: int, source: str, dtype: torch.dtype = torch.bfloat16) -> str:
    """prompts[i] -> embeddings[i] [length_i, D] (its real tokens); duplicates keep their first embedding."""
    if len(prompts) != len(embeddings) or not prompts:
        raise ValueError(f"a prompt cache needs one embedding per prompt: {len(prompts)} prompts, "
                         f"{len(embeddings)} embeddings")
    seen: dict[str, torch.Tensor] = {}
    for p, e in zip(prompts, embeddings):
        seen.setdefault(p, e)
    rows = [e.detach().to("cpu", dtype) for e in seen.values()]
    dims = {r.shape[-1] for r in rows}
    if len(dims) != 1 or any(r.ndim != 2 for r in rows):
        raise ValueError(f"prompt embeddings must all be [length, D] with one D, got dims {sorted(dims)}")
    lengths = torch.tensor([0] + [r.shape[0] for r in rows], dtype=torch.int64)
    tensors = {"tokens": torch.cat(rows).contiguous(), "offsets": lengths.cumsum(0)}
    meta = {MARKER: "1", "prompts": json.dumps(list(seen)), "encoder": encoder, "text_len": str(int(text_len)),
            "source": source}
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


class PromptCache:
    """Reads a prompt cache lazily (rows are sliced out of the file on demand)."""

    def __init__(self, path: str, *, expect_encoder: str = "", expect_text_len: int = 0):
        if not os.path.exists(path):
            raise FileNotFoundError(f"text.path {path!r}: prompt cache not found (build it with `python -m training "
                                    "text-cache`)")
        infos, meta = read_safetensors_header(path)
        if meta.get(MARKER) != "1" or not {"tokens", "offsets"} <= set(infos):
            raise ValueError(f"{path}: not a prompt cache (written by `python -m training text-cache`)")
        self.path, self.encoder, self.text_len = path, meta.get("encoder", ""), int(meta.get("text_len", "0"))
        if expect_encoder and self.encoder != expect_encoder:
            raise ValueError(f"{path}: made with text encoder {self.encoder!r}, text.cache_encoder expects "
                             f"{expect_encoder!r}; rebuild the cache with that encoder")
        if expect_text_len and self.text_len != expect_text_len:
            raise ValueError(f"{path}: padded to text_len={self.text_len}, the model expects text_len="
                             f"{expect_text_len}; rebuild the cache for it")
        prompts = json.loads(meta.get("prompts", "[]"))
        self._row = {p: i for i, p in enumerate(prompts)}
        self.text_dim = int(infos["tokens"].shape[-1])
        with safe_open(path, framework="pt", device="cpu") as f:
            self._offsets = f.get_tensor("offsets").tolist()
        if len(self._offsets) != len(prompts) + 1:
            raise ValueError(f"{path}: {len(prompts)} prompts but {len(self._offsets) - 1} offset pairs")

    def __contains__(self, prompt: str) -> bool:
        return prompt in self._row

    def __len__(self) -> int:
        return len(self._row)

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """[B, L, D] float32, L the longest of these prompts, zero rows after each prompt's tokens."""
        missing = [p for p in prompts if p not in self._row]
        if missing:
            raise ValueError(f"{self.path}: no embedding for prompt(s) {missing[:3]}; it holds {len(self._row)} "
                             "prompts (rebuild it with this prompt file)")
        spans = [(self._offsets[self._row[p]], self._offsets[self._row[p] + 1]) for p in prompts]
        L = max(1, max(b - a for a, b in spans))
        out = torch.zeros(len(prompts), L, self.text_dim)
        with safe_open(self.path, framework="pt", device="cpu") as f:
            tokens = f.get_slice("tokens")
            for i, (a, b) in enumerate(spans):
                if b > a:
                    out[i, : b - a] = tokens[a:b].float()
        return out


def encode_for_cache(encoder, prompts: Sequence[str], batch: int = 8, negative: Optional[str] = None):
    """Run a umT5-like encoder (`encode(prompts) -> (context [B, L, D], lengths [B])`) over prompts, keeping each
    prompt's real rows. The negative prompt, when given, is encoded too (appended)."""
    allp = list(prompts) + ([negative] if negative is not None and negative not in prompts else [])
    out = []
    for i in range(0, len(allp), batch):
        ctx, lengths = encoder.encode(allp[i:i + batch])
        out += [ctx[j, : max(1, int(n))] for j, n in enumerate(lengths)]
    return allp, out
