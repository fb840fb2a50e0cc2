"""Memory of the Wan 2.1 DiT at real sizes, counted without allocating anything (meta device).

* weights: parameters of the 1.3B and 14B `WanDiT` presets, times the bytes of each storage dtype;
* KV cache: what `salt_core.kv_cache.KVCache` really allocates (its buffers, built on the meta device) for
  832x480 video (60x104 latent cells, 1560 tokens per frame after the 2x2 patches), 21 latent frames made
  in chunks of 3, bf16, batch 1, under each cache policy as the pipeline builds it; plus the prompt's
  cross-attention K/V (512 text tokens) that every policy adds.

    python benchmarks/perf/memory_table.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PRESETS = ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b")
LATENT_HW = (60, 104)  # 832x480 pixels / 8
LATENT_FRAMES = 21
CHUNK = 3


def storage_dtypes():
    import torch

    return (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16),
            ("fp8 (e4m3)", torch.float8_e4m3fn))


def policies():
    """(label, CachePolicy) as the pipeline builds them for LATENT_FRAMES frames."""
    from salt_core.kv_cache import CachePolicy

    return (("full (max_frames = 21)", CachePolicy("full", max_frames=LATENT_FRAMES)),
            ("window 12", CachePolicy("window", window_frames=12)),
            ("window 12, cache-relative positions", CachePolicy("window", window_frames=12, positions="cache_relative")),
            ("sink 3 + window 9", CachePolicy("sink_window", window_frames=9, sink_frames=3)))


def meta_dit(name: str):
    import torch

    from salt_core.config import dit_preset
    from salt_core.dit import WanDiT

    with torch.device("meta"):
        return WanDiT(dit_preset(name)).to(torch.bfloat16)


def kv_bytes(model, policy) -> tuple[int, int, int]:
    """(self-attention bytes, cross-attention bytes, frame slots) of a real cache on the meta device."""
    import torch

    cache = model.new_cache(policy, batch=1, latent_hw=LATENT_HW, chunk_frames=CHUNK)
    frames_only = cache.memory_bytes()
    c = model.config
    context = torch.zeros(1, c.text_len, c.text_dim, device="meta", dtype=model.dtype)
    model.set_prompt(cache, context)
    return frames_only, cache.memory_bytes() - frames_only, cache.total_slots


def gib(n: int) -> str:
    return f"{n / 2**30:.2f}"


def render() -> str:
    from benchmarks.machine import describe

    models = {name: meta_dit(name) for name in PRESETS}
    tokens = (LATENT_HW[0] // 2) * (LATENT_HW[1] // 2)
    lines = ["# Memory of the Wan 2.1 DiT: weights per storage dtype, KV cache per policy", "",
             "Command: `python benchmarks/perf/memory_table.py`", "", f"Machine: {describe()} (nothing is "
             "allocated: models and caches are built on the meta device, so the numbers are exact and "
             "machine-independent)", "", "## Weights", "",
             "Parameters counted on `WanDiT(dit_preset(name))` built under `torch.device(\"meta\")`; bytes = "
             "parameters × bytes per element (every tensor in that dtype). fp8 files load as bf16 here "
             "(no fp8 kernels on CPU), so in memory they take the bf16 figure.", "",
             "| model | parameters | " + " | ".join(f"{label} GiB" for label, _ in storage_dtypes()) + " |",
             "|---|---|" + "---|" * len(storage_dtypes())]
    for name, model in models.items():
        n = sum(p.numel() for p in model.parameters())
        lines.append(f"| {name} | {n:,} | " + " | ".join(gib(n * dt.itemsize) for _, dt in storage_dtypes()) + " |")
    lines += ["", "## KV cache at 832×480", "",
              f"`model.new_cache(policy, batch=1, latent_hw={LATENT_HW}, chunk_frames={CHUNK})` in bf16 on the meta "
              f"device, then `memory_bytes()` of what it allocated: {tokens} tokens per latent frame, "
              f"{LATENT_FRAMES} latent frames in chunks of {CHUNK}. Slots = frame slots preallocated (the "
              f"policy's capacity + one chunk of scratch; `full` as the pipeline sets it, max_frames = "
              f"{LATENT_FRAMES}, which never grows for this video). Cross-attention = the prompt's K/V after "
              "`set_prompt` (512 text tokens), the same for every policy.", "",
              "| model | policy | slots | self-attention K/V GiB | + cross-attention GiB | total GiB |",
              "|---|---|---|---|---|---|"]
    for name, model in models.items():
        for label, policy in policies():
            frames, cross, slots = kv_bytes(model, policy)
            lines.append(f"| {name} | {label} | {slots} | {gib(frames)} | {gib(cross)} | {gib(frames + cross)} |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/memory.md"))
    a = ap.parse_args()
    text = render()
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
