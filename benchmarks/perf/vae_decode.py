"""Streaming VAE decode vs full decode: time and peak memory vs video length (Wan 2.1 VAE, `tiny` preset).

Modes, all on the same weights and latents:
* streaming:    `StreamingDecoder`, chunks of 3 latent frames (as the pipeline feeds it), whole chunk per
                decoder pass when it fits the memory budget; each chunk's frames converted to uint8 and
                dropped (what the pipeline does on its way to the MP4 writer);
* streaming, 1 frame/pass: the same, one latent frame per decoder pass (the official memory floor);
* full:         `WanVAE.decode(z)`: the whole video returned as one float tensor;
* full, one pass: `WanVAE.decode(z, frames_per_step=T)`: every frame through the decoder at once;
* diffusers:    `AutoencoderKLWan.decode` (independent implementation; same weights).

Time: all modes interleaved in one process (see timing.py), median wall and CPU time, and the paired
ratio streaming / diffusers. Memory: each (mode, length) in a fresh process; "peak extra" = peak RSS
minus the RSS just before decoding (model and latents already in memory).

    python benchmarks/perf/vae_decode.py [--threads 1] [--sizes "64:3,6,12,24,48;128:3,12,24"] [--baseline DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.perf.memory import peak_rss, reset_peak_rss, rss_bytes  # noqa: E402

MODES = ("streaming", "streaming, 1 frame/pass", "full", "full, one pass", "diffusers")
# Memory cases: glibc returns freed blocks at once (no trim slack, big blocks mmapped), so RSS follows the
# tensors alive rather than what the allocator chose to keep (which otherwise adds +-50 MiB of noise).
MEMORY_ENV = dict(os.environ, MALLOC_TRIM_THRESHOLD_="0", MALLOC_MMAP_THRESHOLD_="262144")
CHUNK = 3


def build(mode: str, baseline: str | None = None):
    """-> vae (ours, or diffusers' twin with our weights)."""
    import torch

    from salt_core.vae import WanVAE, official_to_diffusers, vae_preset

    torch.manual_seed(0)
    ours = WanVAE(vae_preset("tiny")).eval()
    if mode == "diffusers":
        from diffusers import AutoencoderKLWan

        cfg = ours.config
        twin = AutoencoderKLWan(base_dim=cfg.dim, z_dim=cfg.z_dim, dim_mult=list(cfg.dim_mult),
                                num_res_blocks=cfg.num_res_blocks, temperal_downsample=list(cfg.temporal_downsample),
                                latents_mean=list(cfg.latent_mean), latents_std=list(cfg.latent_std))
        twin.load_state_dict(official_to_diffusers(ours.state_dict()), strict=True)
        return twin.eval()
    if mode == "before":
        from benchmarks.perf.baseline import load_salt_core

        base = load_salt_core(baseline)
        old = base.vae.WanVAE(base.vae.vae_preset("tiny")).eval()
        old.load_state_dict(ours.state_dict())
        return old
    return ours


def decoder(mode: str, vae):
    """-> fn(z) that decodes z [1, 16, T, h, w] the way `mode` does and returns nothing."""
    import torch

    def to_uint8(x):  # [B, 3, n, H, W] in [-1, 1] -> uint8 frames, dropped
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

    def streaming(z, step):
        dec = vae.streaming_decoder(step)
        for c in z.split(CHUNK, dim=2):
            to_uint8(dec.decode_next(c))

    if mode == "streaming":
        return lambda z: streaming(z, None)
    if mode in ("streaming, 1 frame/pass", "before"):
        return lambda z: streaming(z, 1)
    if mode == "full":
        return lambda z: vae.decode(z)
    if mode == "full, one pass":
        return lambda z: vae.decode(z, frames_per_step=z.shape[2])
    if mode == "diffusers":
        return lambda z: vae.decode(z, return_dict=False)[0]
    raise ValueError(mode)


def latents(t: int, px: int):
    import torch

    g = torch.Generator().manual_seed(t)
    return torch.randn(1, 16, t, px // 8, px // 8, generator=g)


def memory_case(mode: str, t: int, px: int, baseline: str | None) -> dict:
    import torch

    vae = build(mode, baseline)
    z = latents(t, px)
    fn = decoder(mode, vae)
    before = rss_bytes()
    reset_peak_rss()
    with torch.inference_mode():
        fn(z)
    return dict(before=before, peak=peak_rss())


def parse_sizes(text: str) -> dict[int, list[int]]:
    out = {}
    for part in text.split(";"):
        px, lengths = part.split(":")
        out[int(px)] = [int(x) for x in lengths.split(",")]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sizes", default="64:3,6,12,24,48;128:3,12,24", help="pixels:latent-frame counts;...")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", default=None, help="a checkout whose streaming decode is timed too (before/after)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/vae_decode.md"))
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: "mode|t|px" memory case
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    if a.case:
        mode, t, px = a.case.split("|")
        print(json.dumps(memory_case(mode, int(t), int(px), a.baseline)))
        return
    from benchmarks.machine import describe
    from benchmarks.perf.timing import env_prefix, interleaved, paired_ratio

    modes = list(MODES) + (["before"] if a.baseline else [])
    vaes = {m: build(m, a.baseline) for m in modes}
    sizes = parse_sizes(a.sizes)
    timing, memory = {}, {}
    for px, lengths in sizes.items():
        for t in lengths:
            z = latents(t, px)
            fns = {m: (lambda f=decoder(m, vaes[m]): f(z)) for m in modes}
            with torch.inference_mode():
                s = interleaved(fns, rounds=a.rounds)
            timing[(px, t)] = {m: (s[m].wall_median, s[m].cpu_median) for m in modes}
            timing[(px, t)]["ratio"] = (paired_ratio(s["streaming"], s["diffusers"], "wall"),
                                       paired_ratio(s["streaming"], s["diffusers"], "cpu"))
            if a.baseline:
                timing[(px, t)]["vs_before"] = (paired_ratio(s["streaming"], s["before"], "wall"),
                                               paired_ratio(s["streaming"], s["before"], "cpu"))
            print(px, t, timing[(px, t)], file=sys.stderr, flush=True)
            for m in modes:
                cmd = [sys.executable, __file__, "--case", f"{m}|{t}|{px}", "--threads", str(a.threads)]
                if a.baseline:
                    cmd += ["--baseline", a.baseline]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=MEMORY_ENV).stdout
                memory[(px, t, m)] = json.loads(out.strip().splitlines()[-1])

    cmd = env_prefix() + f"python benchmarks/perf/vae_decode.py --threads {a.threads} --sizes \"{a.sizes}\" --rounds {a.rounds}"
    if a.baseline:
        cmd += " --baseline DIR"
    lines = [
        "# Streaming VAE decode vs full decode: time and peak memory vs length",
        "",
        f"Command: `{cmd}`" + (" (DIR = the checkout before the optimisations)" if a.baseline else ""),
        "",
        f"Machine: {describe()}",
        "",
        "Wan 2.1 VAE architecture, `tiny` preset (dim 16, the embedded default's VAE), random weights, fp32 CPU. "
        "t latent frames decode to 1 + 4(t−1) pixel frames. Modes: see the script's docstring "
        "(streaming = chunks of 3 latent frames, frames dropped after conversion to uint8, as the pipeline does). "
        f"Time: modes interleaved in one process, median of {a.rounds} rounds; ratio = median of paired "
        "ratios streaming/diffusers (< 1: ours faster).",
        "",
        "## Time (wall s / CPU s)",
        "",
        "| size | latent frames | pixel frames | " + " | ".join(modes) + " | streaming/diffusers wall | CPU |"
        + (" streaming/before wall | CPU |" if a.baseline else ""),
        "|---|---|---|" + "---|" * (len(modes) + 2) + ("---|---|" if a.baseline else ""),
    ]
    for (px, t), row in timing.items():
        line = (f"| {px}×{px} | {t} | {1 + 4 * (t - 1)} | "
                + " | ".join(f"{row[m][0]:.2f} / {row[m][1]:.2f}" for m in modes)
                + f" | {row['ratio'][0]:.3f} | {row['ratio'][1]:.3f} |")
        if a.baseline:
            line += f" {row['vs_before'][0]:.3f} | {row['vs_before'][1]:.3f} |"
        lines.append(line)
    lines += [
        "",
        "## Peak memory above the pre-decode RSS, MiB (each case in a fresh process)",
        "",
        "Run with `MALLOC_TRIM_THRESHOLD_=0 MALLOC_MMAP_THRESHOLD_=262144` so that freed memory goes back to the "
        "system at once and the peak reflects the tensors alive, not the allocator's cache. `full` holds the "
        "whole float video; `full, one pass` and diffusers also hold every frame's activations or outputs.",
        "",
        "| size | latent frames | " + " | ".join(modes) + " |",
        "|---|---|" + "---|" * len(modes),
    ]
    for (px, t) in timing:
        lines.append(f"| {px}×{px} | {t} | "
                     + " | ".join(f"{(memory[(px, t, m)]['peak'] - memory[(px, t, m)]['before']) / 2**20:.0f}"
                                  for m in modes) + " |")
    lines.append("")
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
