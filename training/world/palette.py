"""Colours in CIE Lab (kornia), and which object colours are allowed on which background."""
from __future__ import annotations

from functools import lru_cache

import kornia
import torch

from .attributes import BACKGROUNDS, COLOURS, MIN_CONTRAST


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """rgb: [..., 3] sRGB in 0..1 -> [..., 3] Lab (L in 0..100)."""
    flat = rgb.reshape(-1, 3).T.reshape(1, 3, -1, 1)                                  # [1, 3, N, 1]
    lab = kornia.color.rgb_to_lab(flat.clamp(0.0, 1.0))
    return lab.reshape(3, -1).T.reshape(rgb.shape)


@lru_cache(maxsize=None)
def colour_lab(name: str) -> tuple[float, float, float]:
    return tuple(rgb_to_lab(torch.tensor(COLOURS[name])).tolist())


@lru_cache(maxsize=None)
def contrast(colour: str, background: str) -> float:
    """Smallest CIE76 delta E between the colour and any colour of the background."""
    c = rgb_to_lab(torch.tensor(COLOURS[colour]))
    ends = rgb_to_lab(torch.tensor(BACKGROUNDS[background]))
    return float((ends - c).norm(dim=-1).min())


def colours_for(background: str) -> tuple[str, ...]:
    """Object colours that stand out from this background (contrast >= MIN_CONTRAST)."""
    return tuple(c for c in COLOURS if contrast(c, background) >= MIN_CONTRAST)
