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


class Runner:
    """One cache policy's generation, advanced one chunk at a time (so policies can be interleaved)."""

    def __init__(self, name: str, chunk: int, hw: int, steps: int):
        import torch

        from salt_core.config import dit_preset
        from salt_core.dit import WanDiT
        from salt_core.kv_cache import CachePolicy
        from salt_core.sampling.clip import seeded_generator
        from salt_core.schedules import StepGrid

        spec = dict(CASES[name])
        self.recompute = spec.pop("recompute", False)
        torch.manual_seed(0)
        self.model = WanDiT(dit_preset("tiny")).eval()
        self.ctx = torch.randn(1, 8, self.model.config.text_dim)
        self.sig = StepGrid.uniform(steps, 5.0).with_terminal()
        self.gen = seeded_generator(0)
        self.chunk, self.shape = chunk, (1, 16, chunk, hw, hw)
        self.cache = self.model.new_cache(CachePolicy(**spec), batch=1, latent_hw=(hw, hw), chunk_frames=chunk)
        self.model.set_prompt(self.cache, self.ctx)
        self.c = 0
        self.latencies: list[float] = []

    def step(self) -> None:
        import torch

        from salt_core.sampling import recache_prompt
        from salt_core.sampling.clip import draw
        from salt_core.sampling.transitions import predict_x0, transition_step

        m, sig, c = self.model, self.sig, self.c
        with torch.inference_mode():
            t0 = time.perf_counter()
            if self.recompute and c > 0:
                recache_prompt(m, self.cache, self.ctx)  # rebuild every retained frame's K/V from its latents
            idx = list(range(c * self.chunk, (c + 1) * self.chunk))
            x = draw(self.shape, self.gen, "cpu")
            for i in range(len(sig) - 1):
                v = m.forward_chunk(x, torch.full((1,), 1000 * sig[i]), self.cache, idx)
                x = transition_step(x, predict_x0(x, v, sig[i]), sig[i], sig[i + 1], "renoise", draw(self.shape, self.gen, "cpu"))
            m.forward_chunk(x, torch.zeros(1), self.cache, idx, commit=True)
            self.latencies.append(time.perf_counter() - t0)
        self.c += 1


def peak_rss_of(name: str, latent_frames: int, chunk: int, hw: int, steps: int) -> dict:
    r = Runner(name, chunk, hw, steps)
    for _ in range(latent_frames // chunk):
        r.step()
    return dict(peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, cache_bytes=r.cache.memory_bytes())


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
    import torch

    torch.set_num_threads(a.threads)
    if a.case:
        print(json.dumps(peak_rss_of(a.case, a.latent_frames, a.chunk, a.hw, a.steps)))
        return
    from benchmarks.machine import describe

    # Latency: all policies in this process, one chunk each in turn, so machine-load drift hits all alike.
    runners = {name: Runner(name, a.chunk, a.hw, a.steps) for name in CASES}
    for c in range(a.latent_frames // a.chunk):
        for r in runners.values():
            r.step()
        if c % 16 == 0:
            print(f"chunk {c}", file=sys.stderr)
    # Memory: each policy alone in a fresh process, so the peak RSS is its own.
    results = {}
    for name, r in runners.items():
        cmd = [sys.executable, __file__, "--case", name, "--latent-frames", str(a.latent_frames), "--chunk",
               str(a.chunk), "--hw", str(a.hw), "--steps", str(a.steps), "--threads", str(a.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[name] = dict(json.loads(out.strip().splitlines()[-1]), latencies=r.latencies)
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
        "whole process (model + Python + torch; each policy alone in a fresh process), KV-cache bytes at the end. "
        "Latencies were measured with all policies interleaved chunk by chunk in one process.",
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
            + f" | {ratio:.2f} | {sum(lat):.2f} | {r['peak_rss'] / 2**20:.0f} | {r['cache_bytes'] / 2**20:.2f} |"
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
