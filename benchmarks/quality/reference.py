"""Section 0: the scale the models are judged on. For each of the first N held-out prompts, the world renders a
real clip of that prompt (objects placed by seed = prompt index, 33 frames of 64x64) and the world VAE
reconstructs it (encode to the posterior mean, then the same decode path the models' latents take). The real
clips' score is what a perfect generator earns; the reconstructions' score is the ceiling the VAE allows any
DiT on its latents."""
from __future__ import annotations

import time

import torch

from generation import CLIP_FRAMES, CLIP_SIDE, FPS, Bench, to_video
from stats import mean, se
from training.judge import DIMENSIONS, score_clip
from training.world.parse import parse_prompt
from training.world.render import render
from training.world.sampling import complete_scene

KEYS = (*DIMENSIONS, "total")


def real_clip(prompt: str, seed: int) -> torch.Tensor:
    """The world's own rendering of `prompt`: [T, H, W, 3] in 0..1."""
    return render(complete_scene(parse_prompt(prompt).scene, seed=seed), CLIP_FRAMES, CLIP_SIDE, CLIP_SIDE, FPS)


@torch.no_grad()
def reconstruct(bench: Bench, video: torch.Tensor) -> torch.Tensor:
    """[T, H, W, 3] in 0..1 -> the VAE's reconstruction, same layout."""
    x = (video.permute(3, 0, 1, 2).unsqueeze(0) * 2 - 1).to(bench.vae.dtype)   # [1, 3, T, H, W] in -1..1
    return to_video(bench.vae, bench.vae.normalize(bench.vae.encode(x)))


def run(bench: Bench, prompts: int) -> dict:
    rows = []
    scored = {"real clips": [], "VAE reconstructions": []}
    t0 = time.perf_counter()
    for i in range(prompts):
        real = real_clip(bench.prompts[i], seed=i)
        scored["real clips"].append(score_clip(real, bench.prompts[i], fps=FPS))
        scored["VAE reconstructions"].append(score_clip(reconstruct(bench, real), bench.prompts[i], fps=FPS))
    for name, per_clip in scored.items():
        rows.append({"reference": name, "prompts": prompts, **{k: mean([c[k] for c in per_clip]) for k in KEYS},
                     "total_se": se([c["total"] for c in per_clip]), "per_clip_total": [c["total"] for c in per_clip]})
        print(f"  reference {name}: total {rows[-1]['total']:.4f} ± {rows[-1]['total_se']:.4f}", flush=True)
    return {"rows": rows, "seconds": round(time.perf_counter() - t0, 2)}
