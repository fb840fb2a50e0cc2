"""Where a DiT forward spends its time, ours vs diffusers, and how close it is to the hardware.

torch.profiler over interleaved forwards of both models (same config and weights, 1 thread, CPU fp32);
self time per op class (GEMM, attention, patch conv, everything else), and the FLOP rate of the matrix
work against a lone large GEMM on the same core (what the hardware does at best). Use it to read the
cases of `dit_vs_diffusers.md` whose ratio is close to 1: both models then run the same MKL GEMM and
oneDNN/ATen flash-attention kernels for nearly all of their time.

    python benchmarks/perf/dit_profile.py [--out benchmarks/results/dit_profile.md]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe  # noqa: E402
from benchmarks.perf.dit_vs_diffusers import LATENTS, SIZES, diffusers_model  # noqa: E402
from benchmarks.perf.timing import env_prefix  # noqa: E402
from salt_core.checkpoints.keys import official_to_diffusers  # noqa: E402
from salt_core.dit import WanDiT  # noqa: E402

CASES = [
    ("small (dim 512, 4 layers, head 128)", "2048 tok"),
    ("wan 1.3B width (dim 1536, 1 layer, head 128)", "256 tok"),
    ("wan 1.3B width (dim 1536, 1 layer, head 128)", "1560 tok (one 832×480 frame)"),
]
CLASSES = ("GEMM (linear)", "attention (SDPA)", "patch embedding conv", "everything else")


def op_class(name: str) -> str:
    if name in ("aten::addmm", "aten::mm", "aten::bmm", "aten::_addmm_activation"):
        return CLASSES[0]
    if "scaled_dot_product" in name:
        return CLASSES[1]
    if "conv" in name:
        return CLASSES[2]
    return CLASSES[3]


def attention_flops(cfg, tokens: int) -> float:
    """Self-attention (tokens x tokens) + cross-attention (tokens x text_len): QK^T and PV, per layer."""
    d = cfg.dim
    return cfg.num_layers * 4.0 * tokens * (tokens + cfg.text_len) * d


def gemm_peak(threads: int) -> float:
    """GFLOP/s of one large fp32 GEMM alone on this machine (the practical ceiling for the linears)."""
    a, b = torch.randn(1560, 1536), torch.randn(1536, 8960)
    a @ b
    best = float("inf")
    for _ in range(5):
        t = time.process_time()
        a @ b
        best = min(best, time.process_time() - t)
    return 2 * 1560 * 1536 * 8960 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/dit_profile.md"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    peak = gemm_peak(1)
    rows = []
    for size_name, lat_name in CASES:
        cfg = SIZES[size_name]
        torch.manual_seed(0)
        ours = WanDiT(cfg).eval()
        theirs = diffusers_model(cfg)
        theirs.load_state_dict(official_to_diffusers(ours.state_dict()), strict=True)
        T, H, W = LATENTS[lat_name]
        tokens = T * H * W // 4
        x, t, ctx = torch.randn(1, cfg.in_dim, T, H, W), torch.tensor([500.0]), torch.randn(1, cfg.text_len, cfg.text_dim)
        runs = {"ours": lambda: ours(x, t, ctx), "diffusers": lambda: theirs(x, t, ctx, return_dict=False)[0]}
        totals = {k: {c: 0.0 for c in CLASSES} for k in runs}
        flops = {k: 0.0 for k in runs}
        with torch.inference_mode():
            for f in runs.values():
                f()
            for _ in range(a.repeats):
                for k, f in runs.items():
                    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as p:
                        f()
                    for ev in p.key_averages():
                        totals[k][op_class(ev.key)] += ev.self_cpu_time_total / 1e3 / a.repeats
                        if op_class(ev.key) == CLASSES[0]:
                            flops[k] += (ev.flops or 0) / a.repeats
        rows.append((size_name, lat_name, tokens, cfg, totals, flops))
        print(size_name, lat_name, totals, file=sys.stderr, flush=True)

    lines = [
        "# DiT forward profile: ours vs diffusers, and the hardware ceiling",
        "",
        f"Command: `{env_prefix()}python benchmarks/perf/dit_profile.py --repeats {a.repeats}`",
        "",
        f"Machine: {describe()}",
        "",
        f"1 thread, fp32, batch 1. Self CPU ms per op class from torch.profiler (mean of {a.repeats} profiled "
        "forwards per model, interleaved; profiling adds a little overhead to both). A lone "
        f"1560×1536×8960 GEMM runs at **{peak:.0f} GFLOP/s** on this core: the practical ceiling for the linears.",
        "",
        "| model | latent | impl | " + " | ".join(f"{c} ms" for c in CLASSES) + " | total ms | GEMM GFLOP/s | "
        "GEMM+attention at the ceiling, ms | total / ceiling |",
        "|---|---|---|" + "---|" * (len(CLASSES) + 4),
    ]
    for size_name, lat_name, tokens, cfg, totals, flops in rows:
        for k in ("ours", "diffusers"):
            tot = sum(totals[k].values())
            rate = flops[k] / (totals[k][CLASSES[0]] / 1e3) / 1e9 if totals[k][CLASSES[0]] else float("nan")
            bound = (flops[k] + attention_flops(cfg, tokens)) / (peak * 1e9) * 1e3
            lines.append(f"| {size_name} | {lat_name} | {k} | " + " | ".join(f"{totals[k][c]:.1f}" for c in CLASSES)
                         + f" | {tot:.1f} | {rate:.0f} | {bound:.1f} | {tot / bound:.2f} |")
    shares = [100 * (t["ours"][CLASSES[0]] + t["ours"][CLASSES[1]]) / sum(t["ours"].values()) for *_, t, _ in rows]
    lines += [
        "",
        f"Reading: GEMM and attention take {min(shares):.0f}–{max(shares):.0f}% of our forward at these sizes, and they "
        "are the same kernels on the same shapes in both implementations (same weights, same math, same MKL / ATen "
        "flash-attention calls), so the ratio of the two tends to 1.0 as the model widens; the difference is in "
        "\"everything else\" (norms, modulation, RoPE, GELU, bias and layout copies), where ours does fewer passes "
        "and allocations. What would close the remaining distance to the ceiling is faster kernels, not fewer ops: "
        "bf16/AMX GEMMs on CPUs that have them, or a GPU. (Profiled times are wall-clock self times on a shared "
        "machine: compare within a row pair, not across tables.)",
        "",
    ]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
