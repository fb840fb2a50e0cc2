"""Clip -> Lab, a static background estimate, foreground weights, and one coverage map per object.

The world's backgrounds are static and vary only vertically (plain or a vertical gradient), so
the background is a robust per-row fit over the whole clip (see `static_background`).
Objects are told apart by colour: each foreground pixel goes to the described object whose
background-to-named-colour blend line (in RGB) passes nearest to it. An object's coverage (what
its moments are measured on) is then the linear unmixing of each pixel near it between the
background and the object's own core colour, so antialiased edges give sub-pixel centroids and a
size that does not jitter.
"""
from __future__ import annotations

from dataclasses import dataclass

import kornia
import torch

from training.world.attributes import COLOURS

from .config import JudgeConfig
from .morph import dilate, erode


@dataclass(frozen=True)
class Segmentation:
    rgb: torch.Tensor          # [T, 3, H, W] the clip
    lab: torch.Tensor          # [T, 3, H, W] the clip in Lab
    background_rgb: torch.Tensor  # [1, 3, H, 1] the static background, per row
    background: torch.Tensor   # [1, 3, H, 1] the same in Lab
    distance: torch.Tensor     # [T, H, W] delta E from the background
    foreground: torch.Tensor   # [T, H, W] weight in 0..1
    objects: torch.Tensor      # [K, T, H, W] each object's weight (foreground split by colour)

    def coverage(self, k: int) -> torch.Tensor:
        """-> [T, H, W] coverage of object k in 0..1: near its mask, the fraction of the way each
        pixel lies from the background to the object's core colour (in RGB, where the world mixes)."""
        hard = (self.objects[k] > 0.5).to(self.rgb.dtype).unsqueeze(1)                  # [T, 1, H, W]
        core = erode(hard, 3)                                 # without the rim and without speckles
        empty = core.sum(dim=(2, 3), keepdim=True) < 1        # too small to erode: keep the mask itself
        core = torch.where(empty, hard, core)
        near = torch.where(empty, dilate(hard, 3), dilate(core, 5)).squeeze(1)           # [T, H, W]
        colour = (core * self.rgb).sum(dim=(2, 3), keepdim=True) / core.sum(dim=(2, 3), keepdim=True).clamp_min(1)
        span = colour - self.background_rgb                                               # [T, 3, H, 1]
        along = ((self.rgb - self.background_rgb) * span).sum(dim=1) / span.pow(2).sum(dim=1).clamp_min(1e-4)
        return along.clamp(0.0, 1.0) * near


def static_background(rgb: torch.Tensor, iterations: int = 4, tolerance: float = 0.1) -> torch.Tensor:
    """rgb: [T, 3, H, W] -> [1, 3, H, 1]: the static background, per row.

    A robust fit (iteratively reweighted least squares) of colour = a + b * row to every pixel of
    the clip, then per-row weighted means with the final weights (any vertical profile). Pixels
    far from the fit (objects, which contrast with the background) get ~0 weight, so objects may
    cover most of a row as long as the background is most of the clip."""
    t, c, h, w = rgb.shape
    row = torch.linspace(-1.0, 1.0, h, dtype=rgb.dtype).view(1, 1, h, 1)                    # [1, 1, H, 1]
    fit = rgb.flatten(2).median(dim=2).values.median(dim=0).values.view(1, c, 1, 1)        # global median start
    for _ in range(iterations):
        weight = torch.exp(-((rgb - fit).pow(2).sum(dim=1, keepdim=True) / tolerance ** 2))   # [T, 1, H, W]
        sw, swr, swrr = weight.sum(), (weight * row).sum(), (weight * row * row).sum()
        sx, sxr = (weight * rgb).sum(dim=(0, 2, 3)), (weight * rgb * row).sum(dim=(0, 2, 3))  # [3]
        det = (sw * swrr - swr * swr).clamp_min(1e-9)
        a, b = (swrr * sx - swr * sxr) / det, (sw * sxr - swr * sx) / det
        fit = a.view(1, c, 1, 1) + b.view(1, c, 1, 1) * row                                  # [1, 3, H, 1]
    weight = torch.exp(-((rgb - fit).pow(2).sum(dim=1, keepdim=True) / tolerance ** 2))
    per_row = (weight * rgb).sum(dim=(0, 3), keepdim=True) / weight.sum(dim=(0, 3), keepdim=True).clamp_min(1e-6)
    enough = weight.sum(dim=(0, 3), keepdim=True) >= 0.05 * t * w
    return torch.where(enough, per_row, fit)


def segment(clip: torch.Tensor, colours: list, config: JudgeConfig) -> Segmentation:
    """colours: the named colour of each described object (None allowed for a single object)."""
    rgb = clip.permute(0, 3, 1, 2).clamp(0.0, 1.0).contiguous()                          # [T, 3, H, W]
    lab = kornia.color.rgb_to_lab(rgb)
    background_rgb = static_background(rgb)
    background = kornia.color.rgb_to_lab(background_rgb)
    distance = (lab - background).pow(2).sum(dim=1).sqrt()                                # [T, H, W]
    foreground = ((distance - config.fg_low) / (config.fg_high - config.fg_low)).clamp(0.0, 1.0)
    parts = (rgb, lab, background_rgb, background, distance, foreground)
    if len(colours) == 1:
        return Segmentation(*parts, foreground.unsqueeze(0))
    if any(c is None for c in colours):
        raise ValueError("judge: every object of a multi-object description needs a colour (objects are told apart "
                         f"by colour), got colours {colours}")
    # each pixel goes to the object whose background->colour segment (in RGB) passes nearest to it,
    # so antialiased rims (blends of background and object) go to their own object
    refs = torch.tensor([COLOURS[c] for c in colours], dtype=rgb.dtype).view(-1, 1, 3, 1, 1)  # [K, 1, 3, 1, 1]
    span = refs - background_rgb.unsqueeze(0)                                               # [K, 1, 3, H, 1]
    offset = (rgb - background_rgb).unsqueeze(0)                                            # [1, T, 3, H, W]
    along = ((offset * span).sum(dim=2, keepdim=True) / span.pow(2).sum(dim=2, keepdim=True).clamp_min(1e-4))
    miss = (offset - along.clamp(0.0, 1.0) * span).pow(2).sum(dim=2)                      # [K, T, H, W]
    nearest = miss.argmin(dim=0)                                                            # [T, H, W]
    owner = torch.nn.functional.one_hot(nearest, len(colours)).permute(3, 0, 1, 2).to(lab.dtype)
    return Segmentation(*parts, owner * foreground.unsqueeze(0))
