"""Our DiT forward vs diffusers' WanTransformer3DModel: same config, same weights, CPU fp32.

Both models are timed in the same process, interleaved, with torch.utils.benchmark; the table gives
the median time of each and the ratio ours / diffusers (< 1 means ours is faster).

    python benchmarks/perf/dit_vs_diffusers.py [--threads 2] [--out benchmarks/results/dit_vs_diffusers.md]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.utils.benchmark as tb

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe  # noqa: E402
from salt_core.checkpoints.keys import official_to_diffusers  # noqa: E402
from salt_core.config import DiTConfig  # noqa: E402
from salt_core.dit import WanDiT  # noqa: E402

SIZES = {
    "tiny (dim 64, 2 layers, head 32)": DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, text_len=16),
    "small (dim 512, 4 layers, head 128)": DiTConfig(dim=512, ffn_dim=1536, num_heads=4, num_layers=4, text_dim=256, text_len=64),
}
LATENTS = {  # [T, H, W] latent sizes -> tokens = T*H*W/4
    "256 tok": (4, 16, 16),
    "1560 tok (one 832×480 frame)": (1, 60, 104),
    "2048 tok": (8, 32, 32),
}


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
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-run-time", type=float, default=2.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/dit_vs_diffusers.md"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = []
    for size_name, cfg in SIZES.items():
        torch.manual_seed(0)
        ours = WanDiT(cfg).eval()
        theirs = diffusers_model(cfg)
        theirs.load_state_dict(official_to_diffusers(ours.state_dict()), strict=True)
        for lat_name, (T, H, W) in LATENTS.items():
            x = torch.randn(1, cfg.in_dim, T, H, W)
            t = torch.tensor([500.0])
            ctx = torch.randn(1, cfg.text_len, cfg.text_dim)  # already text_len long: no padding either side
            with torch.inference_mode():
                err = ((ours(x, t, ctx) - theirs(x, t, ctx, return_dict=False)[0]).abs().max()).item()
            timers = {
                "ours": tb.Timer("f(x, t, ctx)", globals=dict(f=ours, x=x, t=t, ctx=ctx), num_threads=a.threads),
                "diffusers": tb.Timer("f(x, t, ctx, return_dict=False)", globals=dict(f=theirs, x=x, t=t, ctx=ctx),
                                      num_threads=a.threads),
            }
            med = {k: [] for k in timers}
            with torch.inference_mode():
                for _ in range(3):  # interleave to share any drift in machine load
                    for k, timer in timers.items():
                        med[k].append(timer.blocked_autorange(min_run_time=a.min_run_time / 3).median)
            ours_s, theirs_s = sorted(med["ours"])[1], sorted(med["diffusers"])[1]
            rows.append((size_name, lat_name, ours_s, theirs_s, err))
            print(rows[-1], file=sys.stderr)
    lines = [
        "# DiT forward: ours vs diffusers `WanTransformer3DModel` (CPU, fp32, same weights)",
        "",
        f"Command: `python benchmarks/perf/dit_vs_diffusers.py --threads {a.threads}`",
        "",
        f"Machine: {describe()}",
        "",
        "Median of three interleaved `blocked_autorange` runs per model; batch 1; context already `text_len` long.",
        "",
        "| model | latent | ours ms | diffusers ms | ratio ours/diffusers | max abs diff |",
        "|---|---|---|---|---|---|",
    ]
    for size_name, lat_name, o, d, err in rows:
        lines.append(f"| {size_name} | {lat_name} | {o * 1e3:.2f} | {d * 1e3:.2f} | {o / d:.3f} | {err:.1e} |")
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
