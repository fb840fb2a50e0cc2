"""The quality suite of the world chain: judge every model and write benchmarks/quality/RESULTS.md, results.json
and the PNG figures (nfe.png, semigroup.png, long_rollouts.png).

    python benchmarks/quality/evaluate.py --checkpoints benchmarks/quality/checkpoints --prompts 32 --long-prompts 8 --threads 1

Sections (--sections, default all): reference (real world clips of the prompts and the VAE's reconstructions
of them: the scale and the ceiling), nfe (judge scores at NFE 1/2/4/8, teachers at 50 steps with CFG),
semigroup (defect along the inference path at K = 2/4/8), consistency (K = 2 and 4 vs 8, same seed),
long (causal rollouts at 4x/16x the training length under window / sink_window / full caches, judged per
33-frame segment), switch (prompt switch with and without re-cache); the paper's claims are checked from
whatever ran. Sections 0-1 use the first --prompts held-out prompts, sections 2-5 the first --long-prompts.
Inputs: --checkpoints DIR holds <model>.safetensors for each model of generation.MODELS (teacher, teacher-ar,
dmd-4, ..., salt-ar-warm-more-tf, dmd-4-warm-more-tf; missing ones are skipped); --vae / --text-encoder default to the embedded default's.
Conventions (grid, seeds, CFG, decoding): generation.py; one module per section next to this file.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import claims  # noqa: E402
import consistency  # noqa: E402
import defect  # noqa: E402
import long_rollouts  # noqa: E402
import nfe_table  # noqa: E402
import reference  # noqa: E402
import report  # noqa: E402
import switch  # noqa: E402
from generation import (AR_STUDENTS, AR_TEACHERS, DEFAULT_CHECKPOINTS, DEFAULT_PROMPTS,  # noqa: E402
                        DEFAULT_TEXT_ENCODER, DEFAULT_VAE, MODELS, STUDENTS, Bench, read_prompts)

SECTIONS = ("reference", "nfe", "semigroup", "consistency", "long", "switch")


def portable(path: str) -> str:
    """A path relative to the repository root when it lies inside it (so results.json is portable)."""
    full = os.path.abspath(path)
    return os.path.relpath(full, ROOT) if full.startswith(ROOT + os.sep) else full


def command_line(argv) -> str:
    from benchmarks.perf.timing import env_prefix

    return env_prefix() + "python benchmarks/quality/evaluate.py " + " ".join(shlex.quote(a) for a in argv)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoints", default=DEFAULT_CHECKPOINTS, help="folder of <model>.safetensors")
    p.add_argument("--vae", default=DEFAULT_VAE)
    p.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER)
    p.add_argument("--prompts", type=int, default=16, help="first N held-out prompts (section 1)")
    p.add_argument("--long-prompts", type=int, default=4, help="first M held-out prompts (sections 2-5)")
    p.add_argument("--prompt-file", default=DEFAULT_PROMPTS)
    p.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--long-teacher-steps", type=int, default=0,
                   help="also roll out the AR teachers (CFG) in section 4 at this many steps (0: not)")
    p.add_argument("--out", default=HERE, help="folder for RESULTS.md, results.json and the figures")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    a.sections = [s.strip() for s in a.sections.split(",") if s.strip()]
    unknown = sorted(set(a.sections) - set(SECTIONS))
    if unknown:
        p.error(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    if a.prompts < 1 or a.long_prompts < 1:
        p.error("--prompts and --long-prompts must be >= 1")
    return a


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    a = parse(argv)
    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    n_all = max(a.prompts, a.long_prompts)
    bench = Bench(a.checkpoints, a.vae, a.text_encoder, read_prompts(a.prompt_file, n_all))
    present = bench.available(a.models)
    missing = [m for m in a.models if m not in present]
    for m in missing:
        print(f"skip {m}: {os.path.join(a.checkpoints, m + '.safetensors')} missing", file=sys.stderr)
    students = [m for m in present if m in STUDENTS]
    # consistency reuses the NFE table's clips (same seeds): keep their 8-bit videos for the prompts it reads
    if "consistency" in a.sections:
        bench.keep_video = lambda name, steps, i: name in STUDENTS and steps in (2, 4, 8) and i < a.long_prompts
    from benchmarks.machine import describe

    results = {"command": command_line(argv), "machine": describe(), "seconds": {},
               "config": {"checkpoints": portable(a.checkpoints), "vae": portable(a.vae),
                          "text_encoder": portable(a.text_encoder), "prompt_file": portable(a.prompt_file),
                          "prompts": a.prompts, "long_prompts": a.long_prompts, "prompt_list": bench.prompts,
                          "models": present, "missing": missing,
                          "sections": a.sections, "threads": a.threads}}
    long_models = [m for m in AR_STUDENTS if m in present]
    if a.long_teacher_steps:
        long_models = [m for m in AR_TEACHERS if m in present] + long_models
    plan = {"reference": lambda: reference.run(bench, a.prompts),
            "nfe": lambda: nfe_table.run(bench, present, a.prompts),
            "semigroup": lambda: defect.run(bench, students, a.long_prompts),
            "consistency": lambda: consistency.run(bench, students, a.long_prompts),
            "long": lambda: long_rollouts.run(bench, long_models, a.long_prompts, a.long_teacher_steps),
            "switch": lambda: switch.run(bench, present, a.long_prompts)}
    for name in SECTIONS:
        if name in a.sections:
            print(f"== {name}", flush=True)
            t0 = time.perf_counter()
            results[name] = plan[name]()
            results["seconds"][name] = round(time.perf_counter() - t0, 1)
            print(f"== {name}: {results['seconds'][name]} s", flush=True)
    results["claims"] = claims.run(results)
    results["seconds"]["total"] = round(time.perf_counter() - t_start, 1)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "results.json"), "w", encoding="utf-8") as fh:
        json.dump(results, fh, indent=1)
    figures = report.write_plots(results, a.out)
    report.write_markdown(results, os.path.join(a.out, "RESULTS.md"))
    print(f"wrote {os.path.join(a.out, 'RESULTS.md')}, results.json, {', '.join(figures)} "
          f"in {results['seconds']['total']} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
