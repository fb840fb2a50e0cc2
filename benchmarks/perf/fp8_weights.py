"""8-bit weights: DiT memory per storage dtype, fp8 output distance from fp32, and the cost of the load-time
NaN / inf check.

    python benchmarks/perf/fp8_weights.py [--rounds 5] [--out benchmarks/results/fp8.md]

* Memory: parameters counted on the meta device (nothing allocated) for the 1.3B and 14B presets; the fp8
  row is what `load_dit` holds for a ComfyUI fp8 file: block Linear weights 1 byte (+ one fp32 scale each),
  every other tensor in the bf16 compute dtype. The rule is checked against a real loaded reduced model.
* Distance: forward outputs `model(x, t, ctx)` of fp8 copies (written in ComfyUI's layout, loaded through
  `load_dit`, computing in fp32 so the table shows the weight rounding alone, plus one bf16-compute row)
  against the fp32 original; randomly initialised weights (no trained checkpoint is available here).
* Finite check: `load_dit` of a reduced 1536-wide model file with the per-tensor check and with it
  switched off, interleaved rounds, median of paired ratios.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe  # noqa: E402
from benchmarks.perf.timing import env_prefix, interleaved, paired_ratio  # noqa: E402
from salt_core.checkpoints import load_dit  # noqa: E402
from salt_core.checkpoints import storage  # noqa: E402
from salt_core.config import DIT_PRESETS, DiTConfig  # noqa: E402
from salt_core.dit import WanDiT  # noqa: E402
from salt_core.quant import block_linears, comfyui_fp8_state_dict  # noqa: E402

GIB = 1024 ** 3
REDUCED = DiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=2)  # the 1.3B's width, 2 of its 30 blocks
SUMMARY: list[str] = []  # one line per finding, filled as the tables are made
DISTANCE_CASES = {"tiny (dim 64, 2 layers)": DIT_PRESETS["tiny"], "1536-wide, 2 layers": REDUCED}


def storage_bytes(model: torch.nn.Module, weights: str) -> int:
    """Bytes of a model's tensors stored as `weights` (fp32 / bf16 / fp16, or fp8 as load_dit keeps it)."""
    quantised = {f"{n}.weight" for n, _ in block_linears(model)}
    total = 0
    for name, p in model.named_parameters():
        if weights == "fp8" and name in quantised:
            total += p.numel() + 4  # 1 byte per weight + its fp32 scale_weight
        else:
            total += p.numel() * {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 2}[weights]
    return total


def memory_rows() -> tuple[list[str], str]:
    rows = []
    for preset in ("wan2.1-t2v-1.3b", "wan2.1-t2v-14b"):
        with torch.device("meta"):
            model = WanDiT(DIT_PRESETS[preset])
        params = sum(p.numel() for p in model.parameters())
        in_blocks = sum(m.weight.numel() for _, m in block_linears(model))
        biggest = max(m.weight.numel() for _, m in block_linears(model))
        cells = " | ".join(f"{storage_bytes(model, w) / GIB:.2f}" for w in ("fp32", "bf16", "fp16", "fp8"))
        rows.append(f"| {preset} | {params:,} | {in_blocks / params:.1%} | {cells} | {biggest * 2 / 2**20:.1f} |")
        SUMMARY.append(f"{preset}: fp8 storage is {storage_bytes(model, 'fp8') / storage_bytes(model, 'bf16'):.1%} "
                       f"of bf16 and {storage_bytes(model, 'fp8') / storage_bytes(model, 'fp32'):.1%} of fp32.")
    # The rule against a real model: a reduced model written as a scaled-fp8 file and loaded.
    torch.manual_seed(0)
    model = WanDiT(REDUCED).eval()
    with tempfile.TemporaryDirectory() as d:
        save_file(comfyui_fp8_state_dict(model), f"{d}/m.safetensors")
        loaded, _ = load_dit(f"{d}/m.safetensors", compute_dtype=torch.bfloat16)
    real = sum(t.numel() * t.element_size() for t in loaded.state_dict().values())
    check = (f"Check on a real model (1536-wide, 2 layers, loaded from a scaled-fp8 file with compute bf16): "
             f"{real:,} bytes held, the rule gives {storage_bytes(model, 'fp8'):,}.")
    return rows, check


def _inputs(config: DiTConfig):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 16, 2, 16, 16, generator=g)  # 2 latent frames of 16x16: 128 tokens
    ctx = torch.randn(1, 32, config.text_dim, generator=g)
    return x, torch.tensor([700.0]), ctx


def _distance(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    a, b = a.float(), b.float()
    return ((a - b).abs().max() / b.abs().max()).item(), ((a - b).norm() / b.norm()).item()


def distance_rows() -> list[str]:
    rows = []
    variants = [("bf16 weights (reference point)", None, None, torch.float32),
                ("fp8 e4m3fn, plain", torch.float8_e4m3fn, False, torch.float32),
                ("fp8 e4m3fn, scaled", torch.float8_e4m3fn, True, torch.float32),
                ("fp8 e5m2, plain", torch.float8_e5m2, False, torch.float32),
                ("fp8 e5m2, scaled", torch.float8_e5m2, True, torch.float32),
                ("fp8 e4m3fn, scaled, bf16 compute", torch.float8_e4m3fn, True, torch.bfloat16)]
    for case, config in DISTANCE_CASES.items():
        torch.manual_seed(0)
        model = WanDiT(config).eval()
        x, t, ctx = _inputs(config)
        with torch.no_grad():
            want = model(x, t, ctx)
        with tempfile.TemporaryDirectory() as d:
            for label, dtype, scaled, compute in variants:
                path = f"{d}/m.safetensors"
                if dtype is None:
                    save_file({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, path)
                    loaded, _ = load_dit(path, dtype=torch.float32)
                else:
                    save_file(comfyui_fp8_state_dict(model, dtype, scaled=scaled), path)
                    loaded, _ = load_dit(path, compute_dtype=compute)
                with torch.no_grad():
                    got = loaded(x, t, ctx)
                peak, l2 = _distance(got, want)
                rows.append(f"| {case} | {label} | {peak:.2e} | {l2:.2e} |")
                if dtype is None:
                    bf16_l2 = l2
                elif compute == torch.float32:
                    SUMMARY.append(f"{case}, {label}: L2 distance {l2 / bf16_l2:.1f}x that of bf16 weights.")
                del loaded
    return rows


def check_rows(rounds: int) -> list[str]:
    rows = []
    torch.manual_seed(0)
    model = WanDiT(REDUCED)
    real_check = storage.has_nonfinite
    with tempfile.TemporaryDirectory() as d:
        for label, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            path = f"{d}/{label}.safetensors"
            save_file({k: v.detach().to(dtype) for k, v in model.state_dict().items()}, path)
            size = sum(v.numel() for v in model.state_dict().values()) * dtype.itemsize

            def with_check():
                storage.has_nonfinite = real_check
                load_dit(path)

            def without_check():
                storage.has_nonfinite = lambda t: False
                load_dit(path)

            try:
                s = interleaved({"with": with_check, "without": without_check}, rounds=rounds)
            finally:
                storage.has_nonfinite = real_check
            ratio = paired_ratio(s["with"], s["without"], "cpu")
            SUMMARY.append(f"the finite check adds {ratio - 1:.0%} to the CPU time of loading the {label} file "
                           "from the page cache (less when the load waits on a disk).")
            rows.append(f"| {label} ({size / 2**20:.0f} MiB) | {s['without'].cpu_median * 1e3:.0f} | "
                        f"{s['with'].cpu_median * 1e3:.0f} | {ratio:.3f} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/fp8.md"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    mem, mem_check = memory_rows()
    dist = distance_rows()
    checks = check_rows(a.rounds)
    lines = [
        "# 8-bit weights: memory, output distance, load-time finite check", "",
        f"Command: `{env_prefix()}python benchmarks/perf/fp8_weights.py --rounds {a.rounds}`", "",
        f"Machine: {describe()}", "",
        "## DiT memory by weight storage (GiB)", "",
        "Parameters counted on the meta device. fp8 = what `load_dit(file)` keeps for a ComfyUI fp8 / scaled-fp8 "
        "file: the block Linear weights 1 byte each (+ a 4-byte scale), every other tensor (embeddings, head, norms, "
        "modulation, biases) in the bf16 compute dtype. During a call one Linear weight at a time is cast to the "
        "compute dtype: the last column is the largest such transient (bf16).", "",
        "| model | parameters | in block Linear weights | fp32 | bf16 | fp16 | fp8 | largest per-call cast, MiB |",
        "|---|---|---|---|---|---|---|---|", *mem, "", mem_check, "",
        "## fp8 vs fp32: forward output distance", "",
        "`model(x, t, ctx)` with x: 1×16×2×16×16 (128 tokens), t = 700, 32 context tokens; randomly initialised "
        "weights (Wan's init), so these are indicative, not a trained model's numbers. Peak = max |Δ| / max |fp32|; "
        "L2 = ‖Δ‖ / ‖fp32‖. fp8 rows compute in fp32 unless said, so they show the weight rounding alone.", "",
        "| model | weights | peak rel. | L2 rel. |", "|---|---|---|---|", *dist, "",
        "## Cost of the NaN / inf check while loading", "",
        f"`load_dit` of a 1536-wide, 2-layer model file ({REDUCED.num_layers} of the 1.3B's 30 blocks, same tensor "
        f"shapes), with the per-tensor check and with it switched off; CPU ms = median process CPU time of a whole "
        f"load, ratio = median of {a.rounds} paired ratios (with / without). The 1.3B itself cannot be "
        "materialised for timing on this machine; per tensor the check is one reduction over data the load "
        "already reads and converts, so the ratio carries over.", "",
        "| file | load without check, CPU ms | with check, CPU ms | with / without |", "|---|---|---|---|",
        *checks, "",
        "## Summary", "", *(f"* {line}" for line in SUMMARY), "",
    ]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
