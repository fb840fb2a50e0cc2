"""Our DiT forward vs diffusers' WanTransformer3DModel: same config, same weights, CPU fp32.

Both models run in one process, interleaved call by call (see benchmarks/perf/timing.py); the ratio is
the median of per-round ratios ours / diffusers (< 1: ours is faster), on the wall clock and on the
process CPU clock. `--baseline DIR` adds a third model: salt_core from another checkout (e.g. the commit
before an optimisation, extracted with `git archive <commit> salt_core | tar -x -C DIR`).

    python benchmarks/perf/dit_vs_diffusers.py [--threads 1,2] [--baseline DIR] [--out benchmarks/results/dit_vs_diffusers.md]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe  # noqa: E402
from benchmarks.perf.timing import env_prefix, interleaved, paired_ratio  # noqa: E402
from salt_core.checkpoints.keys import official_to_diffusers  # noqa: E402
from salt_core.config import DiTConfig  # noqa: E402
from salt_core.dit import WanDiT  # noqa: E402

SIZES = {
    "tiny (dim 64, 2 layers, head 32)": DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, text_len=16),
    "small (dim 512, 4 layers, head 128)": DiTConfig(dim=512, ffn_dim=1536, num_heads=4, num_layers=4, text_dim=256, text_len=64),
    # One block of the real Wan 2.1 1.3B geometry (dim 1536, ffn 8960, 12 heads, umT5 context 512x4096).
    "wan 1.3B width (dim 1536, 1 layer, head 128)": DiTConfig(dim=1536, ffn_dim=8960, num_heads=12, num_layers=1),
}
LATENTS = {  # [T, H, W] latent sizes -> tokens = T*H*W/4
    "256 tok": (4, 16, 16),
    "1560 tok (one 832×480 frame)": (1, 60, 104),
    "2048 tok": (8, 32, 32),
}
SKIP = {("wan 1.3B width (dim 1536, 1 layer, head 128)", "2048 tok")}  # minutes per case on 2 cores; 1560 covers it


def diffusers_model(cfg: DiTConfig):
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim, out_channels=cfg.out_dim, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        eps=cfg.eps,
    ).eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved rounds per case (at least)")
    ap.add_argument("--min-seconds", type=float, default=2.0, help="keep adding rounds until ours ran this long")
    ap.add_argument("--big-rounds", type=int, default=7, help="rounds for the dim-1536 model (seconds per call)")
    ap.add_argument("--baseline", default=None, help="a checkout whose salt_core is timed too (before/after)")
    ap.add_argument("--sizes", default=None, help="comma-separated prefixes of SIZES to run (default: all)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/dit_vs_diffusers.md"))
    a = ap.parse_args()
    base = None
    if a.baseline:
        from benchmarks.perf.baseline import load_salt_core

        base = load_salt_core(a.baseline)
    threads = [int(t) for t in a.threads.split(",")]
    sizes = {k: v for k, v in SIZES.items() if a.sizes is None or any(k.startswith(p) for p in a.sizes.split(","))}
    rows = []
    for size_name, cfg in sizes.items():
        torch.manual_seed(0)
        ours = WanDiT(cfg).eval()
        theirs = diffusers_model(cfg)
        theirs.load_state_dict(official_to_diffusers(ours.state_dict()), strict=True)
        before = None
        if base is not None:
            before = base.dit.WanDiT(base.config.DiTConfig(**cfg.to_dict())).eval()
            before.load_state_dict(ours.state_dict())
        for lat_name, (T, H, W) in LATENTS.items():
            if (size_name, lat_name) in SKIP:
                continue
            x = torch.randn(1, cfg.in_dim, T, H, W)
            t = torch.tensor([500.0])
            ctx = torch.randn(1, cfg.text_len, cfg.text_dim)  # already text_len long: no padding either side
            fns = {"ours": lambda: ours(x, t, ctx), "diffusers": lambda: theirs(x, t, ctx, return_dict=False)[0]}
            if before is not None:
                fns["before"] = lambda: before(x, t, ctx)
            with torch.inference_mode():
                ref = fns["diffusers"]()
                err = ((fns["ours"]() - ref).abs().max() / ref.abs().max()).item()
                for n in threads:
                    torch.set_num_threads(n)
                    big = cfg.dim >= 1536
                    s = interleaved(fns, rounds=a.big_rounds if big else a.rounds, min_seconds=0 if big else a.min_seconds)
                    row = dict(size=size_name, lat=lat_name, threads=n, err=err, rounds=len(s["ours"].wall),
                               ours=s["ours"].wall_median, theirs=s["diffusers"].wall_median,
                               wall=paired_ratio(s["ours"], s["diffusers"], "wall"),
                               cpu=paired_ratio(s["ours"], s["diffusers"], "cpu"))
                    if before is not None:
                        row.update(before=s["before"].wall_median, vs_before=paired_ratio(s["ours"], s["before"], "wall"),
                                   vs_before_cpu=paired_ratio(s["ours"], s["before"], "cpu"))
                    rows.append(row)
                    print(row, file=sys.stderr, flush=True)
    torch.set_num_threads(threads[0])
    cmd = env_prefix() + (f"python benchmarks/perf/dit_vs_diffusers.py --threads {a.threads} --rounds {a.rounds} "
                          f"--min-seconds {a.min_seconds} --big-rounds {a.big_rounds}")
    if a.sizes:
        cmd += f" --sizes {a.sizes}"
    if a.baseline:
        cmd += " --baseline DIR"
    lines = [
        "# DiT forward: ours vs diffusers `WanTransformer3DModel` (CPU, fp32, same weights)",
        "",
        f"Command: `{cmd}`" + (" (DIR = salt_core of the commit before the optimisations)" if a.baseline else ""),
        "",
        f"Machine: {describe()}",
        "",
        "Batch 1, one forward (context already `text_len` long). Models interleaved call by call in one process; "
        "ms = median wall time; ratio = median of per-round ratios ours/diffusers (< 1: ours faster), on the wall "
        "clock and on process CPU time (with 1 thread the CPU figure is the least disturbed by other load on this "
        "shared machine). Max rel diff = max|ours − diffusers| / max|diffusers| (outputs match).",
        "",
    ]
    head = "| model | latent | threads | rounds | ours ms | diffusers ms | ratio wall | ratio CPU | max rel diff |"
    sep = "|---|---|---|---|---|---|---|---|---|"
    if base is not None:
        head += " before ms | ours/before wall | ours/before CPU |"
        sep += "---|---|---|"
    lines += [head, sep]
    for r in rows:
        line = (f"| {r['size']} | {r['lat']} | {r['threads']} | {r['rounds']} | {r['ours'] * 1e3:.1f} | "
                f"{r['theirs'] * 1e3:.1f} | {r['wall']:.3f} | {r['cpu']:.3f} | {r['err']:.1e} |")
        if base is not None:
            line += f" {r['before'] * 1e3:.1f} | {r['vs_before']:.3f} | {r['vs_before_cpu']:.3f} |"
        lines.append(line)
    worst = max(max(r["wall"], r["cpu"] if r["threads"] == 1 else 0) for r in rows)
    lines += ["", f"Worst ratio over all cases (wall, and CPU for 1 thread): {worst:.3f}.", ""]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
