"""Does a model move the object the way the prompt says? One object, one colour, one background, the four
straight directions, N noise seeds each: the displacement of the object's centroid from the first group of
frames to the last (the judge's own segmentation and unwrapped track, training.judge), its cosine to the
prompted direction, and the mean displacement over all directions (a drift that ignores the prompt shows
there and cancels in the cosine). The world's own clips of the same prompts come first, as a check of the measure.

    python benchmarks/quality/direction.py --models teacher salt-ar --seeds 8 [--out DIRECTION.md]

Same conventions as evaluate.py (generation.py: uniform K-step grid warped by shift 5, teachers at 50 steps
with CFG 4, students at NFE 4 without CFG, causal models under their trained cache). Prints one markdown table;
--out also writes it.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

from generation import (DEFAULT_CHECKPOINTS, DEFAULT_TEXT_ENCODER, DEFAULT_VAE, MODELS, TEACHER_STEPS, TEACHERS,  # noqa: E402
                        Bench, generate, guidance_for, to_video)
from reference import real_clip  # noqa: E402
from salt_core.atomic import atomic_write_text  # noqa: E402
from stats import mean, se  # noqa: E402
from training.judge import JudgeConfig  # noqa: E402
from training.judge.measure import track_one  # noqa: E402
from training.world.attributes import SPEED  # noqa: E402

DIRECTIONS = {"to the right": (1.0, 0.0), "to the left": (-1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
COLOUR, BACKGROUND = "red", "black"
ENDS = 4  # frames averaged at each end of the clip


def prompt_for(direction: str) -> str:
    return f"a {COLOUR} circle moves {direction} on a {BACKGROUND} background"


def displacement(video: torch.Tensor) -> tuple[float, float] | None:
    """[T, H, W, 3] in 0..1 -> centroid displacement (dx, dy) in units of S, last ENDS frames minus the first
    ENDS after frame 0 (frame 0 is a latent frame of its own); None when the object is missing at either end."""
    track = track_one(video, COLOUR, JudgeConfig())
    head, tail = slice(1, 1 + ENDS), slice(-ENDS, None)
    if not (track.present[head].all() and track.present[tail].all()):
        return None
    return (float(track.x[tail].mean() - track.x[head].mean()), float(track.y[tail].mean() - track.y[head].mean()))


REAL = "real clips"  # the world's own rendering of each prompt (objects placed by the seed): checks the measure


def clip_of(bench: Bench, name: str, words: str, seed: int) -> torch.Tensor:
    if name == REAL:
        return real_clip(prompt_for(words), seed=seed)
    model, info = bench.model(name)
    steps = TEACHER_STEPS if name in TEACHERS else 4
    z = generate(model, info, bench.encode(prompt_for(words)), bench.neg, steps, seed=seed, guidance=guidance_for(name))
    return to_video(bench.vae, z)


def run(bench: Bench, name: str, seeds: int) -> dict:
    steps = "–" if name == REAL else TEACHER_STEPS if name in TEACHERS else 4
    cosines, moves, per_direction, missing = [], [], {}, 0
    for words, (ux, uy) in DIRECTIONS.items():
        cos_here = []
        for seed in range(seeds):
            d = displacement(clip_of(bench, name, words, seed))
            if d is None:
                missing += 1
                continue
            norm = math.hypot(*d)
            cos_here.append((d[0] * ux + d[1] * uy) / norm if norm > 0 else 0.0)
            moves.append(d)
        per_direction[words] = mean(cos_here)
        cosines += cos_here
    return {"model": name, "steps": steps, "cos": mean(cosines), "cos_se": se(cosines), "per_direction": per_direction,
            "drift": (mean([m[0] for m in moves]), mean([m[1] for m in moves])),
            "length": mean([math.hypot(*m) for m in moves]), "missing": missing}


def table(rows: list[dict], seeds: int) -> str:
    span = (33 - 1 - ENDS) / 16.0  # seconds between the two ends' mean frames
    lines = [f"Prompts `{prompt_for('<direction>')}`, {seeds} seeds per direction; displacement in units of S "
             f"(the frame side); the world moves {SPEED * span:.2f} S in that time. cos: mean cosine of the "
             "displacement to the prompted direction (1 = always the asked way, 0 = unrelated); drift: mean "
             "displacement over all four directions (0 when the motion follows the prompt).", "",
             "| model | steps | cos ± se | right | left | up | down | mean length | drift (x, y) | object lost |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["per_direction"]
        lines.append(f"| {r['model']} | {r['steps']} | {r['cos']:+.2f} ± {r['cos_se']:.2f} | "
                     + " | ".join(f"{d[k]:+.2f}" for k in DIRECTIONS)
                     + f" | {r['length']:.2f} | ({r['drift'][0]:+.2f}, {r['drift'][1]:+.2f}) | {r['missing']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", default=DEFAULT_CHECKPOINTS)
    p.add_argument("--models", nargs="+", default=["teacher", "salt-ar"], choices=MODELS)
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--vae", default=DEFAULT_VAE)
    p.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="", help="also write the table here")
    a = p.parse_args(argv)
    if a.seeds < 2:
        p.error("--seeds must be >= 2 (a standard error needs two)")
    if a.out and not os.path.isdir(os.path.dirname(os.path.abspath(a.out))):
        p.error(f"--out {a.out}: its folder does not exist (checked before the minutes of sampling)")
    torch.set_num_threads(a.threads)
    bench = Bench(a.checkpoints, a.vae, a.text_encoder, [])
    missing = [m for m in a.models if m not in bench.available(a.models)]
    if missing:
        p.error(f"no checkpoint for {missing} in {a.checkpoints}")
    t0 = time.perf_counter()
    rows = [run(bench, name, a.seeds) for name in [REAL, *a.models]]
    text = table(rows, a.seeds) + f"\nTook {time.perf_counter() - t0:.0f} s at {a.threads} thread(s).\n"
    print(text)
    if a.out:
        atomic_write_text(a.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
