"""The tiny text encoder: word embedding + learned positions -> pre-norm transformer encoder ->
LayerNorm -> linear to text_dim. Padded positions are masked out of attention and zeroed in the
output, so a prompt's embedding does not depend on what it is batched with.

    enc = TextEncoder(TextEncoderConfig(), vocab)
    emb, unknown = enc.encode(["a red circle moves to the right"])   # emb: [B, L, text_dim]
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import TextEncoderConfig
from .tokenizer import Tokenized, WordTokenizer


class UnknownWordsWarning(UserWarning):
    """A prompt had words outside the encoder's vocabulary (they were encoded as <unk>)."""


class NoKnownWordsError(ValueError):
    """A non-blank prompt in which no word is in the encoder's vocabulary: encoding it would give the model an
    embedding of <unk> tokens only, i.e. an unconditioned video, so it is refused."""


class TruncatedPromptWarning(UserWarning):
    """A prompt was longer than the encoder's max_len; the words beyond it were not encoded."""


class EncoderBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, ffn_dim: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """x: [B, L, dim]; keys: [B, 1, 1, L] bool, True where a key may be attended."""
        q, k, v = self.qkv(self.norm1(x)).unflatten(-1, (3, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keys)                       # [B, heads, L, hd]
        x = x + self.out(a.transpose(1, 2).flatten(2))
        return x + self.ffn(self.norm2(x))


class TextEncoder(nn.Module):
    def __init__(self, config: TextEncoderConfig, vocab: Sequence[str]):
        super().__init__()
        self.config = config
        self.tokenizer = WordTokenizer(vocab)
        self.token_embedding = nn.Embedding(len(self.tokenizer), config.dim, padding_idx=0)
        self.position_embedding = nn.Parameter(torch.randn(config.max_len, config.dim) * 0.02)
        self.blocks = nn.ModuleList(EncoderBlock(config.dim, config.num_heads, config.ffn_dim, config.eps)
                                    for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.dim, eps=config.eps)
        self.proj = nn.Linear(config.dim, config.text_dim)

    @property
    def vocab(self) -> tuple[str, ...]:
        return self.tokenizer.vocab

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids: [B, L] int64; mask: [B, L] bool (True on words) -> [B, L, text_dim], zero on padding."""
        if ids.shape[1] > self.config.max_len:
            raise ValueError(f"ids have {ids.shape[1]} positions; this encoder takes at most max_len="
                             f"{self.config.max_len}")
        x = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]]
        # a prompt with no words attends to its padding (its output is zeroed anyway), never to nothing
        keys = (mask | ~mask.any(dim=1, keepdim=True))[:, None, None, :]
        for block in self.blocks:
            x = block(x, keys)
        return self.proj(self.norm(x)) * mask.unsqueeze(-1).to(x.dtype)

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, list[list[str]]]:
        """prompts: B strings -> (emb [B, L, text_dim] on the encoder's device, unknown words per prompt).
        L = config.pad_to when set (zero rows after the words), else the longest prompt.

        Unknown words are encoded as <unk>, returned (as typed), and reported with an UnknownWordsWarning.
        A non-blank prompt without any known word raises NoKnownWordsError (it would condition on nothing);
        a blank prompt ("") is the deliberate unconditional input (all padding) and is accepted."""
        tok = self.check_prompts(prompts)
        report = {i: u for i, u in enumerate(tok.unknown) if u}
        if report:
            warnings.warn("text encoder: words outside the vocabulary were encoded as <unk>: "
                          + "; ".join(f"prompt {i}: {u}" for i, u in report.items()), UnknownWordsWarning, stacklevel=2)
        cut = {i: t for i, t in enumerate(tok.truncated) if t}
        if cut:
            warnings.warn(f"text encoder: prompts longer than max_len={self.config.max_len} words were cut: "
                          + "; ".join(f"prompt {i} lost {t}" for i, t in cut.items()), TruncatedPromptWarning,
                          stacklevel=2)
        device = self.token_embedding.weight.device
        emb = self(tok.ids.to(device), tok.mask.to(device))
        if self.config.pad_to > emb.shape[1]:
            emb = F.pad(emb, (0, 0, 0, self.config.pad_to - emb.shape[1]))
        return emb, tok.unknown

    def check_prompts(self, prompts: Sequence[str]) -> Tokenized:
        """Tokenize, refusing (NoKnownWordsError) a non-blank prompt without any known word. Runs no model."""
        tok = self.tokenizer(prompts, self.config.max_len)
        bad = [i for i, (text, n) in enumerate(zip(prompts, tok.known)) if n == 0 and text.strip()]
        if not bad:
            return tok
        i = bad[0]
        unknown = tok.unknown[i]
        what = f"{unknown} are not in its vocabulary" if unknown else "it has only punctuation, no words"
        examples = ", ".join(sorted(self.vocab)[:12])
        more = f" (and {len(bad) - 1} more prompt(s) like it)" if len(bad) > 1 else ""
        raise NoKnownWordsError(
            f"text encoder: prompt {i} {prompts[i]!r} has no word this model knows: {what}{more}; it would give an "
            f"unconditioned video. The vocabulary has {len(self.vocab)} words, e.g. {examples}")
