"""Sharpness: how steep object edges are, independent of their contrast and length.

Measured on each object's coverage map (0 on background, 1 inside, so the edge contrast is 1):
across an edge blurred by a profile p (integral 1), sum(g^2) / sum(g) of the gradient magnitude g
equals integral(p^2) ~ 1 / edge width. It is taken over a band around the outline and compared with
the same number for crisp renders of the world (antialiased over one pixel): 1 for crisp edges,
about 1 / width for blurred ones. A 3x3 median first removes pixel noise and keeps edges.
"""
from __future__ import annotations

from functools import lru_cache

import kornia
import torch

from training.world import ObjectSpec, Scene, render

from .config import JudgeConfig
from .morph import dilate, erode
from .segment import segment


def edge_steepness(coverage: torch.Tensor) -> float:
    """coverage: [T, H, W] of one object -> mean over frames with an object of sum(g^2) / sum(g)
    (NaN when the object is never seen)."""
    c = kornia.filters.median_blur(coverage.unsqueeze(1), (3, 3))                        # [T, 1, H, W]
    g = kornia.filters.spatial_gradient(c, mode="sobel", normalized=True).pow(2).sum(dim=2).sqrt()
    hard = (c > 0.5).to(c.dtype)
    inside = erode(hard, 5)
    band = dilate(hard, 5) - inside
    seen = inside.sum(dim=(1, 2, 3)) >= 1
    if not seen.any():
        return float("nan")
    num = (band * g * g).sum(dim=(1, 2, 3))
    den = (band * g).sum(dim=(1, 2, 3)).clamp_min(1e-6)
    return float((num / den)[seen].mean())


@lru_cache(maxsize=1)
def reference_steepness() -> float:
    """edge_steepness of crisp world renders (three shapes, medium, 64 x 64, off-grid centres)."""
    config = JudgeConfig()
    values = []
    for shape, start in (("circle", (0.43, 0.52)), ("square", (0.51, 0.47)), ("triangle", (0.48, 0.55))):
        scene = Scene((ObjectSpec(shape, "red", "right", "medium", start),), "black")
        values.append(edge_steepness(segment(render(scene, 5, 64, 64), ["red"], config).coverage(0)))
    return sum(values) / len(values)


def sharpness_score(coverages: list[torch.Tensor], config: JudgeConfig) -> float:
    """coverages: one [T, H, W] map per object -> score in [0, 1] (NaN when no object is seen)."""
    values = [r for r in (edge_steepness(c) for c in coverages) if r == r]
    if not values:
        return float("nan")
    r = sum(values) / len(values)
    return min(1.0, max(0.0, r / reference_steepness())) ** config.sharpness_power
