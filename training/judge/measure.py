"""Per-frame measurements of one object from its weight map: mass, centroid, shape signature, colour.

The world wraps around its edges, so centroids are circular means and all moments use coordinates
wrapped around the centroid; trajectories are unwrapped over time.

Shape signature (scale-invariant, in [T, 3]):
  0: 10 * (mu20 + mu02) / m^2        spread for the area (circle 1.60 < square 1.68 < triangle 1.94 < cross 2.06)
  1: log(M4 axes / M4 diagonals)     mass toward the axes (+: diamond, cross) or the diagonals (-: square)
  2: vertical skewness               the apex-up triangle is -0.56, every other shape 0
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import JudgeConfig
from .morph import erode
from .segment import segment


@dataclass(frozen=True)
class Track:
    """One object over time (absent frames hold the nearest present frame's values)."""

    mass: torch.Tensor       # [T] pixels
    x: torch.Tensor          # [T] centroid, units of S, unwrapped over time
    y: torch.Tensor          # [T]
    features: torch.Tensor   # [T, 3] shape signature
    colour: torch.Tensor     # [T, 3] Lab of the object's core (antialiased rim excluded)
    present: torch.Tensor    # [T] bool
    radius: torch.Tensor     # [T] radius of the equal-area circle, units of S


def _circular_mean(w: torch.Tensor, coords: torch.Tensor, period: int, dim: int) -> torch.Tensor:
    """w: [T, H, W]; coords: pixel centres along `dim` -> [T] circular mean position in 0..period."""
    theta = 2 * math.pi * coords / period
    s = (w * torch.sin(theta)).sum(dim=(1, 2))
    c = (w * torch.cos(theta)).sum(dim=(1, 2))
    return torch.remainder(torch.atan2(s, c) * period / (2 * math.pi), period)


def _wrap(d: torch.Tensor, period: int) -> torch.Tensor:
    return torch.remainder(d + period / 2, period) - period / 2


def _fill_missing(v: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Replace values of absent frames by the nearest present frame's ([T, ...])."""
    if present.all() or not present.any():
        return torch.nan_to_num(v)
    idx = torch.arange(len(v))
    ok = idx[present]
    nearest = ok[(idx.view(-1, 1) - ok.view(1, -1)).abs().argmin(dim=1)]
    return v[nearest]


def _unwrap(p: torch.Tensor, period: int) -> torch.Tensor:
    steps = _wrap(p[1:] - p[:-1], period)
    return torch.cat([p[:1], p[:1] + steps.cumsum(0)])


def measure_object(w: torch.Tensor, lab: torch.Tensor, min_area: float) -> Track:
    """w: [T, H, W] object weight; lab: [T, 3, H, W]; min_area: fraction of the frame."""
    t, h, width = w.shape
    side = min(h, width)
    ys = (torch.arange(h, dtype=w.dtype) + 0.5).view(1, h, 1)
    xs = (torch.arange(width, dtype=w.dtype) + 0.5).view(1, 1, width)
    mass = w.sum(dim=(1, 2))                                                              # [T]
    present = mass >= min_area * h * width
    m = mass.clamp_min(1e-6).view(t, 1, 1)
    cx = _circular_mean(w, xs, width, 2).view(t, 1, 1)
    cy = _circular_mean(w, ys, h, 1).view(t, 1, 1)
    dx, dy = _wrap(xs - cx, width), _wrap(ys - cy, h)                                   # [T, 1, W], [T, H, 1]
    mx, my = (w * dx).sum(dim=(1, 2), keepdim=True) / m, (w * dy).sum(dim=(1, 2), keepdim=True) / m
    dx, dy = dx - mx, dy - my
    cx, cy = cx + mx, cy + my

    def moment(f):
        return (w * f).sum(dim=(1, 2)) / m.view(t)

    mu20, mu02 = moment(dx * dx), moment(dy * dy)
    m4_axes = moment(dx ** 4 + dy ** 4)
    m4_diag = 0.5 * m4_axes + 3 * moment(dx * dx * dy * dy)
    features = torch.stack([
        10 * (mu20 + mu02) / m.view(t),
        torch.log(m4_axes.clamp_min(1e-9) / m4_diag.clamp_min(1e-9)),
        moment(dy ** 3) / mu02.clamp_min(1e-9) ** 1.5,
    ], dim=1)                                                                              # [T, 3]

    core = erode((w > 0.5).to(w.dtype).unsqueeze(1), 3)                                  # [T, 1, H, W]
    core_mass = core.sum(dim=(1, 2, 3))
    weight = torch.where((core_mass >= 1).view(t, 1, 1, 1), core, w.unsqueeze(1))
    colour = (weight * lab).sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp_min(1e-6)      # [T, 3]

    x = _unwrap(_fill_missing(cx.view(t), present), width) / side
    y = _unwrap(_fill_missing(cy.view(t), present), h) / side
    radius = torch.sqrt(mass / math.pi) / side
    return Track(mass, x, y, _fill_missing(features, present), _fill_missing(colour, present), present, radius)


def track_one(clip: torch.Tensor, colour, config: JudgeConfig) -> Track:
    """[T, H, W, 3] in 0..1 -> the track of a clip's one object of the named `colour` (None: any colour), segmented
    against the clip's background estimate as the judge does."""
    seg = segment(clip, [colour], config)
    return measure_object(seg.coverage(0), seg.lab, config.min_area)
