"""Judge extra student checkpoints (ablations, intermediate exports) with the suite's conventions: the first N
held-out prompts, seed = prompt index, uniform K-step grid warped by shift 5, no CFG unless --guidance is given
(the suite gives teachers CFG 4 with the empty negative prompt); mean total ± SE per (checkpoint, NFE, CFG).

    python benchmarks/quality/judge_models.py runs/world/abl_e/model.safetensors --nfe 2 4 --prompts 32
    python benchmarks/quality/judge_models.py benchmarks/quality/checkpoints/teacher.safetensors \\
        --nfe 50 --guidance 1 2 3 4 6 8 --prompts 32

Prints one line per (checkpoint, NFE, CFG); writes nothing. The VAE and text encoder default to the embedded default's.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

from generation import DEFAULT_PROMPTS, DEFAULT_TEXT_ENCODER, DEFAULT_VAE, Bench, read_prompts  # noqa: E402
from salt_core.checkpoints import load_dit  # noqa: E402
from stats import mean, se  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+", help="student .safetensors files")
    p.add_argument("--nfe", type=int, nargs="+", default=[2, 4])
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--prompt-file", default=DEFAULT_PROMPTS)
    p.add_argument("--vae", default=DEFAULT_VAE)
    p.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER)
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0],
                   help="CFG scales to try (1 = no CFG; otherwise the negative prompt is empty)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    prompts = read_prompts(a.prompt_file, a.prompts)
    bench = Bench(HERE, a.vae, a.text_encoder, prompts)
    for path in a.checkpoints:
        model, info = load_dit(path)
        model.eval()
        for nfe in a.nfe:
            for cfg in a.guidance:
                totals = [bench.judged(model, info, nfe, i, guidance=cfg)[2]["total"] for i in range(len(prompts))]
                label = f"NFE {nfe}" + (f" CFG {cfg:g}" if cfg != 1.0 else "")
                print(f"{path} {label}: total {mean(totals):.4f} ± {se(totals):.4f} ({len(totals)} prompts)",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
