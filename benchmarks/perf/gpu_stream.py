"""Streaming AR generation speed and memory: FPS, first-chunk latency and peak device memory of the causal Wan 2.1
1.3B architecture, per attention backend, weight storage (bf16 / our fp8 Linear), torch.compile off / on, KV
policy (full / window) and block swap.

    python benchmarks/perf/gpu_stream.py --device cuda          # 1.3B at 832x480, 21 latent frames: the real case
    python benchmarks/perf/gpu_stream.py --device cpu           # a reduced size that a CPU runs in minutes

* Random weights (built on the device; nothing is downloaded), a random umT5-shaped prompt, chunks of 3 latent
  frames, the 4-step Self Forcing grid (1000, 750, 500, 250, shift 5), renoise; each chunk also has its context
  pass (5 forwards per chunk). FPS = video frames (4·latent − 3) / wall time of the whole stream.
* First-chunk latency: from the start of the stream (prompt K/V included) to the first finished chunk.
* Peak device memory: `torch.cuda.max_memory_allocated` over a measured run (CUDA only).
* "first run": the warm-up generation, compile included when compile is on; then `--repeats` measured runs
  (medians reported). Times are synchronised with the device.
* Backends that are not importable, or that fall back to SDPA (CPU tensors, dtype), are listed with the reason
  instead of being measured twice.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe  # noqa: E402
from benchmarks.perf.timing import env_prefix  # noqa: E402
from salt_core.config import dit_preset  # noqa: E402
from salt_core.dit import WanDiT  # noqa: E402
from salt_core.dit.attention import available_backends  # noqa: E402
from salt_core.dit.offload import enable_block_swap  # noqa: E402
from salt_core.kv_cache import CachePolicy  # noqa: E402
from salt_core.quant import quantize_linears_  # noqa: E402
from salt_core.sampling import ChunkLayout, Walk, stream_ar  # noqa: E402
from salt_core.schedules import StepGrid  # noqa: E402

GRID = StepGrid.from_timesteps([1000.0, 750.0, 500.0, 250.0], 5.0)
POLICIES = {"full": lambda frames: CachePolicy("full", max_frames=frames),
            "window": lambda frames: CachePolicy("window", window_frames=6)}
SIZES = {  # device type -> (layers, width, height, latent frames, swap settings)
    "cuda": (None, 832, 480, 21, "15,1"),
    "cpu": (2, 160, 96, 9, "1"),
}


@dataclass(frozen=True)
class Case:
    backend: str
    weights: str  # bf16 | fp8
    compile: bool
    policy: str
    blocks_on_device: int = 0  # 0 = every block resident


@dataclass
class Result:
    case: Case
    ran_as: str = ""
    first_run_s: float = float("nan")
    first_chunk_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    peak_bytes: int = 0
    note: str = ""


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def generate(model, ctx, layout, policy, device) -> tuple[float, float]:
    """One whole stream -> (first-chunk latency, total) seconds."""
    sync(device)
    t0 = time.perf_counter()
    first = None
    for chunk in stream_ar(model, ctx, layout=layout, walk=Walk(GRID), policy=policy, seed=0):
        if first is None:
            sync(device)
            first = time.perf_counter() - t0
    sync(device)
    return first, time.perf_counter() - t0


def build(config, device: torch.device, weights: str) -> WanDiT:
    torch.manual_seed(0)
    with torch.device(device):
        model = WanDiT(config).to(torch.bfloat16).eval()
    if weights == "fp8":
        quantize_linears_(model)
    return model


def run_case(model: WanDiT, case: Case, ctx, layout: ChunkLayout, device: torch.device, repeats: int) -> Result:
    res = Result(case)
    model.set_attention_backend(case.backend)
    policy = POLICIES[case.policy](layout.latent_frames)
    if case.blocks_on_device and enable_block_swap(model, case.blocks_on_device, device) is None:
        res.note = "every block is resident at this depth: no swap"
    try:
        t0 = time.perf_counter()
        generate(model, ctx, layout, policy, device)
        res.first_run_s = time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(repeats):
            first, total = generate(model, ctx, layout, policy, device)
            res.first_chunk_s.append(first)
            res.total_s.append(total)
        if device.type == "cuda":
            res.peak_bytes = torch.cuda.max_memory_allocated(device)
    except Exception as e:  # a backend or compile failure is a finding, not the end of the table
        res.note = f"failed: {type(e).__name__}: {(str(e).splitlines() or [''])[0][:160]}"
    finally:
        if case.blocks_on_device:
            enable_block_swap(model, 0, device)  # every block back on the device
    res.ran_as = model.attention.active
    reasons = sorted(model.attention._reported)
    if reasons:
        res.note = "; ".join(filter(None, [res.note, "fell back to sdpa: " + "; ".join(reasons)]))
    return res


def cases(a, usable: list[str]) -> tuple[list[Case], list[str]]:
    """The matrix, and a line for each requested backend that is not measured (not importable here)."""
    skipped, out = [], []
    backends = []
    for b in a.backends.split(","):
        if b in usable:
            backends.append(b)
        else:
            skipped.append(f"`{b}`: not importable in this environment (would run as sdpa); not measured")
    for weights in a.weights.split(","):
        for compiled in [c == "on" for c in a.compile.split(",")]:
            for backend in backends:
                for policy in a.policies.split(","):
                    out.append(Case(backend, weights, compiled, policy))
    base = Case(backends[0] if backends else "sdpa", a.weights.split(",")[0], False, a.policies.split(",")[0])
    out += [replace(base, blocks_on_device=int(n)) for n in a.swap.split(",") if n and int(n)]
    return out, skipped


def table(results: list[Result], frames: int) -> list[str]:
    lines = ["| attention (ran as) | weights | compile | KV policy | blocks on device | first run s | "
             "first chunk s | total s | FPS | peak memory GiB | notes |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.case
        med = (lambda xs: statistics.median(xs) if xs else float("nan"))
        total = med(r.total_s)
        peak = f"{r.peak_bytes / 2**30:.2f}" if r.peak_bytes else "n/a"
        lines.append(f"| {c.backend} ({r.ran_as}) | {c.weights} | {'on' if c.compile else 'off'} | {c.policy} | "
                     f"{c.blocks_on_device or 'all'} | {r.first_run_s:.2f} | {med(r.first_chunk_s):.3f} | "
                     f"{total:.3f} | {frames / total:.2f} | {peak} | {r.note} |")
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--preset", default="wan2.1-t2v-1.3b")
    ap.add_argument("--layers", type=int, help="transformer blocks (default: the preset's on CUDA, 2 on CPU)")
    ap.add_argument("--width", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--latent-frames", type=int, help="a multiple of 3 (chunks of 3)")
    ap.add_argument("--backends", default="sdpa,flash,sage")
    ap.add_argument("--weights", default="bf16,fp8")
    ap.add_argument("--compile", default="off,on")
    ap.add_argument("--policies", default="full,window")
    ap.add_argument("--swap", help="blocks_on_device values measured on the first case (default: 15,1 on CUDA, 1 on "
                                   "CPU; 0 = none)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    ap.add_argument("--out", help="markdown file (default benchmarks/results/gpu_stream_<device>.md)")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA GPU is available here")
    torch.set_num_threads(a.threads)
    layers, width, height, latent, swap = SIZES["cuda" if device.type == "cuda" else "cpu"]
    a.swap = a.swap if a.swap is not None else swap
    config = dit_preset(a.preset)
    config = replace(config, num_layers=a.layers or layers or config.num_layers)
    width, height, latent = a.width or width, a.height or height, a.latent_frames or latent
    layout = ChunkLayout(latent, (height // 8, width // 8), 3)
    frames = 4 * latent - 3
    g = torch.Generator().manual_seed(1)
    ctx = (0.1 * torch.randn(1, config.text_len, config.text_dim, generator=g)).to(device)
    usable = available_backends()
    todo, skipped = cases(a, usable)

    results, models = [], {}
    for case in todo:  # eager cases first: compiling changes a model in place
        key = (case.weights, case.compile)
        if (case.weights, False) not in models:
            models[(case.weights, False)] = build(config, device, case.weights)
        if key not in models:  # a compiled copy of the eager model
            models[key] = copy.deepcopy(models[(case.weights, False)])
            for block in models[key].blocks:
                block.compile()
        results.append(run_case(models[key], case, ctx, layout, device, a.repeats))
        print(table(results[-1:], frames)[-1], file=sys.stderr, flush=True)

    swap_line = ("Block swap rows stream the other blocks from pinned CPU memory (a side CUDA stream, one block "
                 "ahead)." if device.type == "cuda" else
                 "Block swap rows copy CPU to CPU here (the streaming logic runs; it saves no memory on a CPU).")
    cmd = env_prefix() + "python benchmarks/perf/gpu_stream.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"# Streaming AR generation: {config.num_layers}-block {a.preset} architecture on {device.type}", "",
             f"Command: `{cmd.strip()}`", "", f"Machine: {describe()}", "",
             f"{width}x{height}, {latent} latent frames = {frames} video frames, chunks of 3, 4 steps + context pass, "
             f"random weights, batch 1; {a.repeats} measured runs after a warm-up (medians). FPS = {frames} frames / "
             f"total. {swap_line} Window policy: the last 6 latent frames (full keeps all of them).", ""]
    lines += table(results, frames)
    if skipped:
        lines += ["", "Not measured:", *[f"* {s}" for s in skipped]]
    lines.append("")
    out = Path(a.out or ROOT / f"benchmarks/results/gpu_stream_{device.type}.md")
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
