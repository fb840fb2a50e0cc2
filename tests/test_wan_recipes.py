"""Every Wan recipe (training/configs/wan/*.yaml) runs end to end: 2 steps under `torchrun --nproc_per_node 2`
(gloo, CPU, FSDP as the recipes set it), then resumes for a third.

Stand-ins, because the real files are tens of GB: every network has Wan 1.3B's real width (dim 1536, FFN 8960,
12 heads; the 14B teacher of the AR recipes too, whose own width 5120 would make FSDP gather 1.5 GB over gloo for
every teacher forward) and umT5's text width 4096, at depth 1 with text_len 64 (Wan: 512), saved in our format; latents [6, 4, 4] (2 chunks of 3 frames; Wan: [21, 60, 104]); the prompt cache holds random
4096-wide embeddings of the prompts and the recipe's negative prompt (umT5 would make the same layout); TRD
compares teacher block 0 (the recipes: 20 of 40); dmd.student_every 1, a fixed exit step, one step list and TRD
from step 0 so that SC or TRD really run in two steps; fp32 on CPU. Everything else is the recipe as committed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from salt_core.checkpoints import save_dit
from salt_core.config import DiTConfig, SamplingDefaults
from salt_core.dit import WanDiT
from training.config_load import load_config
from training.data.prompt_cache import write_prompt_cache

from _training_helpers import prompt_file, sets

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "training", "configs", "wan")
WIDTHS = {"teacher_14b": (1536, 8960, 12), "wan_1.3b": (1536, 8960, 12)}
# per recipe: the overrides that make its own released terms run within two steps
EXERCISE = {
    "salt_self_forcing": {"grid__step_counts": "[8]", "grid__step_probs": "[1.0]", "dmd__exit_step": 1},  # SC
    "salt_causal_forcing": {"grid__step_counts": "[2]", "grid__step_probs": "[1.0]", "dmd__exit_step": 1,
                            "trd__start_step": 0},  # TRD (the recipe starts it at step 700)
    "salt_longlive": {"grid__step_counts": "[2]", "grid__step_probs": "[1.0]", "dmd__exit_step": 1,
                      "trd__start_step": 0},  # TRD (from step 1200 in the recipe), sink + window cache
    "sc_dmd_wan_1.3b": {"grid__step_counts": "[8]", "grid__step_probs": "[1.0]", "dmd__exit_step": 1},  # SC
}


def stand_in(path: str, kind: str, seed: int) -> str:
    dim, ffn, heads = WIDTHS[kind]
    torch.manual_seed(seed)
    model = WanDiT(DiTConfig(dim=dim, ffn_dim=ffn, num_heads=heads, num_layers=1, text_len=64))
    return save_dit(path, model, SamplingDefaults(causal=False))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("wan_recipes"))
    prompts = prompt_file(os.path.join(root, "prompts.txt"))
    lines = [ln.strip() for ln in open(prompts) if ln.strip()]
    negative = load_config(os.path.join(RECIPES, "salt_self_forcing.yaml"), []).text.negative_prompt
    g = torch.Generator().manual_seed(0)
    embeddings = [torch.randn(int(torch.randint(3, 9, (1,), generator=g)), 4096, generator=g) for _ in lines]
    cache = write_prompt_cache(os.path.join(root, "cache.safetensors"), lines + [negative],
                               embeddings + [torch.randn(5, 4096, generator=g)], encoder="umt5-xxl", text_len=512,
                               source="stand-in")
    return {"root": root, "prompts": prompts, "cache": cache,
            "teacher_14b": stand_in(os.path.join(root, "t14.safetensors"), "teacher_14b", 1),
            "wan_1.3b": stand_in(os.path.join(root, "w13.safetensors"), "wan_1.3b", 2)}


def torchrun(recipe: str, files: dict, out: str, steps: int) -> subprocess.CompletedProcess:
    cfg = load_config(os.path.join(RECIPES, f"{recipe}.yaml"), [])
    command = "salt-ar" if cfg.student.causal else "sc-dmd"
    teacher = files["teacher_14b"] if cfg.teacher.preset == "wan2.1-t2v-14b" else files["wan_1.3b"]
    over = dict(teacher__preset="", teacher__init=teacher, data__path=files["prompts"], text__path=files["cache"],
                data__latent_shape="[6,4,4]", data__batch_size=2, run__device="cpu", run__precision="fp32",
                run__output_dir=out, run__steps=steps, run__save_every=2, run__log_every=1, run__progress="false",
                run__export_on_finish="false", dmd__student_every=1, distributed__backend="gloo", trd__block=0,
                **EXERCISE[recipe])
    if cfg.student.init != "teacher":
        over.update(student__preset="", student__init=files["wan_1.3b"])
    if cfg.critic.init != "teacher":
        over.update(critic__preset="", critic__init=files["wan_1.3b"])
    exe = shutil.which("torchrun")
    launcher = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    cmd = [*launcher, "--standalone", "--nproc_per_node", "2", "-m", "training", command,
           "--config", os.path.join(RECIPES, f"{recipe}.yaml"), *sets(**over)]
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path})


def metrics(out: str) -> list[dict]:
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.mark.parametrize("recipe", sorted(EXERCISE))
def test_the_recipe_runs_two_steps_on_two_ranks_and_resumes(recipe, files):
    out = os.path.join(files["root"], recipe)
    first = torchrun(recipe, files, out, steps=2)
    assert first.returncode == 0, first.stderr[-4000:]
    rows = metrics(out)
    assert [r["step"] for r in rows if "step" in r][-1] == 2
    logged = {k for r in rows for k in r}
    term = "trd_loss" if "causal" in recipe or "longlive" in recipe else "sc_loss"
    assert term in " ".join(logged), sorted(logged)  # the recipe's released term really ran
    again = torchrun(recipe, files, out, steps=3)
    assert again.returncode == 0, again.stderr[-4000:]
    steps = [r["step"] for r in metrics(out) if "step" in r]
    assert steps[-1] == 3 and steps.count(3) == 1 and steps.count(1) == 1  # continued, not restarted
    assert all(torch.isfinite(torch.tensor(float(v))) for r in metrics(out) for k, v in r.items()
               if k.endswith("_loss") and isinstance(v, (int, float)))
