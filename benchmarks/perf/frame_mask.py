"""One self-attention call under a latent-frame mask: the dense token mask (replaced) vs chunked keys (now).

Wan 1.3B attention width (12 heads x 128), 21 latent frames, a reduced number of tokens per frame (the real
size, 1560 tokens per frame, does not fit a CPU run), fp32, CPU. Each case runs alone in a fresh process:
peak RSS above the inputs (q, k, v already allocated) over making the mask and the first call, then the median
CPU time of `--repeats` calls (the mask is made once per model forward, so it is outside the timing). "dense" is
the replaced forward: the [T', T'] frame mask expanded to [L, L] tokens, then masked SDPA. "chunked keys" is FrameMask + Attention (one unmasked SDPA per group of identical mask rows,
against only the allowed key frames). Also the analytic sizes at the real size, which are never allocated now.
FlexAttention (the CUDA path) is not measured here (no GPU).

    python benchmarks/perf/frame_mask.py [--tokens-per-frame 6,24,54,96] [--repeats 3] [--threads 1]
                                         [--out benchmarks/results/frame_mask.md]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.perf.memory import peak_rss, reset_peak_rss, rss_bytes  # noqa: E402

HEADS, HEAD_DIM, FRAMES = 12, 128, 21  # Wan 2.1 1.3B: dim 1536 = 12 x 128; 21 latent frames = 81 video frames
REAL_TOKENS_PER_FRAME = 1560  # 480 x 832 video: latent 60 x 104, patches 2 x 2 -> 30 x 52
MASKS = {
    "block-causal, chunks of 3": ("causal", 3),
    "frame-causal, chunks of 1": ("causal", 1),
    "teacher forcing, chunks of 3 (2 x 21 frames)": ("teacher_forcing", 3),
}
METHODS = ("dense", "chunked keys")
MODES = ("forward", "forward+backward")
MIB = 2**20


def frame_table(kind: str, chunk: int):
    """[T', T'] bool: the full-cache block-causal mask, or teacher forcing's [2T, 2T] mask built from it."""
    import torch

    from salt_core.kv_cache import CachePolicy
    from training.losses.critic import teacher_forcing_inputs

    if kind == "causal":
        return CachePolicy("full").frame_mask(FRAMES, chunk)
    x = torch.zeros(1, 1, FRAMES, 1, 1)
    return teacher_forcing_inputs(x, x, torch.zeros(1, FRAMES), chunk_frames=chunk)[2]


def run_case(case: dict) -> dict:
    """In a fresh process: one method, one mask, one size, one mode."""
    import torch

    from salt_core.dit.attention import Attention, sdpa
    from salt_core.dit.frame_mask import FrameMask

    torch.set_num_threads(case["threads"])
    table, n = frame_table(*MASKS[case["mask"]]), case["tokens_per_frame"]
    L = table.shape[0] * n
    train = case["mode"] == "forward+backward"
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, L, HEAD_DIM, generator=g).requires_grad_(train) for _ in range(3))
    grad_out = torch.randn(1, HEADS, L, HEAD_DIM, generator=g) if train else None
    attention = Attention()

    def call(mask):
        with torch.set_grad_enabled(train):
            out = sdpa(q, k, v, mask) if case["method"] == "dense" else attention(q, k, v, mask)
            if train:
                out.backward(grad_out)
                q.grad = k.grad = v.grad = None

    base = rss_bytes()
    reset_peak_rss()
    # made once per model forward and shared by every layer: inside the peak, outside the timing
    if case["method"] == "dense":
        mask = table.repeat_interleave(n, 0).repeat_interleave(n, 1)  # [L, L] bool
    else:
        mask = FrameMask(table, n)
    call(mask)
    peak = peak_rss() - base
    times = []
    for _ in range(case["repeats"]):
        t0 = time.process_time()
        call(mask)
        times.append(time.process_time() - t0)
    return {"tokens": L, "peak_mib": peak / MIB, "ms": 1000 * statistics.median(times)}


def measure(case: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def real_size_rows() -> list[str]:
    """Analytic bytes at 1560 tokens per frame, per attention call (one layer)."""
    from salt_core.dit.frame_mask import FrameMask

    rows = []
    for name, (kind, chunk) in MASKS.items():
        table = frame_table(kind, chunk)
        mask = FrameMask(table, REAL_TOKENS_PER_FRAME)
        L = mask.tokens
        widest = max(len(g.key_frames) for g in mask.groups) * REAL_TOKENS_PER_FRAME
        gathered = sum(len(g.key_frames) for g in mask.groups if not isinstance(g.keys, slice))
        # gathered K and V copies of one layer (kept for backward under autograd), bf16
        copies = 2 * gathered * REAL_TOKENS_PER_FRAME * HEADS * HEAD_DIM * 2
        rows.append(
            f"| {name} | {L} | {L * L / 2**30:.2f} GiB | {L * L * 2 / 2**30:.2f} GiB | "
            f"{HEADS * L * L * 2 / 2**30:.1f} GiB | {len(mask.groups)} | {widest} | {copies / 2**30:.2f} GiB |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens-per-frame", default="6,24,54,96")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "frame_mask.md"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(json.loads(args.child))))
        return
    import torch

    sizes = [int(s) for s in args.tokens_per_frame.split(",")]
    load = os.getloadavg()[0]
    lines = [
        "# Frame-masked attention: dense token mask vs chunked keys",
        "",
        f"Command: `OMP_WAIT_POLICY=PASSIVE python benchmarks/perf/frame_mask.py --tokens-per-frame "
        f"{args.tokens_per_frame} --repeats {args.repeats} --threads {args.threads}`",
        "",
        f"Machine: {platform.processor() or platform.machine()}; {os.cpu_count()} logical CPUs; torch "
        f"{torch.__version__} with {args.threads} thread(s); no GPU; Python {platform.python_version()}; load "
        f"average {load:.1f} at the start (shared machine: times are CPU time, medians)",
        "",
        f"One attention call, q/k/v `[1, {HEADS}, L, {HEAD_DIM}]` fp32 (Wan 1.3B width), {FRAMES} latent frames "
        "(teacher forcing: 42), full-cache masks. Peak = RSS high-water mark above the allocated inputs during the "
        "mask's making and the first call (each case alone in a fresh process); time = median CPU time per call "
        "without the mask's making (once per model forward, shared by its layers). `dense` expands the frame mask "
        "to an [L, L] bool and runs masked SDPA (the replaced forward); `chunked` is "
        "`Attention()(q, k, v, FrameMask(table, n))`.",
        "",
    ]
    reading = []
    for mode in MODES:
        lines += [f"## {mode}", "",
                  "| mask | tokens/frame | L | dense mask | dense peak MiB | chunked peak MiB | dense ms | chunked ms "
                  "| time chunked / dense |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for mask in MASKS:
            for n in sizes:
                r = {m: measure(dict(method=m, mask=mask, tokens_per_frame=n, mode=mode, repeats=args.repeats,
                                     threads=args.threads)) for m in METHODS}
                d, c = r["dense"], r["chunked keys"]
                L = d["tokens"]
                print(mode, mask, n, d, c, flush=True)
                lines.append(f"| {mask} | {n} | {L} | {L * L / MIB:.2f} MiB | {d['peak_mib']:.1f} | "
                             f"{c['peak_mib']:.1f} | {d['ms']:.1f} | {c['ms']:.1f} | {c['ms'] / d['ms']:.2f} |")
                if c["peak_mib"] <= d["peak_mib"] and not any(r.startswith(f"* {mode}, {mask}:") for r in reading):
                    reading.append(f"* {mode}, {mask}: chunked peak at or below dense from L = {L} on "
                                   f"({c['peak_mib']:.1f} vs {d['peak_mib']:.1f} MiB).")
            if not any(r.startswith(f"* {mode}, {mask}:") for r in reading):
                reading.append(f"* {mode}, {mask}: chunked peak above dense up to L = {L} "
                               f"({c['peak_mib']:.1f} vs {d['peak_mib']:.1f} MiB).")
        lines.append("")
    lines += [
        "## Reading",
        "",
        *reading,
        "",
        "Dense's extra memory grows with L^2 (the bool mask and SDPA's float copy of it: 1 + 4 bytes per token pair in "
        "fp32); chunked's with L (the output, and under autograd gradient buffers of the key slices of each group, "
        "padded to full length by slicing, and gathered K/V of split key sets), so at small L chunked can need more "
        "and the gap then turns with L. Dense computes every score, allowed or not; chunked only the allowed ones "
        "(half of a block-causal mask, about a third of teacher forcing's), plus a per-group cost that shows with "
        "many small groups (chunks of 1 frame) at small sizes.",
        "",
    ]
    lines += [
        f"## At the real size ({REAL_TOKENS_PER_FRAME} tokens per frame), per layer, never allocated now",
        "",
        "`dense mask`: the [L, L] bool the replaced forward built once per model forward (under autograd kept "
        "until the backward). `additive copy`: SDPA turns a bool mask into an [L, L] float mask of the query's "
        "dtype (`aten.where`, seen on CPU in torch 2.13) on every call, bf16 here. `scores`: heads x L^2 bf16, "
        "what SDPA's math kernel materialises when it serves a masked call. "
        "Chunked keys instead hold one group's keys at a time; keys of a group that are not one contiguous run "
        "are gathered (copied), and under autograd those copies are kept for backward (last column, bf16, "
        "K and V, per layer; with `gradient_checkpointing` only the block being recomputed holds them).",
        "",
        "| mask | L | dense mask | additive copy per call | scores (math kernel) | groups "
        "| widest group's keys (tokens) | gathered K/V kept for backward |",
        "|---|---|---|---|---|---|---|---|",
        *real_size_rows(),
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
