"""Word-level tokenizer over a fixed vocabulary: lower-case, punctuation -> spaces, split.

Ids: 0 = <pad>, 1 = <unk>, then the vocabulary in the order given. A word outside the
vocabulary maps to <unk> and is REPORTED (returned per prompt), never silently dropped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch

PAD, UNK = "<pad>", "<unk>"
SPECIALS = (PAD, UNK)
_SEPARATORS = re.compile(r"[^0-9a-z]+")


def normalize(text: str) -> list[str]:
    """'A red Circle, moving-right!' -> ['a', 'red', 'circle', 'moving', 'right']"""
    if not isinstance(text, str):
        raise ValueError(f"a prompt must be a string, got {type(text).__name__}")
    return [w for w in _SEPARATORS.split(text.lower().replace("'", "")) if w]


@dataclass(frozen=True)
class Tokenized:
    ids: torch.Tensor                 # [B, L] int64, 0 (<pad>) after each prompt's end
    mask: torch.Tensor                # [B, L] bool, True on real tokens
    unknown: list[list[str]]          # per prompt, words that became <unk> (in order, repeats kept)
    truncated: list[list[str]]        # per prompt, words beyond max_len (not encoded)


class WordTokenizer:
    def __init__(self, vocab: Sequence[str]):
        words = list(vocab)
        bad = [w for w in words if not isinstance(w, str) or normalize(w) != [w]]
        if bad:
            raise ValueError(f"vocabulary words must be single lower-case words without punctuation, got {bad[:5]}")
        clash = [w for w in words if w in SPECIALS]
        if clash or len(set(words)) != len(words):
            raise ValueError(f"vocabulary must hold unique words and none of {SPECIALS}")
        self.vocab: tuple[str, ...] = tuple(words)
        self.index = {w: i + len(SPECIALS) for i, w in enumerate(words)}

    def __len__(self) -> int:
        """Number of ids, specials included."""
        return len(self.vocab) + len(SPECIALS)

    def word_ids(self, text: str) -> tuple[list[int], list[str]]:
        words = normalize(text)
        ids = [self.index.get(w, 1) for w in words]
        return ids, [w for w in words if w not in self.index]

    def __call__(self, prompts: Sequence[str], max_len: int) -> Tokenized:
        """prompts: B strings -> ids / mask [B, L] with L = the longest prompt (at least 1, at most max_len)."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts) or len(prompts) == 0:
            raise ValueError("prompts must be a non-empty list of strings")
        rows, unknown, truncated = [], [], []
        for text in prompts:
            ids, unk = self.word_ids(text)
            rows.append(ids[:max_len])
            unknown.append(unk)
            truncated.append(normalize(text)[max_len:])
        length = max(1, max(len(r) for r in rows))
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, r in enumerate(rows):
            mask[i, : len(r)] = True
        return Tokenized(ids, mask, unknown, truncated)
