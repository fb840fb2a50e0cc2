"""Judge extra student checkpoints (ablations, intermediate exports) with the suite's conventions: the first N
held-out prompts, seed = prompt index, uniform K-step grid warped by shift 5, no CFG unless --guidance is given
(the suite gives teachers CFG 4 with the empty negative prompt); mean total ± SE per (checkpoint, NFE, CFG).

    python benchmarks/quality/judge_models.py runs/world/abl_e/model.safetensors --nfe 2 4 --prompts 32
    python benchmarks/quality/judge_models.py benchmarks/quality/checkpoints/teacher.safetensors \\
        --nfe 50 --guidance 1 2 3 4 6 8 --prompts 32
    python benchmarks/quality/judge_models.py runs/world/teacher_ar/model.safetensors --nfe 50 --guidance 4 \\
        --against benchmarks/quality/warm-ar-teacher/results.json teacher-ar-warm 50

Prints one line per (checkpoint, NFE, CFG); writes nothing. The VAE and text encoder default to the embedded default's.
With --against, each line also gives the paired difference (mean ± SE over the same prompts and seeds) against a
model's clips in an evaluate.py results file, per judge dimension; the file must have judged the same prompts with
the same VAE and text encoder.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

from generation import DEFAULT_PROMPTS, DEFAULT_TEXT_ENCODER, DEFAULT_VAE, Bench, read_prompts  # noqa: E402
from salt_core.checkpoints import load_dit  # noqa: E402
from stats import mean, paired, se  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
DIMENSIONS = ("colour", "shape", "motion", "identity", "smoothness", "flicker", "sharpness", "total")


def _same_file(recorded: str, given: str) -> bool:
    """A path as a results file records it (relative to the repository root) against one given here."""
    return os.path.realpath(os.path.join(ROOT, recorded)) == os.path.realpath(given)


def reference_clips(results_path: str, model: str, nfe: int, prompts: list[str], vae: str,
                    text_encoder: str) -> list[dict]:
    """The judged clips of (model, nfe) for prompts 0..N-1 from an evaluate.py results file, after checking that
    the file judged these prompts with this VAE and text encoder; a clear error names what differs."""
    try:
        with open(results_path) as f:
            results = json.load(f)
        config, clips = results["config"], results["nfe"]["clips"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SystemExit(f"--against {results_path}: not an evaluate.py results file with an nfe section ({e})")
    listed = config.get("prompt_list", [])
    if listed[:len(prompts)] != prompts:
        raise SystemExit(f"--against {results_path}: config.prompt_list does not start with the {len(prompts)} "
                         f"prompts judged here")
    for field, ours in (("vae", vae), ("text_encoder", text_encoder)):
        if not _same_file(str(config.get(field, "")), ours):
            raise SystemExit(f"--against {results_path}: config.{field} is {config.get(field)!r}, here {ours!r}")
    by_prompt = {c["prompt"]: c for c in clips if c.get("model") == model and c.get("nfe") == nfe}
    missing = [i for i in range(len(prompts)) if i not in by_prompt]
    if missing:
        have = sorted({(c.get("model"), c.get("nfe")) for c in clips})
        raise SystemExit(f"--against {results_path}: no clip of model {model!r} at NFE {nfe} for prompt(s) "
                         f"{missing[:5]}; the file holds {have}")
    return [by_prompt[i] for i in range(len(prompts))]


def paired_line(scores: list[dict], reference: list[dict]) -> str:
    parts = []
    for dim in DIMENSIONS:
        d, s, _ = paired([c[dim] for c in scores], [c[dim] for c in reference])
        parts.append(f"{dim} {d:+.3f} ± {s:.3f}")
    return "  paired vs reference: " + ", ".join(parts)


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
    p.add_argument("--against", nargs=3, metavar=("RESULTS_JSON", "MODEL", "NFE"),
                   help="also print paired differences against MODEL's clips at NFE in an evaluate.py results file")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    prompts = read_prompts(a.prompt_file, a.prompts)
    reference = None
    if a.against:
        results_path, ref_model, ref_nfe = a.against
        try:
            ref_nfe = int(ref_nfe)
        except ValueError:
            raise SystemExit(f"--against: NFE must be a whole number, got {ref_nfe!r}")
        reference = reference_clips(results_path, ref_model, ref_nfe, prompts, a.vae, a.text_encoder)
    bench = Bench(HERE, a.vae, a.text_encoder, prompts)
    for path in a.checkpoints:
        model, info = load_dit(path)
        model.eval()
        for nfe in a.nfe:
            for cfg in a.guidance:
                scores = [bench.judged(model, info, nfe, i, guidance=cfg)[2] for i in range(len(prompts))]
                totals = [c["total"] for c in scores]
                label = f"NFE {nfe}" + (f" CFG {cfg:g}" if cfg != 1.0 else "")
                print(f"{path} {label}: total {mean(totals):.4f} ± {se(totals):.4f} ({len(totals)} prompts)",
                      flush=True)
                if reference is not None:
                    print(paired_line(scores, reference), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
