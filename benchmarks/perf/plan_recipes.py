"""The memory plan of every Wan recipe (training/configs/wan/*.yaml) at 8 x 80 GB and 1 x 80 GB (accumulation to
the same global batch), written into the results section of benchmarks/results/plan.md.

    python benchmarks/perf/plan_recipes.py [--out benchmarks/results/plan.md]

Nothing is loaded: the recipes' files are absent here, so their presets give the geometry (see plan.md)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from training.config_load import load_config  # noqa: E402
from training.plan import GB, Options, parse_memory, plan_memory  # noqa: E402
from training.plan_report import advice  # noqa: E402

RECIPES = ("salt_self_forcing", "salt_causal_forcing", "salt_longlive", "sc_dmd_wan_1.3b")
MARKER = "## Results"


def setups(cfg):
    batch = cfg.data.batch_size
    yield "8 x 80 GB", Options(gpus=8, gpu_memory=parse_memory("80GB")), ""
    yield "8 x 80 GB, TRD off", Options(gpus=8, gpu_memory=parse_memory("80GB")), "trd.weight=0"
    yield f"1 x 80 GB, accumulation {batch}", Options(gpus=1, gpu_memory=parse_memory("80GB"), accumulation=batch), ""
    yield (f"2 x 80 GB, teacher offloaded, accumulation {batch // 2}",
           Options(gpus=2, gpu_memory=parse_memory("80GB"), accumulation=batch // 2, offload_teacher=True), "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "plan.md"))
    a = ap.parse_args()
    rows = ["| recipe | setup | peak per GPU | fits | largest items | what would make it fit |", "|---|---|---|---|---|---|"]
    for name in RECIPES:
        path = str(ROOT / "training" / "configs" / "wan" / f"{name}.yaml")
        base = load_config(path, [])
        command = "salt-ar" if base.student.causal else "sc-dmd"
        for label, opts, extra in setups(base):
            if extra and (base.trd.weight == 0 or not base.student.causal):
                continue
            cfg = load_config(path, [extra] if extra else [])
            plan = plan_memory(cfg, command, opts)
            static = sum(plan.static.values())
            worst = max(plan.phases, key=lambda p: p.peak(static))
            items = {**plan.static, **worst.items, **worst.activations}
            top = sorted(items.items(), key=lambda kv: -kv[1])[:3]
            tops = "; ".join(f"{k} {v / GB:.1f} GB" for k, v in top)
            fix = "" if plan.fits else "<br>".join(advice(cfg, command, plan)) or "no single change found"
            rows.append(f"| `{name}` | {label} | {plan.peak / GB:.1f} GB | {'yes' if plan.fits else 'no'} | {tops} "
                        f"| {fix} |")
    text = Path(a.out).read_text() if os.path.exists(a.out) else ""
    head = text.split(MARKER)[0].rstrip() + "\n\n" if MARKER in text else text
    body = [MARKER, "", "Command: `python benchmarks/perf/plan_recipes.py` (each row is `python -m training plan "
            "--config training/configs/wan/<recipe>.yaml --gpus N --gpu-memory 80GB`, with `--set trd.weight=0` for "
            "the TRD-off rows and `optim.accumulation` for the one-GPU rows). Usable memory: 90% of the GPU.", "",
            *rows, "",
            "One GPU: our trainer offloads the frozen teacher only through FSDP2 (torchrun with 2+ processes, "
            "`distributed.offload_teacher`), so the one-GPU rows keep Wan's 14B teacher on the GPU; the two-GPU "
            "rows show the offloaded teacher (`--offload-teacher` in the plan, `--set "
            "distributed.offload_teacher=true` in the run).", ""]
    Path(a.out).write_text(head + "\n".join(body))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
