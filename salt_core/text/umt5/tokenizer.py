"""The umT5 tokenizer, read from a file the user has (nothing is downloaded):

* `tokenizer.json` (the `tokenizers` library), as in the google/umt5-xxl folder of the Wan release;
* `spiece.model` (the `sentencepiece` library), the same vocabulary as a SentencePiece model;
* a folder holding either (tokenizer.json preferred: it is what Wan's AutoTokenizer reads);
* the `spiece_model` uint8 tensor inside ComfyUI's umt5_xxl_*.safetensors (a serialised SentencePiece model).

Both libraries are the optional extra `umt5` (pip install -e ".[umt5]"), imported only when used.

Tokenising follows Wan's T5EncoderModel: the prompt is cleaned (ftfy.fix_text, HTML entities unescaped twice,
runs of whitespace -> one space, stripped), tokenised without specials, cut to text_len - 1 tokens, given the
end-of-sequence token, and padded with the pad id; the mask is True up to and including the end token.

    tok = UMT5Tokenizer.from_file("google/umt5-xxl/tokenizer.json")
    batch = tok(["a cat on a sofa"], text_len=512)   # ids / mask [1, L], L = the longest prompt (<= 512)
"""
from __future__ import annotations

import html
import importlib
import os
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

EXTRA_HINT = 'install the optional extra: pip install -e ".[umt5]" (or pip install "salt-comfyui[umt5]")'
CLEAN_MODES = ("wan", "none")
_WHITESPACE = re.compile(r"\s+")


class MissingTokenizerLibrary(ImportError):
    """A library the umT5 tokenizer needs is not installed; the message names the extra to install."""


def _require(module: str, purpose: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingTokenizerLibrary(f"the Python package {module!r} is needed {purpose}; {EXTRA_HINT}") from None


def clean_prompt(text: str) -> str:
    """Wan's 'whitespace' cleaning: ftfy.fix_text, HTML entities unescaped twice, whitespace runs -> ' ', strip."""
    ftfy = _require("ftfy", "to clean prompts as Wan does (ftfy.fix_text)")
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _WHITESPACE.sub(" ", text).strip()


@dataclass(frozen=True)
class TokenBatch:
    ids: torch.Tensor          # [B, L] int64, the pad id after each prompt's end token
    mask: torch.Tensor         # [B, L] bool, True on real tokens and the end token
    lengths: torch.Tensor      # [B] int64, tokens per prompt including the end token
    dropped: list[int]         # per prompt, tokens cut off to fit text_len


@dataclass(frozen=True)
class _Backend:
    encode: Callable[[list[str]], list[list[int]]]   # texts -> ids without special tokens
    vocab_size: int
    eos_id: int
    pad_id: int


def _sentencepiece_backend(model: bytes | str, source: str) -> _Backend:
    spm = _require("sentencepiece", "to read a SentencePiece tokenizer (spiece.model / ComfyUI's spiece_model)")
    try:
        if isinstance(model, bytes):
            sp = spm.SentencePieceProcessor(model_proto=model)
        else:
            sp = spm.SentencePieceProcessor(model_file=model)
    except Exception as e:  # sentencepiece raises RuntimeError / OSError with its own text
        raise ValueError(f"{source}: not a valid SentencePiece model ({type(e).__name__}: {e})") from None
    if sp.eos_id() < 0:
        raise ValueError(f"{source}: the SentencePiece model defines no end-of-sequence token (eos_id is -1); "
                         "umT5 needs one (id 1 in google/umt5-xxl)")
    return _Backend(lambda texts: [list(ids) for ids in sp.encode(texts, out_type=int)], sp.get_piece_size(),
                    sp.eos_id(), max(sp.pad_id(), 0))


def _tokenizers_backend(path: str) -> _Backend:
    tokenizers = _require("tokenizers", "to read a tokenizer.json")
    try:
        tk = tokenizers.Tokenizer.from_file(path)
    except Exception as e:
        raise ValueError(f"{path}: not a valid tokenizer.json ({type(e).__name__}: {e})") from None
    tk.no_truncation()   # a saved file may carry its own truncation / padding; ours is applied below
    tk.no_padding()
    eos = tk.token_to_id("</s>")
    if eos is None:
        raise ValueError(f"{path}: the tokenizer has no end-of-sequence token '</s>'; not a T5-family tokenizer")
    pad = tk.token_to_id("<pad>")
    return _Backend(lambda texts: [e.ids for e in tk.encode_batch(texts, add_special_tokens=False)],
                    tk.get_vocab_size(with_added_tokens=True), eos, 0 if pad is None else pad)


class UMT5Tokenizer:
    def __init__(self, backend: _Backend, source: str, clean: str = "wan"):
        if clean not in CLEAN_MODES:
            raise ValueError(f"clean={clean!r}; expected one of {list(CLEAN_MODES)}")
        self._backend = backend
        self.source = source
        self.clean = clean
        if clean == "wan":
            _require("ftfy", "to clean prompts as Wan does (ftfy.fix_text)")   # known before the first prompt

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can emit (added tokens included)."""
        return self._backend.vocab_size

    @property
    def eos_id(self) -> int:
        return self._backend.eos_id

    @property
    def pad_id(self) -> int:
        return self._backend.pad_id

    @classmethod
    def from_file(cls, path: str | os.PathLike, clean: str = "wan") -> "UMT5Tokenizer":
        """tokenizer.json, spiece.model (any other name: read as a SentencePiece model) or a folder holding one."""
        path = os.fspath(path)
        if os.path.isdir(path):
            found = [n for n in ("tokenizer.json", "spiece.model") if os.path.isfile(os.path.join(path, n))]
            if not found:
                raise FileNotFoundError(f"{path}: a tokenizer folder must hold tokenizer.json or spiece.model (the "
                                        "google/umt5-xxl folder of the Wan release); found "
                                        f"{sorted(os.listdir(path))[:10]}")
            path = os.path.join(path, found[0])
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such tokenizer file (expected tokenizer.json or spiece.model)")
        if path.endswith(".json"):
            return cls(_tokenizers_backend(path), path, clean)
        return cls(_sentencepiece_backend(path, path), path, clean)

    @classmethod
    def from_sentencepiece_bytes(cls, model: bytes, source: str, clean: str = "wan") -> "UMT5Tokenizer":
        """A serialised SentencePiece model, e.g. ComfyUI's spiece_model tensor as bytes."""
        return cls(_sentencepiece_backend(bytes(model), source), source, clean)

    def __call__(self, prompts: Sequence[str], text_len: int) -> TokenBatch:
        """prompts: B strings -> TokenBatch with L = the longest prompt in tokens (end token included, <= text_len)."""
        if isinstance(prompts, str) or len(prompts) == 0 or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a non-empty list of strings")
        if text_len < 2:
            raise ValueError(f"text_len={text_len} must leave room for a token and the end token")
        texts = [clean_prompt(p) for p in prompts] if self.clean == "wan" else list(prompts)
        encoded = self._backend.encode(texts)
        keep = text_len - 1
        rows = [ids[:keep] + [self.eos_id] for ids in encoded]
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        mask = torch.arange(length)[None, :] < lengths[:, None]
        return TokenBatch(ids, mask, lengths, [max(0, len(e) - keep) for e in encoded])
