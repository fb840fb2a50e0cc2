"""Section 1: judge scores of every model at NFE 1/2/4/8 (teachers at 50 steps), per clip and per (model, NFE)."""
from __future__ import annotations

import time

from generation import Bench, steps_for
from stats import mean, se
from training.judge import DIMENSIONS

KEYS = (*DIMENSIONS, "total")


def run(bench: Bench, models: list[str], prompts: int) -> dict:
    rows, clips = [], []
    for name in models:
        for nfe in steps_for(name):
            t0 = time.perf_counter()
            per_clip = []
            for i in range(prompts):
                scores = bench.clip(name, nfe, i).scores
                per_clip.append({"model": name, "nfe": nfe, "prompt": i, **{k: scores[k] for k in KEYS}})
            row = {"model": name, "nfe": nfe, "prompts": prompts,
                   **{k: mean([c[k] for c in per_clip]) for k in KEYS},
                   "total_se": se([c["total"] for c in per_clip]),
                   "seconds": round(time.perf_counter() - t0, 2)}
            rows.append(row)
            clips += per_clip
            print(f"  nfe {name} {nfe}: total {row['total']:.4f} ± {row['total_se']:.4f} ({row['seconds']} s)",
                  flush=True)
    return {"rows": rows, "clips": clips}


def per_prompt_totals(section: dict, model: str, nfe: int) -> list[float]:
    """Totals by prompt index (for paired comparisons); [] if that (model, nfe) was not run."""
    got = sorted((c["prompt"], c["total"]) for c in section.get("clips", []) if c["model"] == model and c["nfe"] == nfe)
    return [t for _, t in got]
