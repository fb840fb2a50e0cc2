"""Signed distance (pixels, negative inside) of each shape, centred on its centroid, apex-up triangle.

All shapes have the area of a circle of radius r. Box-like distances are exact on edges and
approximate just outside corners, which is all a 1-pixel antialiasing ramp needs.
"""
from __future__ import annotations

import math

import torch

from .attributes import CROSS_ARM, CROSS_HALF_WIDTH, DIAMOND_VERTEX, SQUARE_HALF_SIDE, TRIANGLE_CIRCUMRADIUS

_COS30 = math.sqrt(3) / 2


def signed_distance(shape: str, dx: torch.Tensor, dy: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """dx, dy: [...] pixel offsets from the centroid (y down); r: radius in pixels, broadcastable."""
    ax, ay = dx.abs(), dy.abs()
    if shape == "circle":
        return torch.sqrt(dx * dx + dy * dy) - r
    if shape == "square":
        return torch.maximum(ax, ay) - SQUARE_HALF_SIDE * r
    if shape == "diamond":
        return (ax + ay - DIAMOND_VERTEX * r) / math.sqrt(2)
    if shape == "triangle":  # three half-planes at the inradius (half the circumradius)
        inradius = 0.5 * TRIANGLE_CIRCUMRADIUS * r
        base = dy - inradius
        sides = _COS30 * ax - 0.5 * dy - inradius
        return torch.maximum(base, sides)
    if shape == "cross":
        arm, half = CROSS_ARM * r, CROSS_HALF_WIDTH * r
        horizontal = torch.maximum(ax - arm, ay - half)
        vertical = torch.maximum(ax - half, ay - arm)
        return torch.minimum(horizontal, vertical)
    raise ValueError(f"unknown shape {shape!r}")


def coverage(sd: torch.Tensor) -> torch.Tensor:
    """Antialiased coverage in [0, 1] from a signed distance in pixels (a 1-pixel linear ramp)."""
    return (0.5 - sd).clamp(0.0, 1.0)
