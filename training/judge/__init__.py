"""The analytic judge of the synthetic world (no learned model): colour, shape and motion
adherence, identity consistency, motion smoothness, flicker, sharpness, and a weighted total.

    scores = score_clip(video, "a red circle moves to the right")   # video [T, H, W, 3] in 0..1
"""
from .config import DIMENSIONS, JudgeConfig
from .score import as_scene, mean_scores, score_batch, score_clip, weighted_total

__all__ = ["DIMENSIONS", "JudgeConfig", "score_clip", "score_batch", "mean_scores", "as_scene", "weighted_total"]
