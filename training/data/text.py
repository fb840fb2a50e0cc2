"""Text-embedding sources: prompts -> context [B, L, text_dim] for prompt datasets and negative prompts.

* `hash`: a deterministic stand-in for a text encoder (each word a fixed pseudo-random vector);
  lets the data-free stages and tests run before a real encoder exists.
* `salt`: salt_core's tiny text encoder (`salt_core.text.load_text_encoder`); words outside its
  vocabulary are reported by the encoder's warning.
* `file`: embeddings precomputed to a .safetensors (`context` [N, L, D], metadata `prompts`), e.g. the
  `text_embeddings.safetensors` written by build-latents.
* `umt5`: umT5-XXL (`salt_core.text.umt5.load_umt5`), resident in memory;
* `cache`: a prompt cache (training/data/prompt_cache.py, built once by `text-cache`): no encoder resident;
* `callable`: 'package.module:factory'; factory() returns an object with encode(list[str]) (or a callable)
  -> [B, L, D]. The synthetic world's text encoder plugs in here.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import os
from typing import Callable, Optional, Protocol, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from salt_core.atomic import atomic_write
from salt_core.checkpoints import read_safetensors_header


class TextEncoder(Protocol):
    def encode(self, prompts: Sequence[str]) -> torch.Tensor: ...


class HashTextEncoder:
    def __init__(self, text_dim: int, max_tokens: int = 16):
        if max_tokens < 1:
            raise ValueError(f"text.max_tokens must be >= 1, got {max_tokens}")
        self.text_dim, self.max_tokens = text_dim, max_tokens

    def _word(self, word: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little") & ((1 << 63) - 1)
        return torch.randn(self.text_dim, generator=torch.Generator().manual_seed(seed))

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        out = torch.zeros(len(prompts), self.max_tokens, self.text_dim)
        for i, p in enumerate(prompts):
            for j, w in enumerate(p.lower().split()[: self.max_tokens]):
                out[i, j] = self._word(w)
        return out


class FileTextEncoder:
    def __init__(self, path: str):
        if not os.path.exists(path):
            raise FileNotFoundError(f"text.path {path!r}: embeddings file not found")
        infos, _ = read_safetensors_header(path)  # a damaged or truncated file: CheckpointError naming it
        if "context" not in infos:
            raise ValueError(f"{path}: not a text-embeddings file (no 'context' tensor; it has {sorted(infos)[:5]})")
        with safe_open(path, framework="pt", device="cpu") as f:
            prompts = json.loads(f.metadata().get("prompts", "[]"))
            ctx = f.get_tensor("context")
        if len(prompts) != ctx.shape[0]:
            raise ValueError(f"{path}: {len(prompts)} prompts but {ctx.shape[0]} embeddings")
        self.path, self.text_dim = path, ctx.shape[-1]
        self._table = {p: ctx[i] for i, p in enumerate(prompts)}

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        missing = [p for p in prompts if p not in self._table]
        if missing:
            raise ValueError(f"{self.path}: no embedding for prompt(s) {missing[:3]}; "
                             f"it holds {len(self._table)} prompts")
        return torch.stack([self._table[p] for p in prompts])


class _Adapter:
    """Any `encode(prompts)` method or callable returning [B, L, D], or ([B, L, D], extras) -> [B, L, D];
    `check(prompts)`, when given, refuses prompts the encoder cannot use before any compute."""

    def __init__(self, fn: Callable, check: Optional[Callable] = None):
        self._fn = fn
        self._check = check

    def check(self, prompts: Sequence[str]) -> None:
        if self._check is not None:
            self._check(list(prompts))

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        out = self._fn(list(prompts))
        return (out[0] if isinstance(out, tuple) else out).detach().float().cpu()


def load_callable(spec: str, what: str):
    if ":" not in spec:
        raise ValueError(f"{what} {spec!r} must look like 'package.module:function'")
    mod, _, name = spec.partition(":")
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{what} {spec!r} cannot be imported: {e}") from None


def build_text_encoder(cfg, text_dim: int) -> TextEncoder:
    """The encoder named by a TextConfig, checked to produce `text_dim` wide embeddings."""
    if cfg.encoder == "hash":
        enc = HashTextEncoder(text_dim, cfg.max_tokens)
    elif not cfg.path:
        raise ValueError(f"text.encoder is {cfg.encoder!r} but text.path is empty")
    elif cfg.encoder == "file":
        enc = FileTextEncoder(cfg.path)
    elif cfg.encoder == "cache":
        from .prompt_cache import PromptCache

        enc = PromptCache(cfg.path, expect_encoder=cfg.cache_encoder)
    elif cfg.encoder == "umt5":
        from salt_core.text.umt5 import load_umt5

        umt5 = load_umt5(cfg.path, cfg.tokenizer or None)
        enc = _Adapter(lambda prompts: umt5.encode(prompts)[0])
    elif cfg.encoder == "salt":
        from salt_core.text import load_text_encoder

        salt = load_text_encoder(cfg.path).eval()
        enc = _Adapter(salt.encode, salt.check_prompts)
    else:
        obj = load_callable(cfg.path, "text.path")()
        enc = _Adapter(obj.encode if hasattr(obj, "encode") else obj)
    if cfg.encoder == "cache":  # no encoder to run: the cache says its width
        if enc.text_dim != text_dim:
            raise ValueError(f"{cfg.path}: the prompt cache holds {enc.text_dim}-wide embeddings; the model expects "
                             f"text_dim={text_dim}")
        return enc
    probe = enc.encode([""])
    if probe.ndim != 3 or probe.shape[-1] != text_dim:
        raise ValueError(f"text encoder {cfg.encoder!r} gives embeddings of shape {tuple(probe.shape)}; "
                         f"the model expects text_dim={text_dim}")
    return enc


def write_embeddings(path: str, prompts: Sequence[str], context: torch.Tensor) -> None:
    """Save a `file` text source: context [N, L, D] for the N prompts (duplicates removed)."""
    seen: dict[str, int] = {}
    for i, p in enumerate(prompts):
        seen.setdefault(p, i)
    keep = list(seen.values())
    tensors = {"context": context[keep].contiguous().float()}
    meta = {"prompts": json.dumps(list(seen))}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
