"""What one latent frame of decoder context costs: the same VAE weights decoded with `decoder_context` 0 and 1,
side by side in one process (rounds interleaved), on the embedded default's latent size (a 33-frame 64x64 clip =
9 latent frames of 8x8), streamed chunk by chunk as the pipeline does (chunks of 3 latent frames).

    python benchmarks/perf/decoder_context.py [--vae FILE] [--rounds 9] [--threads 1] [--out FILE.md]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from salt_core.checkpoints import load_vae  # noqa: E402
from salt_core.vae import WanVAE  # noqa: E402

DEFAULT_VAE = os.path.join(ROOT, "salt_core", "assets", "default", "vae.safetensors")


@torch.inference_mode()
def decode_ms(vae: WanVAE, z: torch.Tensor, chunk: int) -> float:
    t0 = time.perf_counter()
    decoder = vae.streaming_decoder(frames_per_step=None)
    for part in z.split(chunk, dim=2):
        decoder.decode_next(part)
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vae", default=DEFAULT_VAE)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    base, _ = load_vae(a.vae)
    if not base.config.temporally_local:
        p.error(f"{a.vae}: decoder_context needs a temporally local VAE")
    models = {}
    for context in (0, 1):
        m = WanVAE(dataclasses.replace(base.config, decoder_context=context)).eval()
        m.load_state_dict(base.state_dict())
        models[context] = m
    z = torch.randn(1, base.config.z_dim, 9, 8, 8, generator=torch.Generator().manual_seed(0))
    times = {0: [], 1: []}
    for r in range(a.rounds + 1):
        for context, m in models.items():
            ms = decode_ms(m, z, 3)
            if r:  # round 0 warms up
                times[context].append(ms)
    med = {c: statistics.median(v) for c, v in times.items()}
    ratios = statistics.median(b / a_ for a_, b in zip(times[0], times[1]))
    text = (f"`python benchmarks/perf/decoder_context.py --rounds {a.rounds} --threads {a.threads}`: the VAE "
            f"`{os.path.relpath(a.vae, ROOT)}` decoding 9 latent frames of 8x8 (33 frames of 64x64) in chunks of 3, "
            f"median of {a.rounds} interleaved rounds at {a.threads} thread(s).\n\n"
            "| decoder_context | decode ms |\n|---|---|\n"
            f"| 0 | {med[0]:.0f} |\n| 1 | {med[1]:.0f} |\n\n"
            f"Context 1 / context 0: {ratios:.3f} (median of paired rounds).\n")
    print(text)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            f.write("# What one latent frame of decoder context costs\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
