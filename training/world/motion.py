"""Where an object is and how big it is at each time: the motion laws of the world.

All laws are closed-form in time, so any frame of any length renders directly (no simulation).
Straight motions never stop: past the frame edge the object wraps around (a torus world).
"""
from __future__ import annotations

import math

import torch

from .attributes import (BOUNCE_HEIGHT, BOUNCE_PERIOD, DIRECTIONS, GROW_SCALES, GROW_SECONDS,
                         ORBIT_PERIOD, ORBIT_RADIUS, SPEED)


def offset_and_scale(motion: str, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """t: [T] seconds -> (dx, dy) displacement from the start in units of S, and size scale; each [T]."""
    zero = torch.zeros_like(t)
    one = torch.ones_like(t)
    if motion in DIRECTIONS:
        ux, uy = DIRECTIONS[motion]
        return SPEED * ux * t, SPEED * uy * t, one
    if motion == "bounce":  # hops from the floor (start) up and back, smooth at both ends
        return zero, -BOUNCE_HEIGHT * 0.5 * (1 - torch.cos(2 * math.pi * t / BOUNCE_PERIOD)), one
    if motion == "orbit":  # starts at the right of its centre, turns counter-clockwise on screen
        phi = 2 * math.pi * t / ORBIT_PERIOD
        return ORBIT_RADIUS * (torch.cos(phi) - 1), -ORBIT_RADIUS * torch.sin(phi), one
    if motion in ("grow", "shrink"):
        lo, hi = GROW_SCALES
        a, b = (lo, hi) if motion == "grow" else (hi, lo)
        frac = (t / GROW_SECONDS).clamp(0.0, 1.0)
        return zero, zero, a + (b - a) * frac
    if motion == "still":
        return zero, zero, one
    raise ValueError(f"unknown motion {motion!r}")


def expected_area_ratio(motion: str, seconds: float, start: float = 0.0) -> float:
    """Area at `start + seconds` over area at `start` (1 for motions that keep the size)."""
    t = torch.tensor([float(start), float(start) + float(seconds)], dtype=torch.float64)
    _, _, s = offset_and_scale(motion, t)
    return float((s[1] / s[0]) ** 2)


def object_track(motion: str, start_xy_s: tuple[float, float], t: torch.Tensor):
    """Centre (x, y) in units of S (not wrapped) and size scale, each [T], for start given in units of S."""
    dx, dy, scale = offset_and_scale(motion, t)
    return start_xy_s[0] + dx, start_xy_s[1] + dy, scale
