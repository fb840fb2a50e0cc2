"""Autoregressive generation on a tiny model: per-chunk latency and memory vs length, per cache policy.

Latency: every policy in this process, advanced one chunk each in turn (so drift in machine load hits all
alike), the whole rollout repeated `--repeats` times with fresh caches. The latency "at chunk i" is the
median over repeats and over the band of chunks i-3..i+3 (7 chunks x repeats samples), on the wall clock
and on process CPU time (with 1 thread, CPU time is what the chunk cost, barely touched by other load).
Memory: each policy alone in a fresh process per length: peak RSS of the process, KV-cache bytes, and
the RSS growth over the second half of the video (0 = flat).
Also measures the rolling KV cache against recomputing the window's K/V from its latents before every chunk.

    python benchmarks/perf/ar_cache_policies.py [--latent-frames 256] [--threads 1] [--out benchmarks/results/ar_cache_policies.md]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.perf.memory import peak_rss, reset_peak_rss, rss_bytes  # noqa: E402

CASES = {
    "full": dict(kind="full", max_frames=4096),
    "window": dict(kind="window", window_frames=12),
    "sink_window": dict(kind="sink_window", sink_frames=2, window_frames=10),
    "window (cache_relative)": dict(kind="window", window_frames=12, positions="cache_relative"),
    "window, recomputed each chunk": dict(kind="window", window_frames=12, recompute=True),
}
REPORT_CHUNKS = (1, 10, 50, 100, 120)
PROBE = "probe (fixed work)"
BAND = 3  # chunks either side of a reported chunk


class Runner:
    """One cache policy's generation, advanced one chunk at a time (so policies can be interleaved)."""

    def __init__(self, name: str, chunk: int, hw: int, steps: int, chunks: int):
        import torch

        from salt_core.config import dit_preset
        from salt_core.dit import WanDiT
        from salt_core.kv_cache import CachePolicy
        from salt_core.sampling import ChunkLayout, Walk
        from salt_core.schedules import StepGrid

        spec = dict(CASES[name])
        self.recompute = spec.pop("recompute", False)
        self.policy = CachePolicy(**spec)
        torch.manual_seed(0)
        self.model = WanDiT(dit_preset("tiny")).eval()
        self.ctx = torch.randn(1, 8, self.model.config.text_dim)
        self.walk = Walk(StepGrid.uniform(steps, 5.0))
        self.shape = (1, 16, chunk, hw, hw)
        self.layout = ChunkLayout(chunk * chunks, (hw, hw), chunk)
        self.reset()

    def reset(self) -> None:
        from salt_core.sampling import ChunkDriver, seeded_generator

        self.gen = seeded_generator(0)
        self.driver = ChunkDriver(self.model, self.policy, self.layout)
        self.driver.set_prompt(self.ctx)
        self.cache = self.driver.cache
        self.c = 0

    def step(self) -> tuple[float, float]:
        """Generate the next chunk: (wall s, cpu s)."""
        import torch

        from salt_core.sampling import draw

        c = self.c
        with torch.inference_mode():
            c0, w0 = time.process_time(), time.perf_counter()
            if self.recompute and c > 0:
                self.driver.set_prompt(self.ctx, recache=True)  # rebuild every retained frame's K/V from its latents
            self.driver.chunk(c, draw(self.shape, self.gen, "cpu"), self.walk, self.gen)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        self.c += 1
        return wall, cpu


def memory_of(name: str, latent_frames: int, chunk: int, hw: int, steps: int) -> dict:
    n = latent_frames // chunk
    r = Runner(name, chunk, hw, steps, n)
    r.step()  # the first chunk sizes every buffer the steady state reuses
    start = rss_bytes()
    reset_peak_rss()
    trace = []
    for _ in range(n - 1):
        r.step()
        trace.append(rss_bytes())
    half = trace[len(trace) // 2]
    return dict(peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, cache_bytes=r.cache.memory_bytes(),
                peak_extra=peak_rss() - start, growth_second_half=max(trace[len(trace) // 2:]) - half)


def band_median(per_chunk: list[list[float]], i: int, k: int = BAND) -> float:
    """Median over chunks i-k..i+k (1-based i) and over repeats."""
    lo, hi = max(0, i - 1 - k), min(len(per_chunk), i + k)
    return statistics.median(x for xs in per_chunk[lo:hi] for x in xs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latent-frames", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=2)
    ap.add_argument("--hw", type=int, default=16, help="latent height = width")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="whole rollouts per policy for the latency figures")
    ap.add_argument("--memory-lengths", default="64,128,256", help="latent-frame counts for the memory table")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/ar_cache_policies.md"))
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: one memory case in this process
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    if a.case:
        print(json.dumps(memory_of(a.case, a.latent_frames, a.chunk, a.hw, a.steps)))
        return
    from benchmarks.machine import describe
    from benchmarks.perf.timing import env_prefix

    n_chunks = a.latent_frames // a.chunk
    runners = {name: Runner(name, a.chunk, a.hw, a.steps, n_chunks) for name in CASES}
    # The probe does the same fixed work every round (a first chunk on a fresh cache): its time tracks the
    # machine's speed at that moment, and dividing by it removes load drift from the length dependence.
    runners[PROBE] = Runner("window", a.chunk, a.hw, a.steps, 1)
    wall = {name: [[] for _ in range(n_chunks)] for name in runners}
    cpu = {name: [[] for _ in range(n_chunks)] for name in runners}
    totals = {name: [] for name in CASES}
    for rep in range(a.repeats):
        for r in runners.values():
            r.reset()
        for c in range(n_chunks):
            names = list(runners)
            names = names[c % len(names):] + names[: c % len(names)]  # rotate who goes first
            for name in names:
                if name == PROBE:
                    runners[name].reset()
                w, p = runners[name].step()
                wall[name][c].append(w)
                cpu[name][c].append(p)
            if c % 32 == 0:
                print(f"repeat {rep} chunk {c}", file=sys.stderr, flush=True)
        for name in CASES:
            totals[name].append(sum(wall[name][c][-1] for c in range(n_chunks)))
    lengths = [int(x) for x in a.memory_lengths.split(",")]
    memory = {name: {} for name in CASES}
    for length in lengths:
        for name in CASES:
            cmd = [sys.executable, __file__, "--case", name, "--latent-frames", str(length), "--chunk", str(a.chunk),
                   "--hw", str(a.hw), "--steps", str(a.steps), "--threads", str(a.threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            memory[name][length] = json.loads(out.strip().splitlines()[-1])
            print(f"memory {name} {length}", file=sys.stderr, flush=True)

    cols = [c for c in REPORT_CHUNKS if c + BAND <= n_chunks or c == 1]
    tokens = (a.hw // 2) ** 2
    lines = [
        "# AR generation: per-chunk latency and memory per cache policy",
        "",
        f"Command: `{env_prefix()}python benchmarks/perf/ar_cache_policies.py --latent-frames {a.latent_frames} --chunk {a.chunk} "
        f"--hw {a.hw} --steps {a.steps} --threads {a.threads} --repeats {a.repeats} --memory-lengths {a.memory_lengths}`",
        "",
        f"Machine: {describe()}",
        "",
        f"Tiny causal Wan DiT (preset `tiny`), {a.latent_frames} latent frames in chunks of {a.chunk} "
        f"({n_chunks} chunks), latent {a.hw}×{a.hw} ({tokens} tokens per frame), {a.steps} steps + one context pass "
        f"per chunk, fp32 CPU. Window policies keep 12 past latent frames (sink_window: 2 sink + 10). "
        f"Latency at chunk i = median over chunks i−{BAND}..i+{BAND} and {a.repeats} repeated rollouts "
        f"(policies interleaved chunk by chunk in one process), in ms; chunk 1 is the first chunk alone.",
        "",
        "## Latency per chunk (CPU time of the process)",
        "",
        "| policy | " + " | ".join(f"chunk {c}" for c in cols) + " | chunk 100 / chunk 10 | latent frames/s (whole video) |",
        "|---|" + "---|" * (len(cols) + 2),
    ]

    def ratio(series):
        return band_median(series, 100) / band_median(series, 10) if n_chunks >= 100 + BAND else float("nan")

    for name in list(CASES) + [PROBE]:
        ms = [band_median(cpu[name], c, 0 if c == 1 else BAND) * 1e3 for c in cols]
        total_cpu = statistics.median(sum(cpu[name][c][r] for c in range(n_chunks)) for r in range(a.repeats))
        lines.append(f"| {name} | " + " | ".join(f"{m:.2f}" for m in ms)
                     + f" | {ratio(cpu[name]):.3f} | {a.latent_frames / total_cpu:.1f} |")
    probe_all = statistics.median(x for xs in cpu[PROBE] for x in xs)
    corrected = {name: [[x * probe_all / p for x, p in zip(cpu[name][c], cpu[PROBE][c])] for c in range(n_chunks)]
                 for name in CASES}
    lines += [
        "",
        "## Latency per chunk, CPU time corrected for machine drift",
        "",
        "Each chunk's CPU time × (median probe time / the probe's time in the same round): the probe repeats "
        "identical work every round, so this removes the slow drift of the shared machine's speed.",
        "",
        "| policy | " + " | ".join(f"chunk {c}" for c in cols) + " | chunk 100 / chunk 10 |",
        "|---|" + "---|" * (len(cols) + 1),
    ]
    for name in CASES:
        ms = [band_median(corrected[name], c, 0 if c == 1 else BAND) * 1e3 for c in cols]
        lines.append(f"| {name} | " + " | ".join(f"{m:.2f}" for m in ms) + f" | {ratio(corrected[name]):.3f} |")
    lines += [
        "",
        "## Latency per chunk (wall clock; disturbed by other load on this shared machine)",
        "",
        "| policy | " + " | ".join(f"chunk {c}" for c in cols) + " | chunk 100 / chunk 10 | whole video s (median of repeats) |",
        "|---|" + "---|" * (len(cols) + 2),
    ]
    for name in CASES:
        ms = [band_median(wall[name], c, 0 if c == 1 else BAND) * 1e3 for c in cols]
        lines.append(f"| {name} | " + " | ".join(f"{m:.2f}" for m in ms)
                     + f" | {ratio(wall[name]):.3f} | {statistics.median(totals[name]):.2f} |")
    lines += [
        "",
        "## Memory vs video length (each policy alone in a fresh process)",
        "",
        "Peak during generation = the process's peak RSS from the end of chunk 1 to the end of the video, above "
        "the RSS at the end of chunk 1 (the kernel's peak mark is reset there), in MiB: what the video's length "
        "adds. KV cache at the end in MiB. RSS growth over the second half (max RSS after the middle chunk minus "
        "RSS at the middle chunk) in MiB. Whole-process peak RSS (Python + torch + model) is "
        f"{max(m[n]['peak_rss'] for m in memory.values() for n in lengths) / 2**20:.0f} MiB at most.",
        "",
        "| policy | " + " | ".join(f"peak during generation @{n}" for n in lengths) + " | "
        + " | ".join(f"KV @{n}" for n in lengths) + f" | RSS growth, 2nd half @{lengths[-1]} |",
        "|---|" + "---|" * (2 * len(lengths) + 1),
    ]
    for name in CASES:
        m = memory[name]
        lines.append(f"| {name} | " + " | ".join(f"{m[n]['peak_extra'] / 2**20:.1f}" for n in lengths) + " | "
                     + " | ".join(f"{m[n]['cache_bytes'] / 2**20:.2f}" for n in lengths)
                     + f" | {m[lengths[-1]]['growth_second_half'] / 2**20:.1f} |")
    roll = statistics.median(sum(cpu["window"][c][r] for c in range(n_chunks)) for r in range(a.repeats))
    rec = statistics.median(sum(cpu["window, recomputed each chunk"][c][r] for c in range(n_chunks)) for r in range(a.repeats))
    lines += [
        "",
        f"Rolling window cache vs recomputing the window's K/V before every chunk: {rec / roll:.2f}× faster "
        f"({roll:.2f} s vs {rec:.2f} s CPU for the whole video).",
        "",
    ]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
