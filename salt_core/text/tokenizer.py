"""Word-level tokenizer over a fixed vocabulary.

Splitting (Unicode-aware, nothing typed is lost): a word is a run of letters and digits of any script
(`café`, `红色`, `3`), apostrophes inside it joined (`doesn't` -> `doesnt`); a run of non-ASCII symbols
(emoji, `©`, `€`) is a word of its own; combining marks and joiners (accents, ZWJ, emoji variation selectors)
stay with the character before them. Whitespace, punctuation and ASCII symbols (`+`, `=`, `$`) separate
words and carry nothing. Words are looked up lower-cased.

Ids: 0 = <pad>, 1 = <unk>, then the vocabulary in the order given. A word outside the vocabulary maps to
<unk> and is REPORTED as it was typed (returned per prompt), never silently dropped.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Sequence

import torch

PAD, UNK = "<pad>", "<unk>"
SPECIALS = (PAD, UNK)
_APOSTROPHES = "'\u2019"  # ASCII and typographic; joined inside a word, removed from its lookup key
_INVISIBLE_SPACES = "\u200b\ufeff"  # zero-width space, byte-order mark: format characters that separate

# character classes of the splitter
_LETTER, _SYMBOL, _JOINER, _SEPARATOR = "letter", "symbol", "joiner", "separator"


def _char_class(ch: str) -> str:
    if ch in _APOSTROPHES:
        return _LETTER
    if ch in _INVISIBLE_SPACES:
        return _SEPARATOR
    cat = unicodedata.category(ch)
    if cat[0] in "LN":
        return _LETTER
    if cat[0] == "M" or cat == "Cf":
        return _JOINER
    if cat[0] == "S":
        return _SYMBOL if ord(ch) >= 128 else _SEPARATOR
    if cat in ("Co", "Cn", "Cs"):  # private-use, unassigned, lone surrogates: characters we cannot read
        return _SYMBOL
    return _SEPARATOR  # whitespace (Z*), controls (Cc), punctuation (P*)


def split_words(text: str) -> list[str]:
    """The words of `text` as typed: 'A red Café, 🔴!' -> ['A', 'red', 'Café', '🔴']"""
    if not isinstance(text, str):
        raise ValueError(f"a prompt must be a string, got {type(text).__name__}")
    words: list[str] = []
    current, kind = [], None
    for ch in text:
        cls = _char_class(ch)
        if cls == _JOINER and kind is not None:
            current.append(ch)
            continue
        cls = _SYMBOL if cls == _JOINER else cls
        if cls != kind or cls == _SEPARATOR:
            if current:
                words.append("".join(current))
            current, kind = [], None
        if cls != _SEPARATOR:
            current.append(ch)
            kind = cls
    if current:
        words.append("".join(current))
    return [w for w in words if word_key(w)]


def word_key(word: str) -> str:
    """The vocabulary lookup key of a typed word: lower case, apostrophes removed."""
    return "".join(ch for ch in word.lower() if ch not in _APOSTROPHES)


def normalize(text: str) -> list[str]:
    """'A red Circle, moving-right!' -> ['a', 'red', 'circle', 'moving', 'right'] (the lookup keys)"""
    return [word_key(w) for w in split_words(text)]


@dataclass(frozen=True)
class Tokenized:
    ids: torch.Tensor                 # [B, L] int64, 0 (<pad>) after each prompt's end
    mask: torch.Tensor                # [B, L] bool, True on real tokens
    unknown: list[list[str]]          # per prompt, words that became <unk>, as typed (in order, repeats kept)
    truncated: list[list[str]]        # per prompt, words beyond max_len (not encoded), as typed
    known: list[int]                  # per prompt, how many words were in the vocabulary (encoded ones)


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
        """-> (ids of every word, the words outside the vocabulary as typed)."""
        typed = split_words(text)
        ids = [self.index.get(word_key(w), 1) for w in typed]
        return ids, [w for w, i in zip(typed, ids) if i == 1]

    def __call__(self, prompts: Sequence[str], max_len: int) -> Tokenized:
        """prompts: B strings -> ids / mask [B, L] with L = the longest prompt (at least 1, at most max_len)."""
        if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts) or len(prompts) == 0:
            raise ValueError("prompts must be a non-empty list of strings")
        rows, unknown, truncated, known = [], [], [], []
        for text in prompts:
            ids, unk = self.word_ids(text)
            rows.append(ids[:max_len])
            unknown.append(unk)
            truncated.append(split_words(text)[max_len:])
            known.append(sum(i != 1 for i in ids[:max_len]))
        length = max(1, max(len(r) for r in rows))
        ids = torch.zeros(len(rows), length, dtype=torch.long)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[i, : len(r)] = True
        return Tokenized(ids, mask, unknown, truncated, known)
