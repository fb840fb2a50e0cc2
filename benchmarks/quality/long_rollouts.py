"""Section 4: long rollouts of the causal models, 4x and 16x the training length (36 and 144 latent frames),
under the cache policies window / sink_window / full, at NFE 4. The video is decoded (streaming, causal),
cut into consecutive 33-frame segments, and each segment is judged against the prompt at its time offset
(score_clip(..., start_frame=s)).

By causality (chunk-by-chunk sampling with one seeded noise stream, causal VAE decoder) the 4x rollout is
the first 36 latent frames of the 16x one; the suite rolls out 16x once and checks that prefix identity on
the latents of prompt 0 for every (model, policy) (`prefix_identical` in results.json).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Sequence, Union

import torch

from generation import (AR_TEACHERS, CLIP_FRAMES, FPS, LATENT, Bench, causal_rollout, guidance_for, to_video,
                        trained_policy)
from salt_core.kv_cache import CachePolicy
from salt_core.sampling import PromptSegment
from salt_core.validation import pixel_frames_for
from stats import mean, se
from training.judge import DIMENSIONS, score_clip

NFE = 4
SEGMENT = CLIP_FRAMES  # 33 pixel frames: the training clip length
LENGTHS = {"4x": 4 * LATENT[1], "16x": 16 * LATENT[1]}
SINK_FRAMES = 3
KEYS = (*DIMENSIONS, "total")


def policies_for(info, total_frames: int) -> dict[str, CachePolicy]:
    """window = the trained window; sink_window = SINK_FRAMES sink frames + the same window; full = every frame.
    All with cache_relative positions (what the students were trained with; CachePolicy accepts it for every
    kind, and for `full` nothing is evicted, so ranks equal the true frame indices)."""
    trained = trained_policy(info)
    window = trained.window_frames or 2 * info.sampling.chunk_frames
    base = dict(positions="cache_relative", context_t=trained.context_t)
    return {"window": CachePolicy("window", window_frames=window, **base),
            "sink_window": CachePolicy("sink_window", window_frames=window, sink_frames=SINK_FRAMES, **base),
            "full": CachePolicy("full", max_frames=total_frames, **base)}


def rollout(bench: Bench, name: str, prompts: Union[torch.Tensor, Sequence[PromptSegment]], latent_frames: int,
            policy: CachePolicy, seed: int, steps: int = NFE) -> torch.Tensor:
    model, info = bench.model(name)
    return causal_rollout(model, info, prompts, bench.neg, steps, seed, guidance_for(name), latent_frames, policy)


def segment_starts(begin: int, end: int, length: int = SEGMENT) -> list[int]:
    """Starts of consecutive whole segments of `length` frames inside [begin, end)."""
    return list(range(begin, end - length + 1, length))


def score_segments(video: torch.Tensor, prompt: str, starts: list[int], origin: int = 0) -> list[dict]:
    """Judge video[s : s+SEGMENT] for each s against `prompt`, whose motion starts at frame `origin`."""
    return [score_clip(video[s:s + SEGMENT], prompt, fps=FPS, start_frame=s - origin) for s in starts]


def _summary(name, policy_name, policy, length, latent_frames, per_prompt: list[list[dict]]) -> dict:
    """per_prompt[p][k] = scores of segment k of prompt p."""
    n_seg = len(per_prompt[0])
    segments = []
    for k in range(n_seg):
        start = k * SEGMENT
        seg = {"index": k, "start_frame": start, "seconds": (start + SEGMENT / 2) / FPS}
        for key in KEYS:
            seg[key] = mean([p[k][key] for p in per_prompt])
        seg["total_se"] = se([p[k]["total"] for p in per_prompt])
        seg["per_prompt_total"] = [p[k]["total"] for p in per_prompt]
        segments.append(seg)
    first, last = segments[0], segments[-1]
    return {"model": name, "policy": policy_name, "policy_config": policy.to_dict(), "length": length,
            "latent_frames": latent_frames, "pixel_frames": pixel_frames_for(latent_frames), "segments": segments,
            "first_total": first["total"], "first_se": first["total_se"],
            "last_total": last["total"], "last_se": last["total_se"],
            "ratio": last["total"] / first["total"] if first["total"] else float("nan")}


def run(bench: Bench, models: list[str], prompts: int, teacher_steps: int = 0) -> dict:
    rows, checks = [], []
    total = LENGTHS["16x"]
    temporal = bench.vae.config.temporal_factor
    for name in models:
        steps = teacher_steps if name in AR_TEACHERS else NFE
        _, info = bench.model(name)
        for pname, policy in policies_for(info, total).items():
            t0 = time.perf_counter()
            per_prompt = []
            for i in range(prompts):
                prompt = bench.prompts[i]
                z = rollout(bench, name, bench.encode(prompt), total, policy, seed=i, steps=steps)
                if i == 0:
                    short = rollout(bench, name, bench.encode(prompt), LENGTHS["4x"], policy, seed=i, steps=steps)
                    same = torch.equal(short, z[:, :, :LENGTHS["4x"]])
                    checks.append({"model": name, "policy": pname, "prefix_identical": same,
                                   "max_abs_diff": float((short - z[:, :, :LENGTHS["4x"]]).abs().max())})
                video = to_video(bench.vae, z)
                per_prompt.append(score_segments(video, prompt, segment_starts(0, video.shape[0])))
            for length, frames in LENGTHS.items():
                n_seg = pixel_frames_for(frames, temporal) // SEGMENT
                row = _summary(name, pname, policy, length, frames, [p[:n_seg] for p in per_prompt])
                row["steps"] = steps
                row["seconds"] = round(time.perf_counter() - t0, 2)
                rows.append(row)
            print(f"  long {name} {pname}: 16x first {rows[-1]['first_total']:.4f} last {rows[-1]['last_total']:.4f}"
                  f" ({rows[-1]['seconds']} s)", flush=True)
    return {"rows": rows, "prefix_checks": checks, "nfe": NFE, "segment_frames": SEGMENT}


def with_recache(policy: CachePolicy, recache: bool) -> CachePolicy:
    return dataclasses.replace(policy, recache_on_switch=recache)
