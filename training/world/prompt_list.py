"""Prompt files of the world for the data-free stages (dmd, sc-dmd, salt-ar) and for evaluation.

    python -m training.world.prompt_list --split train --count 2000 --out training/configs/world/prompts-train.txt
    python -m training.world.prompt_list --split heldout --count 64 --seed 1 --out benchmarks/quality/prompts-heldout.txt

Training prompts are WorldDataset's (same seeds as build-latents' clips); held-out prompts describe
held-out scenes (`heldout_scenes`), so no training prompt names their (colour, shape, motion) combination.
"""
from __future__ import annotations

import argparse

from .dataset import WorldDataset
from .grammar import prompt_for
from .sampling import heldout_scenes


def world_prompts(split: str, count: int, seed: int = 0) -> list[str]:
    if split == "heldout":
        return [prompt_for(s, seed=seed * 1_000_003 + i) for i, s in enumerate(heldout_scenes(count, seed=seed))]
    ds = WorldDataset(split=split, length=max(1, count), seed=seed)
    return [ds.prompt(i) for i in range(count)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.world.prompt_list", description=__doc__.split("\n")[0])
    p.add_argument("--split", choices=("train", "heldout"), default="train")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    lines = world_prompts(a.split, a.count, a.seed)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(f"# {a.count} {a.split} prompts of the synthetic world (seed {a.seed}); "
                f"python -m training.world.prompt_list --split {a.split} --count {a.count} --seed {a.seed}\n")
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} prompts to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
