"""Section 3: cross-step consistency. Same seed and prompt at K = 2, 4 and 8: PSNR (dB) between the decoded
8-bit videos of K=2 vs 8 and 4 vs 8, and the RMS difference of the latents. Higher PSNR = more consistent."""
from __future__ import annotations

import math
import time

import torch

from generation import Bench
from stats import mean, se

REFERENCE = 8
PAIRS = (2, 4)
MAX_PSNR = 100.0  # identical videos


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """uint8 videos -> PSNR in dB (peak 255)."""
    mse = float((a.float() - b.float()).pow(2).mean())
    return MAX_PSNR if mse == 0 else min(MAX_PSNR, 10 * math.log10(255.0 ** 2 / mse))


def latent_rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).pow(2).mean().sqrt())


def run(bench: Bench, models: list[str], prompts: int) -> dict:
    rows = []
    for name in models:
        t0 = time.perf_counter()
        ref = [bench.clip(name, REFERENCE, i) for i in range(prompts)]
        for K in PAIRS:
            other = [bench.clip(name, K, i) for i in range(prompts)]
            p = [psnr(o.video, r.video) for o, r in zip(other, ref)]
            z = [latent_rms(o.latents, r.latents) for o, r in zip(other, ref)]
            rows.append({"model": name, "K": K, "reference": REFERENCE, "prompts": prompts,
                         "psnr": mean(p), "psnr_se": se(p), "latent_rms": mean(z), "latent_rms_se": se(z),
                         "per_prompt_psnr": p, "seconds": round(time.perf_counter() - t0, 2)})
            print(f"  consistency {name} {K} vs {REFERENCE}: {rows[-1]['psnr']:.2f} dB, latent rms "
                  f"{rows[-1]['latent_rms']:.4f}", flush=True)
    return {"rows": rows}
