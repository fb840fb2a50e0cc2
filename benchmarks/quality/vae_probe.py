"""Score a world VAE on held-out 33-frame world clips: the probe metric of benchmarks/quality/VAE.md.

    OMP_NUM_THREADS=1 python benchmarks/quality/vae_probe.py runs/world/vae/vae.safetensors [--clips 16] [--json OUT]

Prints one JSON object: whole-frame and object-pixel PSNR (dB, pixels in 0..1; the clips of
`training.commands.vae.heldout_psnr` with seed 2, as vae.yaml evaluates), object PSNR per temporal group
(frame 0, frames 1-4, ..., 29-32: drift shows as a fall along the clip), colour flicker (mean absolute
difference between the reconstruction's and the clip's frame-to-frame change of the mean object colour, in
0..255 levels; 0 = object colours change exactly as in the clip), across the group boundaries (0|1, 4|5, ...)
and within the groups, and the decode time of one 33-frame clip at one thread (median of --repeats, ms; a
benchmark number, not a test).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from salt_core.checkpoints import load_vae  # noqa: E402
from training.commands.vae import WorldVideos, clip_batches, psnr  # noqa: E402
from training.config import WorldClipsConfig  # noqa: E402

CLIPS = WorldClipsConfig(frames=33, height=64, width=64, seed=2)


def object_colours(video: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """video [B, 3, T, H, W], mask [B, 1, T, H, W] -> (mean colour over the mask [B, T, 3], has-object [B, T])."""
    count = mask.sum((-1, -2)).transpose(1, 2)                                   # [B, T, 1]
    total = (video * mask).sum((-1, -2)).transpose(1, 2)                         # [B, T, 3]
    return total / count.clamp_min(1), count[..., 0] > 0


def flicker(recon: torch.Tensor, video: torch.Tensor, mask: torch.Tensor, factor: int) -> tuple[float, float]:
    """Mean |Δ_t colour(recon) − Δ_t colour(video)| over consecutive frames that both show an object, 0..255:
    (across a group boundary: frame t-1 in the group before frame t's, within a group)."""
    rc, seen = object_colours((recon + 1) / 2, mask)
    vc, _ = object_colours((video + 1) / 2, mask)
    both = seen[:, 1:] & seen[:, :-1]                                            # [B, T-1]
    gap = ((rc[:, 1:] - rc[:, :-1]) - (vc[:, 1:] - vc[:, :-1])).abs().mean(-1)   # [B, T-1]
    t = torch.arange(1, recon.shape[2])
    boundary = ((t - 1) % factor == 0).expand_as(both)                          # frame t opens a group
    mean = lambda keep: float(gap[keep].mean() * 255) if keep.any() else float("nan")  # noqa: E731
    return mean(both & boundary), mean(both & ~boundary)


def group_slices(frames: int, factor: int) -> list[slice]:
    return [slice(0, 1)] + [slice(s, s + factor) for s in range(1, frames, factor)]


@torch.no_grad()
def score(path: str, count: int, repeats: int) -> dict:
    vae, _ = load_vae(path, device="cpu")
    vae.eval()
    data = WorldVideos(CLIPS, split="heldout", length=count)
    groups = group_slices(CLIPS.frames, vae.config.temporal_factor)
    whole, objects, flick, per_group, n = 0.0, 0.0, [0.0, 0.0], [0.0] * len(groups), 0
    for b in clip_batches(data, count):
        x, mask = b["video"], b["objects"]
        recon = vae.decode(vae.encode(x), frames_per_step=x.shape[2])
        whole += psnr(recon, x) * len(x)
        objects += psnr(recon, x, mask) * len(x)
        flick = [f + v * len(x) for f, v in zip(flick, flicker(recon, x, mask, vae.config.temporal_factor))]
        for i, g in enumerate(groups):
            per_group[i] += psnr(recon[:, :, g], x[:, :, g], mask[:, :, g]) * len(x)
        n += len(x)
    z = vae.encode(next(clip_batches(data, 1))["video"])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        decoder = vae.streaming_decoder(frames_per_step=None)
        decoder.decode_next(z)
        times.append((time.perf_counter() - start) * 1000)
    size = os.path.getsize(path)
    return {"vae": path, "clips": n, "psnr_db": whole / n, "object_psnr_db": objects / n,
            "object_psnr_per_group_db": [round(v / n, 2) for v in per_group], "flicker_boundary_levels": flick[0] / n,
            "flicker_within_levels": flick[1] / n,
            "decode_ms_33_frames": statistics.median(times), "size_mb": size / 1e6,
            "temporally_local": vae.config.temporally_local,
            "params_m": sum(p.numel() for p in vae.parameters()) / 1e6}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("vae", help="a VAE .safetensors (salt_core.checkpoints.save_vae)")
    p.add_argument("--clips", type=int, default=16, help="held-out 33-frame clips")
    p.add_argument("--repeats", type=int, default=5, help="timed decodes of one clip")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="", help="also write the result here")
    a = p.parse_args(argv)
    if a.clips < 1 or a.repeats < 1:
        p.error("--clips and --repeats must be >= 1")
    torch.set_num_threads(a.threads)
    result = score(a.vae, a.clips, a.repeats)
    text = json.dumps(result, indent=1)
    print(text)
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
