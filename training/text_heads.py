"""Supervision of the tiny text encoder on world prompts: attribute targets from the prompt parser and
the heads that read them from the encoder's output (discarded after training).

Targets [SLOTS*4 + 1] int64: per object slot (in prompt order) colour, shape, motion, size, then the
background; 0 = "not said" (a slot without object, an unsaid size or background), k = the (k-1)-th name.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from training.world import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, SIZES, parse_prompt

SLOTS = 2
OBJECT_FIELDS = (("colour", tuple(COLOURS)), ("shape", SHAPES), ("motion", MOTIONS), ("size", tuple(SIZES)))
FIELDS = tuple((f"object{k}.{name}", names) for k in range(SLOTS) for name, names in OBJECT_FIELDS) \
    + (("background", tuple(BACKGROUNDS)),)


def prompt_targets(prompt: str) -> torch.Tensor:
    """What the prompt says, as class indices (see the module doc). Objects beyond SLOTS are ignored."""
    scene = parse_prompt(prompt).scene
    out = []
    for k in range(SLOTS):
        obj = scene.objects[k] if k < len(scene.objects) else None
        for name, names in OBJECT_FIELDS:
            value = getattr(obj, name) if obj is not None else None
            out.append(0 if value is None else names.index(value) + 1)
    out.append(0 if scene.background is None else tuple(BACKGROUNDS).index(scene.background) + 1)
    return torch.tensor(out, dtype=torch.long)


class AttributeHeads(nn.Module):
    """emb [B, L, D] (zero on padding), mask [B, L] -> logits per field. One learned attention query per object
    slot pools the tokens; linear classifiers read the pooled vectors (the background reads the mean)."""

    def __init__(self, text_dim: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(SLOTS, text_dim) / math.sqrt(text_dim))
        self.object_heads = nn.ModuleList(
            nn.ModuleDict({name: nn.Linear(text_dim, len(names) + 1) for name, names in OBJECT_FIELDS})
            for _ in range(SLOTS))
        self.background = nn.Linear(text_dim, len(BACKGROUNDS) + 1)

    def forward(self, emb: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        scores = torch.einsum("bld,sd->bsl", emb, self.queries) / math.sqrt(emb.shape[-1])
        weights = scores.masked_fill(~mask[:, None, :], float("-inf")).softmax(-1)   # [B, S, L]
        slots = torch.einsum("bsl,bld->bsd", weights, emb)
        logits = [self.object_heads[k][name](slots[:, k]) for k in range(SLOTS) for name, _ in OBJECT_FIELDS]
        return logits + [self.background(pooled(emb, mask))]


def pooled(emb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the words: [B, L, D], [B, L] -> [B, D]."""
    m = mask.to(emb.dtype).unsqueeze(-1)
    return (emb * m).sum(1) / m.sum(1).clamp_min(1.0)


def accuracy(logits: list[torch.Tensor], targets: torch.Tensor) -> dict[str, float]:
    """Per-field accuracy over the prompts where the field is said, plus 'all' (every field of a prompt,
    'not said' included, right)."""
    out, right_all = {}, torch.ones(len(targets), dtype=torch.bool)
    for i, (name, _) in enumerate(FIELDS):
        pred = logits[i].argmax(-1).cpu()
        right = pred == targets[:, i]
        right_all &= right
        said = targets[:, i] > 0
        if said.any():
            out[name] = float(right[said].float().mean())
    out["all"] = float(right_all.float().mean())
    return out
