"""Autoregressive generation on a tiny model: per-chunk latency and memory vs length, per cache policy.

Each policy runs in its own process (so peak RSS is its own). Also measures the rolling KV cache
against recomputing the window's K/V from its latents before every chunk.

    python benchmarks/perf/ar_cache_policies.py [--latent-frames 256] [--out benchmarks/results/ar_cache_policies.md]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CASES = {
    "full": dict(kind="full", max_frames=4096),
    "window": dict(kind="window", window_frames=12),
    "sink_window": dict(kind="sink_window", sink_frames=2, window_frames=10),
    "window (cache_relative)": dict(kind="window", window_frames=12, positions="cache_relative"),
    "window, recomputed each chunk": dict(kind="window", window_frames=12, recompute=True),
}
REPORT_CHUNKS = (1, 10, 50, 100)


def run_case(name: str, latent_frames: int, chunk: int, hw: int, steps: int, threads: int) -> dict:
    import torch

    from salt_core.config import dit_preset
    from salt_core.dit import WanDiT
    from salt_core.kv_cache import CachePolicy
    from salt_core.sampling import recache_prompt
    from salt_core.sampling.clip import draw, seeded_generator
    from salt_core.sampling.transitions import predict_x0, transition_step
    from salt_core.schedules import StepGrid

    torch.set_num_threads(threads)
    spec = dict(CASES[name])
    recompute = spec.pop("recompute", False)
    policy = CachePolicy(**spec)
    torch.manual_seed(0)
    model = WanDiT(dit_preset("tiny")).eval()
    ctx = torch.randn(1, 8, model.config.text_dim)
    grid = StepGrid.uniform(steps, 5.0)
    sig = grid.with_terminal()
    gen = seeded_generator(0)
    cache = model.new_cache(policy, batch=1, latent_hw=(hw, hw), chunk_frames=chunk)
    model.set_prompt(cache, ctx)
    latencies, cache_bytes = [], []
    shape = (1, 16, chunk, hw, hw)
    with torch.inference_mode():
        for c in range(latent_frames // chunk):
            t0 = time.perf_counter()
            if recompute and c > 0:
                recache_prompt(model, cache, ctx)  # rebuild every retained frame's K/V from its latents
            idx = list(range(c * chunk, (c + 1) * chunk))
            x = draw(shape, gen, "cpu")
            for i in range(grid.steps):
                v = model.forward_chunk(x, torch.full((1,), 1000 * sig[i]), cache, idx)
                x0 = predict_x0(x, v, sig[i])
                x = transition_step(x, x0, sig[i], sig[i + 1], "renoise", draw(shape, gen, "cpu"))
            model.forward_chunk(x, torch.zeros(1), cache, idx, commit=True)
            latencies.append(time.perf_counter() - t0)
            cache_bytes.append(cache.memory_bytes())
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return dict(name=name, latencies=latencies, cache_bytes=cache_bytes, peak_rss=peak_rss)


def median_around(xs: list[float], i: int, k: int = 2) -> float:
    """Median latency over chunks i-k..i+k (1-based i), to damp scheduler noise."""
    lo, hi = max(0, i - 1 - k), min(len(xs), i + k)
    s = sorted(xs[lo:hi])
    return s[len(s) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latent-frames", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=2)
    ap.add_argument("--hw", type=int, default=16, help="latent height = width")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/ar_cache_policies.md"))
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case in this process
    a = ap.parse_args()
    if a.case:
        print(json.dumps(run_case(a.case, a.latent_frames, a.chunk, a.hw, a.steps, a.threads)))
        return
    from benchmarks.machine import describe

    results = {}
    for name in CASES:
        cmd = [sys.executable, __file__, "--case", name, "--latent-frames", str(a.latent_frames), "--chunk",
               str(a.chunk), "--hw", str(a.hw), "--steps", str(a.steps), "--threads", str(a.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
        print(f"{name}: done", file=sys.stderr)
    n_chunks = a.latent_frames // a.chunk
    cols = [c for c in REPORT_CHUNKS if c <= n_chunks]
    lines = [
        "# AR generation: per-chunk latency and memory per cache policy",
        "",
        f"Command: `python benchmarks/perf/ar_cache_policies.py --latent-frames {a.latent_frames} --chunk {a.chunk} "
        f"--hw {a.hw} --steps {a.steps} --threads {a.threads}`",
        "",
        f"Machine: {describe()}",
        "",
        f"Tiny causal Wan DiT (preset `tiny`), {a.latent_frames} latent frames in chunks of {a.chunk} "
        f"({n_chunks} chunks), latent {a.hw}×{a.hw} ({(a.hw // 2) ** 2} tokens per frame), {a.steps} steps + "
        "one context pass per chunk, fp32 CPU. Latency = median over chunks i−2..i+2, in ms. Peak RSS of the "
        "whole process (model + Python + torch), KV-cache bytes at the end.",
        "",
        "| policy | " + " | ".join(f"chunk {c}" for c in cols) + " | chunk 100 / chunk 10 | total s | peak RSS MiB | KV cache MiB (end) |",
        "|---|" + "---|" * (len(cols) + 4),
    ]
    for name, r in results.items():
        lat = r["latencies"]
        ms = [median_around(lat, c) * 1000 for c in cols]
        ratio = (median_around(lat, 100) / median_around(lat, 10)) if n_chunks >= 100 else float("nan")
        lines.append(
            f"| {name} | " + " | ".join(f"{m:.1f}" for m in ms)
            + f" | {ratio:.2f} | {sum(lat):.2f} | {r['peak_rss'] / 2**20:.0f} | {r['cache_bytes'][-1] / 2**20:.2f} |"
        )
    roll = sum(results["window"]["latencies"])
    recomputed = sum(results["window, recomputed each chunk"]["latencies"])
    lines += [
        "",
        f"Rolling window cache vs recomputing the window's K/V before every chunk: {recomputed / roll:.2f}× faster "
        f"({roll:.2f} s vs {recomputed:.2f} s for the whole video).",
        "",
    ]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
