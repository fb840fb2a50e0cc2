"""Judge every model of the world chain on the held-out prompt set at NFE 1/2/4/8 (teachers at 50 steps)
and write benchmarks/quality/RESULTS.md + results.json.

    python benchmarks/quality/evaluate.py --runs runs/world --prompts 16 --threads 1

Every model samples on the same uniform(K) grid warped by shift 5 (what the students' K-step grids are),
noise seeded by the prompt index, latents [16, 9, 8, 8] (33 frames of 64x64), decoded by the world VAE and
scored by training.judge against the prompt. Causal models roll out in chunks of 3 latent frames under the
cache policy they were trained with (header `salt_trainer_cache_policy`). Teachers use CFG (scale 4,
the DMD teacher's x_c + 3·(x_c − x_neg)) with the empty negative prompt.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from salt_core.checkpoints import load_dit, load_vae  # noqa: E402
from salt_core.kv_cache import CachePolicy  # noqa: E402
from salt_core.sampling import sample_ar, sample_clip  # noqa: E402
from salt_core.schedules import StepGrid  # noqa: E402
from salt_core.text import load_text_encoder  # noqa: E402
from training.judge import DIMENSIONS, mean_scores, score_clip  # noqa: E402

MODELS = {  # name -> run folder under --runs
    "teacher": "teacher", "teacher-ar": "teacher_ar", "dmd-4": "dmd_4", "dmd-8": "dmd_8",
    "sc-dmd-8": "sc_dmd_8", "ar-dmd": "ar_dmd", "salt-ar": "salt_ar",
}
TEACHERS = ("teacher", "teacher-ar")
NFES = (1, 2, 4, 8)
TEACHER_STEPS = 50
SHIFT = 5.0
LATENT = (16, 9, 8, 8)
CFG_SCALE = 4.0
HERE = os.path.dirname(os.path.abspath(__file__))


def read_prompts(path: str, count: int) -> list[str]:
    lines = [ln.strip() for ln in open(path, encoding="utf-8") if ln.strip() and not ln.startswith("#")]
    return lines[:count]


@torch.no_grad()
def generate(model, info, ctx, neg, steps: int, seed: int, guidance: float) -> torch.Tensor:
    s = info.sampling
    grid = StepGrid.uniform(steps, SHIFT)
    if s.causal:
        extra = json.loads(info.metadata.get("salt_trainer_cache_policy", "{}") or "{}")
        policy = CachePolicy(**extra) if extra else CachePolicy("full", max_frames=LATENT[1])
        return sample_ar(model, ctx, latent_frames=LATENT[1], latent_hw=LATENT[2:], chunk_frames=s.chunk_frames,
                         grid=grid, policy=policy, transition=s.transition, seed=seed,
                         negative_context=neg if guidance != 1.0 else None, guidance=guidance)
    return sample_clip(model, ctx, latent_shape=(1, *LATENT), grid=grid, transition=s.transition, seed=seed,
                       negative_context=neg if guidance != 1.0 else None, guidance=guidance)


@torch.no_grad()
def to_video(vae, z: torch.Tensor) -> torch.Tensor:
    """Normalised latents [1, C, T, h, w] -> [T', H, W, 3] in 0..1."""
    x = vae.decode(vae.denormalize(z.float()))[0]
    return ((x + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="runs/world")
    p.add_argument("--prompts", type=int, default=16, help="first N held-out prompts")
    p.add_argument("--prompt-file", default=os.path.join(HERE, "prompts-heldout.txt"))
    p.add_argument("--vae", default=None, help="default: <runs>/vae/vae.safetensors")
    p.add_argument("--text-encoder", default=None, help="default: <runs>/text_encoder/text_encoder.safetensors")
    p.add_argument("--models", nargs="*", default=list(MODELS))
    p.add_argument("--out", default=HERE)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    vae, _ = load_vae(a.vae or os.path.join(a.runs, "vae", "vae.safetensors"))
    enc = load_text_encoder(a.text_encoder or os.path.join(a.runs, "text_encoder", "text_encoder.safetensors"))
    prompts = read_prompts(a.prompt_file, a.prompts)
    neg = enc.encode([""])[0]
    results = []
    for name in a.models:
        path = os.path.join(a.runs, MODELS[name], "model.safetensors")
        if not os.path.isfile(path):
            print(f"skip {name}: {path} missing", file=sys.stderr)
            continue
        model, info = load_dit(path)
        model.eval()
        nfes = (TEACHER_STEPS,) if name in TEACHERS else NFES
        for nfe in nfes:
            t0 = time.perf_counter()
            scores = []
            for i, prompt in enumerate(prompts):
                ctx = enc.encode([prompt])[0]
                z = generate(model, info, ctx, neg, nfe, seed=i, guidance=CFG_SCALE if name in TEACHERS else 1.0)
                scores.append(score_clip(to_video(vae, z), prompt))
            row = {"model": name, "nfe": nfe, "prompts": len(prompts), **mean_scores(scores),
                   "seconds": round(time.perf_counter() - t0, 1)}
            results.append(row)
            print(json.dumps(row), flush=True)
    with open(os.path.join(a.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    write_markdown(results, os.path.join(a.out, "RESULTS.md"), a)
    return 0


def write_markdown(rows: list[dict], path: str, a) -> None:
    dims = [d for d in DIMENSIONS if any(d in r for r in rows)]
    lines = ["# Quality of the world chain (analytic judge)", "",
             f"Produced by `python benchmarks/quality/evaluate.py --runs {a.runs} --prompts {a.prompts}` on the first "
             f"{a.prompts} prompts of `benchmarks/quality/prompts-heldout.txt` (held-out combinations), seed = prompt "
             "index, 33 frames of 64x64. Higher is better. See benchmarks/quality/README.md for how long each "
             "model trained (minutes on a CPU: these are undertrained models).", "",
             "| model | NFE | " + " | ".join(dims) + " | total |", "|---|---|" + "---|" * (len(dims) + 1)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['nfe']} | " + " | ".join(f"{r.get(d, float('nan')):.3f}" for d in dims)
                     + f" | {r.get('total', float('nan')):.3f} |")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
