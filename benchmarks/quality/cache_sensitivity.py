"""How much a causal student's second chunk depends on its cache: a probe for "ignores its own cache".

For each of the first N held-out prompts: two different first chunks (noise seeds i and i + 1000), then the
same second-chunk noise and the same renoise draws; the student rolls both 2-chunk clips out at K steps under
its trained cache policy. Printed per checkpoint, mean ± SE over prompts:

* `second-chunk RMS`: RMS difference of the two second chunks (normalised latents). 0 = the cache is ignored.
* `first-chunk RMS`: RMS difference of the two first chunks, the size of the change the cache carries.
* their ratio: how much of the change in the cache reaches the next chunk.
* for every checkpoint after the first: its ratio minus the first checkpoint's, paired by prompt.

    python benchmarks/quality/cache_sensitivity.py benchmarks/quality/checkpoints/salt-ar.safetensors \\
        benchmarks/quality/checkpoints/ar-dmd.safetensors runs/world/abl_g/model.safetensors --steps 2 --prompts 32

Writes nothing. The text encoder defaults to the embedded default's.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

from consistency import latent_rms  # noqa: E402
from generation import DEFAULT_PROMPTS, DEFAULT_TEXT_ENCODER, LATENT, SHIFT, read_prompts, trained_policy  # noqa: E402
from salt_core.checkpoints import load_dit  # noqa: E402
from salt_core.sampling import CausalSetup, Walk, draw, seeded_generator  # noqa: E402
from salt_core.schedules import StepGrid  # noqa: E402
from salt_core.text import load_text_encoder  # noqa: E402
from stats import mean, se  # noqa: E402
from training.rollout.cache_aware import build_cache  # noqa: E402

OTHER_SEED = 1000  # the first chunk's noise of the second clip: seed i + OTHER_SEED
SECOND_SEED = 2000  # the shared second chunk's noise: seed i + SECOND_SEED


def noise(seed: int, frames: int) -> torch.Tensor:
    """[1, C, frames, h, w] standard normal noise from its own seeded generator."""
    return draw((1, LATENT[0], frames, *LATENT[2:]), seeded_generator(seed), "cpu")


@torch.no_grad()
def probe(model, info, ctx: torch.Tensor, seed: int, steps: int, other_seed: int = OTHER_SEED) -> tuple[float, float]:
    """(first-chunk RMS, second-chunk RMS) for one prompt ctx [1, L, text_dim]: first chunks from noise seeds
    `seed` and `seed + other_seed`, one shared second chunk."""
    f = info.sampling.chunk_frames
    second = noise(seed + SECOND_SEED, f)
    clips = []
    for first_seed in (seed, seed + other_seed):
        x = torch.cat([noise(first_seed, f), second], dim=2)
        driver = CausalSetup(model, ctx, trained_policy(info), f).driver(x)
        samples = build_cache(driver, x, Walk(StepGrid.uniform(steps, SHIFT), info.sampling.transition), seed)
        clips.append(samples)  # [1, C, 2f, h, w]
    a, b = clips
    return latent_rms(a[:, :, :f], b[:, :, :f]), latent_rms(a[:, :, f:], b[:, :, f:])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="+", help="causal student .safetensors files")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--prompt-file", default=DEFAULT_PROMPTS)
    p.add_argument("--text-encoder", default=DEFAULT_TEXT_ENCODER)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    encoder = load_text_encoder(a.text_encoder)
    prompts = read_prompts(a.prompt_file, a.prompts)
    baseline = None
    for path in a.checkpoints:
        model, info = load_dit(path)
        if not info.sampling.causal:
            p.error(f"{path}: not a causal student (its header says causal=false); the probe needs a KV cache")
        model.eval()
        first, second = [], []
        for i, prompt in enumerate(prompts):
            r1, r2 = probe(model, info, encoder.encode([prompt])[0], i, a.steps)
            first.append(r1)
            second.append(r2)
        ratio = [s / f if f > 0 else float("nan") for f, s in zip(first, second)]  # nan: noise-blind first chunk
        print(f"{path} K={a.steps}: first-chunk RMS {mean(first):.3f} ± {se(first):.3f}, second-chunk RMS "
              f"{mean(second):.3f} ± {se(second):.3f}, ratio {mean(ratio):.3f} ± {se(ratio):.3f} "
              f"({len(prompts)} prompts)", flush=True)
        if baseline is None:
            baseline = ratio
        else:
            diff = [r - b for r, b in zip(ratio, baseline)]
            print(f"  ratio minus the first checkpoint's (paired): {mean(diff):+.3f} ± {se(diff):.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
