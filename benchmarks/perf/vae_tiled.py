"""Spatially tiled VAE decode: accuracy against the untiled decode, peak memory and time, and previews.

Parts (each stores its raw results in benchmarks/results/vae_tiled.json; the markdown is rendered from all):
* accuracy: tiled vs untiled streaming decode, max / mean |difference| in 0..255 pixel units, for several
  tiles and overlaps at sizes that are not multiples of the tile: the committed tiny VAE (trained) on
  latents of rendered world clips, and random-weight `tiny`, `micro`, reduced-width full-architecture and
  full-size VAEs on random latents. Also the preview at reduced size against the downscaled full preview.
* memory: a random full-size Wan 2.1 VAE (`WanVAE(vae_preset("wan2.1-vae"))`) decoding 2 latent frames at
  832x480 and 1280x720, each case in a fresh process: peak RSS above the pre-decode RSS, the estimate of
  `salt_core.vae.estimate_decode_memory` (caches + working + output), the caches actually held, wall and
  CPU time. Modes: untiled streaming, tiled streaming (fixed tile), whole-clip tiled (`decode_tiled`,
  tile chosen by `plan_tiles` for a budget), and the chunk preview at full and reduced size.

    python benchmarks/perf/vae_tiled.py --part accuracy|memory|render [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.perf.memory import peak_rss, reset_peak_rss, rss_bytes  # noqa: E402

RESULTS = ROOT / "benchmarks/results/vae_tiled.json"
REPORT = ROOT / "benchmarks/results/vae_tiled.md"
# Memory cases: glibc hands freed blocks back at once, so RSS follows the tensors alive (see vae_decode.py).
MEMORY_ENV = dict(os.environ, MALLOC_TRIM_THRESHOLD_="0", MALLOC_MMAP_THRESHOLD_="262144", OMP_WAIT_POLICY="PASSIVE")
LATENT_FRAMES = 2
OVERLAP = 8
STREAM_BUDGET = {480: 6 * 2**30, 720: 12 * 2**30}  # by frame height: 20-30% under the untiled estimate
CLIP_BUDGET = 2 * 2**30
PREVIEW_SIDE = 512
SIZES = ((480, 832), (720, 1280))  # (H, W) pixels
SPARE_BYTES = 4 * 2**30  # a case runs only if its estimate leaves this much of the available memory free
MEMORY_MODES = ("untiled stream", "tiled stream", "tiled clip", "preview", "preview 512")


# ---- shared ------------------------------------------------------------------------------------

def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save_results(part: str, value, command: str) -> None:
    from benchmarks.machine import describe

    data = load_results()
    data[part] = dict(command=command, machine=describe(), results=value)
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")


def to_255(diff) -> tuple[float, float]:
    """|a - b| of [-1, 1] pixels -> (max, mean) in 0..255 units."""
    d = diff.abs().double() * 127.5
    return float(d.max()), float(d.mean())


# ---- accuracy ----------------------------------------------------------------------------------

def world_latents(vae, latent_frames: int, hw: tuple[int, int], index: int):
    """Raw latents of a rendered world clip [1, z, t, h, w] (what the committed VAE was trained on)."""
    import torch

    from training.world.dataset import WorldDataset

    s, tf = vae.config.spatial_factor, vae.config.temporal_factor
    frames = 1 + tf * (latent_frames - 1)
    video, _ = WorldDataset(frames=frames, height=hw[0] * s, width=hw[1] * s, seed=3)[index]  # [T, H, W, 3]
    with torch.inference_mode():
        return vae.encode(video.permute(3, 0, 1, 2)[None] * 2 - 1)


def accuracy_models():
    """(name, vae, latents(hw, t) -> z) for each model of the accuracy table."""
    import torch

    from salt_core.checkpoints import load_vae
    from salt_core.vae import VAEConfig, WanVAE, vae_preset

    def random_latents(vae):
        def make(hw, t):
            g = torch.Generator().manual_seed(hw[0] * 1000 + hw[1])
            return torch.randn(1, vae.config.z_dim, t, *hw, generator=g)
        return make

    trained, _ = load_vae(ROOT / "salt_core/assets/default/vae.safetensors")
    yield "tiny, trained (committed default), world clip", trained, lambda hw, t: world_latents(trained, t, hw, 0)
    for name, cfg in (("tiny", vae_preset("tiny")), ("micro", vae_preset("micro")),
                      ("full architecture, dim 8", VAEConfig(dim=8, latent_mean=(), latent_std=())),
                      ("wan2.1-vae (full size)", vae_preset("wan2.1-vae"))):
        torch.manual_seed(0)
        vae = WanVAE(cfg).eval()
        yield f"{name}, random weights, random latents", vae, random_latents(vae)


def accuracy_cases(name: str, smallest: int) -> list[tuple[tuple[int, int], int, int]]:
    """(latent hw, tile, overlap). 2 x 3 tiles sharing exactly `overlap` cells (sizes 2t - o by 3t - 2o, not
    multiples of the tile), a larger tile, and a size where the evenly spread tiles share more."""
    t = smallest
    if name.startswith("wan2.1-vae"):
        return [((2 * t - 8, 3 * t - 16), t, 8)]
    return ([((2 * t - o, 3 * t - 2 * o), t, o) for o in (4, 8, 12)]
            + [((2 * (t + 8) - 8, 3 * (t + 8) - 16), t + 8, 8), ((2 * t + 3, 2 * t + 7), t, 8)])


def shared_cells(plan) -> int:
    """The least overlap between neighbouring tiles of a plan, in latent cells (0 for one tile)."""
    spans = [s for axis in (plan.rows, plan.cols) for s in zip(axis, axis[1:])]
    return min((a[1] - b[0] for a, b in spans), default=0)


def run_accuracy() -> list[dict]:
    import torch

    from salt_core.vae import TiledStreamingDecoder, min_tile, receptive_radius_px

    rows = []
    for name, vae, latents in accuracy_models():
        smallest = min_tile(vae)
        frames = 1 if name.startswith("wan2.1-vae") else 3
        cases = accuracy_cases(name, smallest)
        for hw, tile, overlap in cases:
            z = latents(hw, frames)
            with torch.inference_mode():
                ref = vae.streaming_decoder(1).decode_next(z)
                for blend in ("cosine", "linear"):
                    dec = TiledStreamingDecoder(vae, tile=tile, overlap=overlap, blend=blend)
                    out = torch.cat([dec.decode_next(c) for c in z.split(1, dim=2)], dim=2)
                    mx, mean = to_255(out - ref)
                    rows.append(dict(model=name, latent_hw=list(hw), pixels=[hw[0] * 8, hw[1] * 8],
                                     latent_frames=frames, tile=tile, overlap=overlap, shared=shared_cells(dec.plan),
                                     blend=blend, tiles=dec.plan.count, radius_px=receptive_radius_px(vae),
                                     max=mx, mean=mean))
                    print(rows[-1], file=sys.stderr, flush=True)
    return rows


def run_preview_quality() -> list[dict]:
    """Previews at a reduced size against the newest frame of the streamed full-size decode, downscaled
    (area): `PreviewDecoder` (streams at the reduced size) and `decode_preview` (the last latent frame
    alone). Committed tiny VAE, world clips of 3 latent frames at 320x256; CPU time of each against the
    full streaming decode."""
    import torch
    import torch.nn.functional as F

    from salt_core.checkpoints import load_vae
    from salt_core.vae import PreviewDecoder, decode_preview

    vae, _ = load_vae(ROOT / "salt_core/assets/default/vae.safetensors")
    rows = []

    def cpu_seconds(fn):
        c0 = time.process_time()
        out = fn()
        return out, time.process_time() - c0

    for index in range(4):
        z = world_latents(vae, 3, (32, 40), index)
        with torch.inference_mode():
            full, full_cpu = cpu_seconds(lambda: vae.streaming_decoder(1).decode_next(z))
            for side in (160, 80):
                for name, fn in (("PreviewDecoder", lambda: PreviewDecoder(vae, side).decode_next(z)[:, :, -1]),
                                 ("decode_preview", lambda: decode_preview(vae, z, max_side=side))):
                    small, cpu = cpu_seconds(fn)
                    ref = F.interpolate(full[:, :, -1], size=small.shape[-2:], mode="area")
                    mx, mean = to_255(small - ref)
                    psnr = 10 * torch.log10(4 / (small - ref).pow(2).mean()).item()
                    rows.append(dict(clip=index, method=name, max_side=side, size=list(small.shape[-2:]), psnr=psnr,
                                     max=mx, mean=mean, cpu_ratio=cpu / full_cpu))
                    print(rows[-1], file=sys.stderr, flush=True)
    return rows


# ---- memory ------------------------------------------------------------------------------------

def memory_plan(vae, mode: str, hw: tuple[int, int]):
    """The tiles `mode` decodes a frame of hw latent cells with."""
    from salt_core.vae import DecodeCall, TilePlan, plan_tiles

    if mode == "tiled stream":
        return plan_tiles(vae, hw, STREAM_BUDGET[hw[0] * 8], overlap=OVERLAP, call=DecodeCall(1, LATENT_FRAMES))
    if mode == "tiled clip":
        return plan_tiles(vae, hw, CLIP_BUDGET, overlap=OVERLAP, call=DecodeCall(1, LATENT_FRAMES, 1, False))
    return TilePlan.whole(hw)


def memory_case(mode: str, h_px: int, w_px: int) -> dict:
    """One decode in this (fresh) process -> peak RSS above the pre-decode RSS, time, caches held."""
    import torch

    from salt_core.vae import TiledStreamingDecoder, WanVAE, decode_preview, decode_tiled, vae_preset

    torch.manual_seed(0)
    vae = WanVAE(vae_preset("wan2.1-vae")).eval()
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 16, LATENT_FRAMES, h_px // 8, w_px // 8, generator=g)
    dec = None
    before = rss_bytes()
    reset_peak_rss()
    c0, w0 = time.process_time(), time.perf_counter()
    with torch.inference_mode():
        if mode == "untiled stream":
            dec = vae.streaming_decoder(1)
            dec.decode_next(z)
        elif mode == "tiled stream":
            dec = TiledStreamingDecoder(vae, overlap=OVERLAP, memory_budget=STREAM_BUDGET[h_px])
            dec.decode_next(z)
        elif mode == "tiled clip":
            decode_tiled(vae, z, memory_budget=CLIP_BUDGET, overlap=OVERLAP)
        elif mode.startswith("preview"):
            decode_preview(vae, z, max_side=PREVIEW_SIDE if mode == "preview 512" else None)
        else:
            raise ValueError(mode)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    peak = peak_rss()
    cache = dec.cache_nbytes() if dec is not None else None
    plan = getattr(dec, "plan", None) or memory_plan(vae, mode, tuple(z.shape[-2:]))  # the tiles decoded
    return dict(mode=mode, pixels=[h_px, w_px], before=before, peak=peak, wall=wall, cpu=cpu, cache=cache,
                tile=list(plan.tile), rows=[list(r) for r in plan.rows], cols=[list(c) for c in plan.cols])


def meta_vae():
    import torch

    from salt_core.vae import WanVAE, vae_preset

    with torch.device("meta"):
        return WanVAE(vae_preset("wan2.1-vae"))


def estimate_for(vae, mode: str, h_px: int, w_px: int, row: dict | None = None):
    """(plan, estimate of salt_core) for a memory case, from the current code (None for previews); the plan
    a measured `row` recorded, else the one `mode` makes now."""
    import torch

    from salt_core.vae import DecodeCall, TilePlan, estimate_decode_memory

    hw = (h_px // 8, w_px // 8)
    if row is not None and "rows" in row:
        plan = TilePlan(hw, tuple(row["tile"]), (OVERLAP, OVERLAP), tuple(map(tuple, row["rows"])),
                        tuple(map(tuple, row["cols"])))
    else:
        plan = memory_plan(vae, mode, hw)
    if mode.startswith("preview"):
        return plan, None
    call = DecodeCall(1, LATENT_FRAMES, 1, mode != "tiled clip", torch.float32)
    return plan, estimate_decode_memory(vae, plan, call)


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def run_memory(threads: int, only: list[str], code: str) -> list[dict]:
    """Every (size, mode) case, or the `only` ones ("mode|H|W"), which replace their rows in the stored results."""
    vae = meta_vae()
    cases = [(mode, h_px, w_px) for h_px, w_px in SIZES for mode in MEMORY_MODES]
    if only:
        cases = [c for c in cases if f"{c[0]}|{c[1]}|{c[2]}" in only]
    stored = load_results().get("memory", {}).get("results", []) if only else []
    rows = [r for r in stored if f"{r['mode']}|{r['pixels'][0]}|{r['pixels'][1]}" not in only]
    for mode, h_px, w_px in cases:
        _, est = estimate_for(vae, mode, h_px, w_px)
        free = available_bytes()
        print("running", mode, h_px, w_px, file=sys.stderr, flush=True)
        if est is not None and est.total > free - SPARE_BYTES:
            rows.append(dict(mode=mode, pixels=[h_px, w_px], error=f"the estimate {mib(est.total)} MiB exceeds "
                             f"the memory available then ({mib(free)} MiB) less {mib(SPARE_BYTES)} MiB spare"))
        else:
            cmd = [sys.executable, __file__, "--case", f"{mode}|{h_px}|{w_px}", "--threads", str(threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=MEMORY_ENV)
            if out.returncode:
                rows.append(dict(mode=mode, pixels=[h_px, w_px], error=out.stderr.strip().splitlines()[-1]))
            else:
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        rows[-1]["code"] = code
        print(rows[-1], file=sys.stderr, flush=True)
        order = {c: i for i, c in enumerate((m, h, w) for h, w in SIZES for m in MEMORY_MODES)}
        rows.sort(key=lambda r: order[(r["mode"], *r["pixels"])])
        save_results("memory", rows, f"python benchmarks/perf/vae_tiled.py --part memory --threads {threads}")
        REPORT.write_text(render())
    return rows


# ---- report ------------------------------------------------------------------------------------

def mib(x) -> str:
    return "–" if x is None else f"{x / 2**20:,.0f}"


def render() -> str:
    data = load_results()
    lines = ["# Tiled VAE decode: accuracy, peak memory, time", ""]
    lines += ["Decoders: `salt_core.vae.TiledStreamingDecoder` (chunk by chunk, every tile keeps its temporal "
              "caches) and `salt_core.vae.decode_tiled` (whole clip, one tile through all frames at a time); "
              "both run the decoder's trunk (first conv + middle block with its frame-wide attention) on the "
              "whole latent frame and tile only the convolutional upsampler, with cosine (or linear) ramps "
              "over the central part of each overlap. Differences are in 0..255 pixel units against the "
              "untiled streaming decode of the same latents (both clamped to [-1, 1]).", ""]
    if "accuracy" in data:
        acc = data["accuracy"]
        lines += ["## Accuracy: tiled vs untiled", "", f"Command: `{acc['command']}`", "",
                  f"Machine: {acc['machine']}", "",
                  "Tile and overlap in latent cells (8 px). Streaming in chunks of 1 latent frame. `radius` is "
                  "`receptive_radius_px`: pixels farther than this from an inner tile edge are exact.", "",
                  "| model | latent h×w (pixels w×h) | frames | tile | overlap (least shared) | tiles | radius px | blend "
                  "| max | mean |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in acc["results"]:
            lines.append(f"| {r['model']} | {r['latent_hw'][0]}×{r['latent_hw'][1]} ({r['pixels'][1]}×{r['pixels'][0]})"
                         f" | {r['latent_frames']} | {r['tile']} | {r['overlap']} ({r['shared']}) | {r['tiles']} | {r['radius_px']}"
                         f" | {r['blend']} | {r['max']:.3f} | {r['mean']:.4f} |")
        lines.append("")
    if "preview" in data:
        pre = data["preview"]
        lines += ["## Previews at reduced size", "", f"Command: `{pre['command']}`", "", f"Machine: {pre['machine']}", "",
                  "Committed tiny VAE, rendered world clips of 3 latent frames (9 pixel frames) at 320×256. Reference: "
                  "the newest frame of the full-size streaming decode, area-downscaled to the preview's size. "
                  "`PreviewDecoder(vae, max_side)` streams the area-downsampled latents with its own caches; "
                  "`decode_preview(vae, z, max_side)` decodes the last latent frame alone (no temporal context). "
                  "CPU = CPU time / that of the full streaming decode of the chunk.", "",
                  "| clip | method | max_side | size (h×w) | PSNR dB | max | mean | CPU |", "|---|---|---|---|---|---|---|---|"]
        for r in pre["results"]:
            lines.append(f"| {r['clip']} | {r['method']} | {r['max_side']} | {r['size'][0]}×{r['size'][1]} | {r['psnr']:.1f} "
                         f"| {r['max']:.1f} | {r['mean']:.2f} | {r['cpu_ratio']:.3f} |")
        lines.append("")
    if "memory" in data:
        mem = data["memory"]
        lines += ["## Peak memory and time: random full-size Wan 2.1 VAE", "",
                  f"Command: `MALLOC_TRIM_THRESHOLD_=0 MALLOC_MMAP_THRESHOLD_=262144 OMP_WAIT_POLICY=PASSIVE "
                  f"{mem['command']}` (the script sets the environment of each case's process)", "",
                  f"Machine: {mem['machine']}", "",
                  f"`WanVAE(vae_preset(\"wan2.1-vae\"))` with random weights, fp32 CPU, {LATENT_FRAMES} latent "
                  f"frames (1 + 4 = 5 pixel frames) in one call, 1 latent frame per decoder pass. Each case in a "
                  "fresh process; peak = peak RSS minus the RSS just before the decode (model and latents loaded). "
                  "Estimate = `estimate_decode_memory` (caches at steady state + working + output); caches held = "
                  f"`cache_nbytes()` after the call. Overlap {OVERLAP}. Tiled stream: `TiledStreamingDecoder("
                  f"memory_budget=...)` with {', '.join(f'{v >> 30} GiB at {k}p' for k, v in STREAM_BUDGET.items())}"
                  f"; tiled clip: `decode_tiled(memory_budget={CLIP_BUDGET >> 30} GiB)`; both tiles chosen by "
                  "`plan_tiles`, the largest whose estimate fits the budget. Preview: `decode_preview` of the "
                  f"last latent frame, at full size and with max_side={PREVIEW_SIDE}. code = the commit measured: "
                  "3522a8f predates two fixes, frame attention handing SDPA contiguous q/k/v (before, SDPA built "
                  "the HW×HW score matrix: 1.9 GB per frame at 1280×720, which made the 720p whole-clip decode "
                  "peak at 2,553 MiB, over its budget) and `decode_preview` keeping no past frames (it peaked at "
                  "2,979 / 6,842 MiB at full size). The streaming rows peak in the upsampler with their caches "
                  "full, where neither fix applies (the attention runs at the trunk, before the upsampler's "
                  "caches of the frame are written).", "",
                  "| size | mode | tile (tiles) | peak MiB | estimate MiB (caches + working + output) | "
                  "caches held MiB | peak / untiled | wall s | CPU s | CPU / untiled | code |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        vae = meta_vae()
        base = {tuple(r["pixels"]): r for r in mem["results"] if r["mode"] == "untiled stream" and "error" not in r}
        for r in mem["results"]:
            size = f"{r['pixels'][1]}×{r['pixels'][0]}"
            plan, est = estimate_for(vae, r["mode"], *r["pixels"], row=r)
            tiles = "–" if r["mode"].startswith("preview") else f"{plan.tile[0]}×{plan.tile[1]} ({plan.count})"
            est_text = "–" if est is None else f"{mib(est.total)} ({mib(est.cache)} + {mib(est.working)} + {mib(est.output)})"
            if "error" in r:
                lines.append(f"| {size} | {r['mode']} | {tiles} | not measured: {r['error']} | {est_text} | | | | | | "
                             f"{r.get('code', '')} |")
                continue
            ref = base.get(tuple(r["pixels"]))
            peak = r["peak"] - r["before"]
            peak_ratio = "–" if ref is None else f"{peak / (ref['peak'] - ref['before']):.2f}"
            cpu_ratio = "–" if ref is None else f"{r['cpu'] / ref['cpu']:.2f}"
            lines.append(f"| {size} | {r['mode']} | {tiles} | {mib(peak)} | {est_text} | {mib(r['cache'])} | "
                         f"{peak_ratio} | {r['wall']:.0f} | {r['cpu']:.0f} | {cpu_ratio} | {r.get('code', '')} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("accuracy", "preview", "memory", "render"), default="render")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=[], help='memory cases to re-run, as "mode|H|W"')
    ap.add_argument("--code", default="", help="the commit of salt_core measured (shown per row)")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: "mode|H|W" memory case
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    if a.case:
        mode, h_px, w_px = a.case.split("|")
        print(json.dumps(memory_case(mode, int(h_px), int(w_px))))
        return
    if a.part in ("accuracy", "preview"):
        run = run_accuracy if a.part == "accuracy" else run_preview_quality
        save_results(a.part, run(), f"python benchmarks/perf/vae_tiled.py --part {a.part} --threads {a.threads}")
    elif a.part == "memory":
        run_memory(a.threads, a.only, a.code)
    REPORT.write_text(render())
    print(REPORT.read_text())


if __name__ == "__main__":
    main()
