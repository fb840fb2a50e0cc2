"""The judge: score a clip against its prompt's description on every dimension, and a weighted total.

    scores = score_clip(video, "a red ball slides right on a black background")   # video [T, H, W, 3]
    scores = score_clip(video, scene)                                             # or a Scene
    # {'colour': .., 'shape': .., 'motion': .., 'identity': .., 'smoothness': .., 'flicker': ..,
    #  'sharpness': .., 'total': ..}   each in [0, 1]; NaN where the prompt says nothing to judge

A segment cut from frame s of a longer video: `score_clip(segment, prompt, start_frame=s)` judges the
motion against its state from time s / fps on (see motion.py); start_frame = 0 is the default.

Per-object dimensions (colour, shape, motion, identity, smoothness) are averaged over the described
objects; the total is the weighted mean of the dimensions that are not NaN.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch

from training.world import Scene, parse_prompt
from training.world.palette import colour_lab
from training.world.parse import ParsedPrompt
from training.world.render import DEFAULT_FPS

from .config import DIMENSIONS, JudgeConfig
from .measure import measure_object
from .motion import motion_score
from .segment import segment
from .shape import shape_score
from .sharpness import sharpness_score
from .temporal import flicker_score, identity_score, smoothness_score

Description = Union[Scene, ParsedPrompt, str]
MIN_SIDE = 16


def as_scene(description: Description) -> Scene:
    if isinstance(description, str):
        return parse_prompt(description).scene
    if isinstance(description, ParsedPrompt):
        return description.scene
    if isinstance(description, Scene):
        return description
    raise ValueError("description must be a Scene, a ParsedPrompt or a prompt string, "
                     f"got {type(description).__name__}")


def check_clip(clip: torch.Tensor) -> torch.Tensor:
    """-> float32 [T, H, W, 3] in 0..1 (uint8 is scaled by 1/255)."""
    if not isinstance(clip, torch.Tensor) or clip.ndim != 4 or clip.shape[-1] != 3:
        shape = tuple(clip.shape) if isinstance(clip, torch.Tensor) else type(clip).__name__
        raise ValueError(f"clip must be a tensor [T, H, W, 3], got {shape}")
    if clip.shape[0] < 1 or min(clip.shape[1:3]) < MIN_SIDE:
        raise ValueError(f"clip needs >= 1 frame and sides >= {MIN_SIDE} pixels, got {tuple(clip.shape)}")
    clip = clip.detach().cpu()
    clip = clip.float() / 255.0 if clip.dtype == torch.uint8 else clip.float()
    if not torch.isfinite(clip).all():
        raise ValueError("clip contains NaN or infinite values")
    return clip


def colour_score(track, colour: Optional[str], config: JudgeConfig) -> float:
    if colour is None:
        return float("nan")
    if not track.present.any():
        return 0.0
    observed = track.colour[track.present].median(dim=0).values
    delta = float((observed - torch.tensor(colour_lab(colour))).norm())
    return math.exp(-(delta / config.colour_sigma) ** 2)


def weighted_total(scores: dict, config: JudgeConfig) -> float:
    pairs = [(config.weights.get(k, 0.0), v) for k, v in scores.items() if k in DIMENSIONS and v == v]
    weight = sum(w for w, _ in pairs)
    return sum(w * v for w, v in pairs) / weight if weight > 0 else float("nan")


def _mean(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else float("nan")


def check_start_frame(start_frame) -> int:
    if not isinstance(start_frame, int) or isinstance(start_frame, bool) or start_frame < 0:
        raise ValueError(f"start_frame must be a non-negative int (a frame index), got {start_frame!r}")
    return start_frame


def score_clip(clip: torch.Tensor, description: Description, fps: float = DEFAULT_FPS,
               config: Optional[JudgeConfig] = None, start_frame: int = 0) -> dict[str, float]:
    """start_frame: the clip is frames start_frame.. of the described motion (0: it starts at t = 0)."""
    config = config or JudgeConfig()
    start_frame = check_start_frame(start_frame)
    clip = check_clip(clip)
    scene = as_scene(description)
    seg = segment(clip, [o.colour for o in scene.objects], config)
    coverages = [seg.coverage(k) for k in range(len(scene.objects))]                     # K x [T, H, W]
    tracks = [measure_object(c, seg.lab, config.min_area) for c in coverages]
    per_object = {k: [] for k in ("colour", "shape", "motion", "identity", "smoothness")}
    for obj, track in zip(scene.objects, tracks):
        per_object["colour"].append(colour_score(track, obj.colour, config))
        per_object["shape"].append(shape_score(track, obj.shape, config))
        per_object["motion"].append(motion_score(track, obj.motion, fps, config, start_frame))
        per_object["identity"].append(identity_score(track, config))
        per_object["smoothness"].append(smoothness_score(track, obj.motion, fps, config, start_frame))
    scores = {k: _mean(v) for k, v in per_object.items()}
    scores["flicker"] = flicker_score(seg, tracks, config)
    scores["sharpness"] = sharpness_score(coverages, config)
    scores["total"] = weighted_total(scores, config)
    return scores


def score_batch(clips: Union[torch.Tensor, Sequence[torch.Tensor]], descriptions: Sequence[Description],
                fps: float = DEFAULT_FPS, config: Optional[JudgeConfig] = None,
                start_frame: Union[int, Sequence[int]] = 0) -> list[dict[str, float]]:
    """clips: [B, T, H, W, 3] or a list of [T, H, W, 3]; one description per clip;
    start_frame: one for all clips or one per clip."""
    if len(clips) != len(descriptions):
        raise ValueError(f"score_batch: {len(clips)} clips but {len(descriptions)} descriptions")
    starts = [start_frame] * len(clips) if isinstance(start_frame, int) else list(start_frame)
    if len(starts) != len(clips):
        raise ValueError(f"score_batch: {len(clips)} clips but {len(starts)} start frames")
    return [score_clip(c, d, fps, config, s) for c, d, s in zip(clips, descriptions, starts)]


def mean_scores(results: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each key over clips, ignoring NaN."""
    keys = list(dict.fromkeys(k for r in results for k in r))
    return {k: _mean([r.get(k, float("nan")) for r in results]) for k in keys}
