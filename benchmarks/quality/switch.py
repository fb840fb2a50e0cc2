"""Section 5: prompt switch. The AR students roll out 4x the training length (36 latent frames, NFE 4, trained
cache policy) on prompt pairs (0, 1), (2, 3), ...; the prompt switches at half (latent frame 18, a chunk start),
once with re-cache (the retained frames' K/V recomputed under the new prompt, LongLive) and once without.
Segments of 33 frames before the switch (from frame 0) are judged against the old prompt; segments after it
(from the switch's first pixel frame) against the new prompt, whose motion starts at the switch. Only whole
segments are judged: with the switch at pixel frame 69, frames 66-68 (before) and 135-140 (after) are not."""
from __future__ import annotations

import time

from generation import AR_STUDENTS, Bench, to_video, trained_policy
from long_rollouts import (KEYS, LENGTHS, NFE, rollout, score_segments, segment_starts,
                           with_recache)
from salt_core.sampling import PromptSegment
from salt_core.validation import pixel_frames_for
from stats import mean, se

REPORTED = ("colour", "shape", "motion", "total")


def switch_frame(latent_frames: int, chunk: int) -> int:
    """Half of the rollout, rounded down to a chunk start."""
    return (latent_frames // 2) // chunk * chunk


def pairs(prompts: int) -> list[tuple[int, int]]:
    return [(a, a + 1) for a in range(0, prompts - 1, 2)]


def run(bench: Bench, models: list[str], prompts: int) -> dict:
    rows = []
    frames = LENGTHS["4x"]
    temporal = bench.vae.config.temporal_factor
    todo = pairs(prompts)
    if not todo:
        return {"rows": [], "note": "needs at least 2 prompts"}
    for name in [m for m in models if m in AR_STUDENTS]:
        _, info = bench.model(name)
        chunk = info.sampling.chunk_frames
        at = switch_frame(frames, chunk)
        at_pixel = pixel_frames_for(at, temporal)
        for recache in (True, False):
            t0 = time.perf_counter()
            policy = with_recache(trained_policy(info), recache)
            before, after = [], []
            for a, b in todo:
                old, new = bench.prompts[a], bench.prompts[b]
                schedule = [PromptSegment(0, bench.encode(old)), PromptSegment(at, bench.encode(new))]
                video = to_video(bench.vae, rollout(bench, name, schedule, frames, policy, seed=a))
                before.append(score_segments(video, old, segment_starts(0, at_pixel)))
                after.append(score_segments(video, new, segment_starts(at_pixel, video.shape[0]), at_pixel))
            row = {"model": name, "recache": recache, "pairs": todo, "switch_latent_frame": at,
                   "switch_pixel_frame": at_pixel, "latent_frames": frames, "nfe": NFE,
                   "policy_config": policy.to_dict(), "seconds": round(time.perf_counter() - t0, 2)}
            for side, data in (("before", before), ("after", after)):
                per_pair = {k: [mean([s[k] for s in p]) for p in data] for k in KEYS}
                row[side] = {k: mean(per_pair[k]) for k in KEYS}
                row[side]["total_se"] = se(per_pair["total"])
                row[side]["segments"] = len(data[0])
                row[side]["per_pair_total"] = per_pair["total"]
            rows.append(row)
            print(f"  switch {name} recache={recache}: after total {row['after']['total']:.4f} "
                  f"(before {row['before']['total']:.4f}) ({row['seconds']} s)", flush=True)
    return {"rows": rows}
