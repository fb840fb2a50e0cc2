"""Prompt-only datasets for the data-free stages (DMD, SC-DMD, salt-ar, ode-pairs)."""
from __future__ import annotations

import json
import os
from typing import Sequence

import torch

from .shards import DatasetError


def read_prompts(path: str) -> list[str]:
    """A .txt file (one prompt per line; blank lines and '#' comments skipped) or a .jsonl file whose
    lines are objects with a "prompt" field."""
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: prompt file not found")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason}); save the prompt file as UTF-8") from None
    prompts: list[str] = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if path.endswith(".jsonl"):
            try:
                prompts.append(str(json.loads(line)["prompt"]))
            except (ValueError, KeyError, TypeError):
                raise DatasetError(f"{path}:{n}: expected a JSON object with a 'prompt' field") from None
        else:
            prompts.append(line)
    if not prompts:
        raise DatasetError(f"{path}: no prompts in the file")
    return prompts


class PromptDataset:
    """Items: {"context": [L, text_dim], "prompt": str}; embeddings computed once per prompt, on demand."""

    def __init__(self, prompts: Sequence[str], encoder):
        self.prompts = list(prompts)
        self.encoder = encoder
        self._cache: dict[int, torch.Tensor] = {}
        check = getattr(encoder, "check", None)
        if check is not None:  # e.g. a prompt without one known word: refused before any compute
            check(self.prompts)

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, i: int) -> dict:
        i = int(i)
        if i not in self._cache:
            self._cache[i] = self.encoder.encode([self.prompts[i]])[0].float()
        return {"context": self._cache[i], "prompt": self.prompts[i]}
