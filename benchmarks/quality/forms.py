"""Judge the released Salt forms against ours (the runs of benchmarks/quality/forms.sh) with the suite's
conventions and write benchmarks/quality/FORMS.md: mean judge total ± SE per model and NFE on the first N
held-out prompts (seed = prompt index), and each model minus its baseline, paired by prompt.

    python benchmarks/quality/forms.py [--runs runs/forms] [--prompts 32] [--nfe 2 4] [--vae FILE]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from generation import DEFAULT_PROMPTS, DEFAULT_TEXT_ENCODER, Bench, read_prompts  # noqa: E402
from salt_core.checkpoints import load_dit  # noqa: E402
from stats import mean, paired, se  # noqa: E402

# forms.sh trains from the causal-VAE chain's teacher, whose latents are this VAE's
CHAIN = os.path.join(HERE, "checkpoints", "causal-vae-chain")
DEFAULT_VAE = os.path.join(CHAIN, "vae.safetensors")

# (run folder, what it is, its baseline's run folder)
MODELS = (
    ("ar_dmd", "AR: DMD only (no SC, no alignment)", None),
    ("ar_ours_sc", "AR: + our SC (semigroup form, current chunk), per-chunk mixed steps", "ar_dmd"),
    ("ar_rel_sc", "AR: + released SC (endpoint form, every chunk, 8-step draws, λ 0.2), one list per rollout",
     "ar_dmd"),
    ("ar_rel_trd", "AR: released SC + released TRD (λ 0.1, teacher block 1 of 2, from step 600)", "ar_rel_sc"),
    ("ar_ours_fa", "AR: our SC + our feature alignment (λ_FA 1, block 1 + x̂0)", "ar_ours_sc"),
    ("bi_dmd8", "bidirectional: DMD, 8-point grid", None),
    ("bi_ours_sc", "bidirectional: + our SC (semigroup), K ∈ {8, 4, 2}", "bi_dmd8"),
    ("bi_rel_sc", "bidirectional: + released SC (endpoint, 8-step draws, λ 0.2), K 8/4/2 at 0.4/0.4/0.2", "bi_dmd8"),
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="runs/forms")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--nfe", type=int, nargs="+", default=[2, 4])
    p.add_argument("--out", default=os.path.join(HERE, "FORMS.md"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--vae", default=DEFAULT_VAE, help="the world VAE the students' teacher was trained with")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    prompts = read_prompts(DEFAULT_PROMPTS, a.prompts)
    bench = Bench(HERE, a.vae, DEFAULT_TEXT_ENCODER, prompts)
    scores: dict[tuple[str, int], list[float]] = {}
    t0 = time.perf_counter()
    for name, _, _ in MODELS:
        path = os.path.join(a.runs, name, "model.safetensors")
        if not os.path.isfile(path):
            print(f"missing {path}: run benchmarks/quality/forms.sh first", file=sys.stderr)
            return 2
        model, info = load_dit(path)
        model.eval()
        for nfe in a.nfe:
            scores[name, nfe] = [bench.judged(model, info, nfe, i, guidance=1.0)[2]["total"]
                                 for i in range(len(prompts))]
            print(f"{name} NFE {nfe}: {mean(scores[name, nfe]):.4f} ± {se(scores[name, nfe]):.4f}", flush=True)
    cols = " | ".join(f"NFE {n}" for n in a.nfe)
    vae_arg = "" if a.vae == DEFAULT_VAE else f" --vae {os.path.relpath(os.path.abspath(a.vae), ROOT)}"
    lines = [
        "# Released Salt forms vs ours on the synthetic world", "",
        f"Command: `bash benchmarks/quality/forms.sh && python benchmarks/quality/forms.py --prompts {a.prompts} "
        f"--nfe {' '.join(map(str, a.nfe))}{vae_arg}` ({time.perf_counter() - t0:.0f} s of judging on 2 CPU cores).",
        "",
        "Every student trains 3000 steps at batch 4 from the committed bidirectional teacher "
        "(benchmarks/quality/checkpoints/causal-vae-chain/teacher.safetensors) with the embedded default's text "
        "encoder, the same seed and learning rates (training/configs/world/*.yaml with the overrides in forms.sh). "
        "Judged like RESULTS.md: the first held-out prompts, seed = prompt index, uniform K-step grid warped by "
        "shift 5, no CFG, decoded by the world VAE the teacher was trained with, scored by training.judge (total "
        "in 0..1). 'minus baseline' is paired by prompt (mean ± SE of the differences). This world's teacher has "
        "2 blocks: the released TRD's 'block 20 of 40' becomes block 1 of 2.", "",
        f"| model | {cols} | baseline | " + " | ".join(f"minus baseline, NFE {n}" for n in a.nfe) + " |",
        "|---|" + "---|" * (2 * len(a.nfe) + 1),
    ]
    for name, what, base in MODELS:
        cells = [f"{mean(scores[name, n]):.4f} ± {se(scores[name, n]):.4f}" for n in a.nfe]
        diffs = []
        for n in a.nfe:
            if base is None:
                diffs.append("—")
                continue
            m, e, _ = paired(scores[name, n], scores[base, n])
            diffs.append(f"{m:+.4f} ± {e:.4f}" + (" *" if abs(m) > 2 * e else ""))
        lines.append(f"| `{name}`: {what} | " + " | ".join(cells) + f" | {base or '—'} | " + " | ".join(diffs) + " |")
    lines += ["", "`*`: the paired difference exceeds two standard errors.", ""]
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
