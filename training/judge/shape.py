"""Shape adherence: the object's moment signature against the named shape's, per present frame.

Signatures are measured, not hand-typed: each shape is rendered by the world (small, medium and
large, on black) and passed through the same segmentation and measurement as any clip.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from training.world import ObjectSpec, Scene, render
from training.world.attributes import SHAPES, SIZES

from .config import JudgeConfig
from .measure import Track, track_one

REFERENCE_SIDE = 64


@lru_cache(maxsize=1)
def shape_signatures() -> dict[str, torch.Tensor]:
    """shape name -> [3] mean signature over the three sizes."""
    config = JudgeConfig()
    out = {}
    for shape in SHAPES:
        feats = []
        for size in SIZES:
            scene = Scene((ObjectSpec(shape, "red", "still", size, (0.5, 0.5)),), "black")
            clip = render(scene, 1, REFERENCE_SIDE, REFERENCE_SIDE)
            feats.append(track_one(clip, "red", config).features[0])
        out[shape] = torch.stack(feats).mean(dim=0)
    return out


def shape_score(track: Track, shape: str, config: JudgeConfig) -> float:
    if not track.present.any():
        return 0.0
    d2 = (track.features[track.present] - shape_signatures()[shape]).pow(2).sum(dim=1)   # [T']
    return float(torch.exp(-d2 / (2 * config.shape_sigma ** 2)).mean())


def closest_shape(track: Track) -> str:
    """The shape whose signature is nearest to the median signature (a diagnostic)."""
    f = track.features[track.present].median(dim=0).values if track.present.any() else track.features[0]
    return min(shape_signatures(), key=lambda s: float((f - shape_signatures()[s]).norm()))
