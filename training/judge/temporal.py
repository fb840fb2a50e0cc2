"""Scores over time: subject identity consistency, motion smoothness, temporal flicker."""
from __future__ import annotations

import math

import torch

from training.world.motion import offset_and_scale

from .config import JudgeConfig
from .measure import Track
from .morph import dilate
from .segment import Segmentation


def _rms(v: torch.Tensor) -> float:
    return float(v.pow(2).mean().sqrt()) if v.numel() else 0.0


def _spread(v: torch.Tensor) -> float:
    """v: [T, D] -> robust spread over time: norm of the per-dimension median absolute deviation
    (scaled to a standard deviation), so a few occluded frames do not count as a change of identity."""
    return float((1.4826 * (v - v.median(dim=0).values).abs().median(dim=0).values).norm())


def identity_score(track: Track, config: JudgeConfig) -> float:
    """presence * stability of colour, shape signature and size (second differences of log size)."""
    keep = track.present
    if int(keep.sum()) < 2:
        return 0.0
    colour_spread = _spread(track.colour[keep])
    shape_spread = _spread(track.features[keep])
    size_jitter = 1.4826 * float(torch.diff(torch.log(track.radius[keep]), n=2).abs().median()) \
        if int(keep.sum()) >= 3 else 0.0
    return (float(keep.float().mean())
            * math.exp(-(colour_spread / config.identity_colour_sigma) ** 2)
            * math.exp(-(shape_spread / config.identity_shape_sigma) ** 2)
            * math.exp(-(size_jitter / config.identity_size_sigma) ** 2))


def smoothness_score(track: Track, motion, fps: float, config: JudgeConfig, start_frame: int = 0) -> float:
    """Acceleration of (x, y, radius) beyond what the named motion itself has, relative to the speed.
    start_frame: the track's first frame is frame `start_frame` of the motion (a bounce or an orbit
    accelerates differently at different times)."""
    keep = track.present
    if int(keep.sum()) < 3:
        return 0.0 if motion is not None or int(keep.sum()) else float("nan")
    state = torch.stack([track.x[keep], track.y[keep], track.radius[keep]], dim=1)       # [T', 3] units of S
    speed = _rms(torch.diff(state, dim=0).norm(dim=1))
    accel = _rms(torch.diff(state, n=2, dim=0).norm(dim=1))
    natural = 0.0
    if motion is not None:
        t = (start_frame + torch.arange(len(keep), dtype=torch.float64)[keep]) / fps
        dx, dy, _ = offset_and_scale(motion, t)
        natural = _rms(torch.diff(torch.stack([dx, dy], dim=1), n=2, dim=0).norm(dim=1))
    excess = max(0.0, accel - natural) / (speed + config.smooth_speed_floor)
    return math.exp(-(excess / config.smooth_sigma) ** 2)


def flicker_score(seg: Segmentation, tracks: list[Track], config: JudgeConfig) -> float:
    """Change that motion does not explain: background pixels (away from every object in both
    frames) changing between frames, and object colours jumping (second differences over time)."""
    if seg.lab.shape[0] < 2:
        return float("nan")
    near = dilate((seg.foreground > 0.05).to(seg.lab.dtype).unsqueeze(1), 5)                        # [T,1,H,W]
    still = (1 - near[1:]) * (1 - near[:-1])                                                         # [T-1,1,H,W]
    change = (seg.lab[1:] - seg.lab[:-1]).pow(2).sum(dim=1, keepdim=True)                           # [T-1,1,H,W]
    background = math.sqrt(float((still * change).sum() / still.sum().clamp_min(1.0)))
    jumps = [_rms(torch.diff(tr.colour[tr.present], n=2, dim=0).norm(dim=1)) for tr in tracks
             if int(tr.present.sum()) >= 3]
    colour = max(jumps, default=0.0)
    return math.exp(-(background ** 2 + colour ** 2) / config.flicker_sigma ** 2)
