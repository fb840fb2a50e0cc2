"""Section 2: the semigroup defect (training.semigroup) along each student's own inference path at K = 2, 4, 8.

Probe per prompt i: initial noise = the NFE table's (seeded by i), renoise draws from seed RENOISE_SEED + i,
the uniform(K) grid warped by shift 5, midpoints on the un-shifted scale, displacement-normalised. Causal
students are walked chunk by chunk under the cache policy they were trained with.
"""
from __future__ import annotations

import time

from generation import LATENT, SHIFT, Bench, trained_policy
from salt_core.sampling import CausalSetup, Denoiser, Walk, draw, seeded_generator
from salt_core.schedules import StepGrid
from stats import mean, se
from training.semigroup import semigroup_defect

KS = (2, 4, 8)
RENOISE_SEED = 10_000


def defect_of(bench: Bench, name: str, K: int, i: int):
    model, info = bench.model(name)
    s = info.sampling
    noise = draw((1, *LATENT), seeded_generator(i), model.device)
    ctx = bench.encode(bench.prompts[i])
    causal = CausalSetup(model, ctx, trained_policy(info), s.chunk_frames) if s.causal else None
    return semigroup_defect(Denoiser.for_clip(model, ctx), noise, Walk(StepGrid.uniform(K, SHIFT), s.transition),
                            seed=RENOISE_SEED + i, causal=causal)


def run(bench: Bench, models: list[str], prompts: int, ks=KS) -> dict:
    rows = []
    for name in models:
        for K in ks:
            t0 = time.perf_counter()
            d = [defect_of(bench, name, K, i) for i in range(prompts)]
            per_prompt = [x.mean for x in d]
            row = {"model": name, "K": K, "prompts": prompts, "mean": mean(per_prompt), "se": se(per_prompt),
                   "per_step": [mean([x.per_step[j] for x in d]) for j in range(K)],
                   "per_prompt": per_prompt, "seconds": round(time.perf_counter() - t0, 2)}
            rows.append(row)
            print(f"  semigroup {name} K={K}: {row['mean']:.5f} ± {row['se']:.5f} ({row['seconds']} s)", flush=True)
    return {"rows": rows}
