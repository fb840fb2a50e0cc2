"""Memory soak: stream many latent frames through a tiny causal DiT under a `window` cache policy and record the
process RSS and the time per chunk as the video grows; a window policy must keep both flat."""
from __future__ import annotations

import statistics
import time

import torch

from benchmarks.perf.memory import rss_bytes

MIB = 1 << 20


def run_soak(latent_frames: int = 5000, chunk_frames: int = 2, window_frames: int = 6, latent_hw=(4, 4),
             max_growth_mib: float = 8.0, positions: str = "cache_relative") -> dict:
    """-> {"rows": [...], "growth_mib", "flat", ...}. RSS is sampled after every chunk; growth is measured from the
    end of the first tenth of the chunks (caches and allocator pools warmed up) to the end. `positions`
    'absolute' stops at the RoPE table (1024 frames for the tiny preset); 'cache_relative' has no ceiling."""
    from salt_core.config import dit_preset
    from salt_core.dit import WanDiT
    from salt_core.kv_cache import CachePolicy
    from salt_core.sampling import stream_ar
    from salt_core.schedules import StepGrid

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = WanDiT(dit_preset("tiny")).eval()
    ctx = torch.randn(1, 8, model.config.text_dim)
    total = latent_frames // chunk_frames
    rss, seconds = [], []
    t = time.perf_counter()
    policy = CachePolicy("window", window_frames=window_frames, positions=positions)
    with torch.inference_mode():
        for chunk in stream_ar(model, ctx, latent_frames=latent_frames, latent_hw=latent_hw, chunk_frames=chunk_frames,
                               grid=StepGrid.uniform(4, 5.0), policy=policy):
            assert torch.isfinite(chunk.latents).all(), f"chunk {chunk.index} is not finite"
            now = time.perf_counter()
            seconds.append(now - t)
            t = now
            rss.append(rss_bytes())
    warm = max(1, total // 10)
    marks = sorted({warm - 1, total // 4 - 1, total // 2 - 1, 3 * total // 4 - 1, total - 1})  # chunk indices
    rows = [{"chunk": i + 1, "latent_frames": (i + 1) * chunk_frames, "rss_mib": rss[i] / MIB,
             "ms_per_chunk": 1000 * statistics.median(seconds[max(0, i - warm // 2): i + 1])} for i in marks]
    growth = (max(rss[warm:]) - rss[warm - 1]) / MIB
    first, last = (statistics.median(seconds[warm:2 * warm]), statistics.median(seconds[-warm:]))
    return {"rows": rows, "growth_mib": growth, "flat": growth < max_growth_mib, "max_growth_mib": max_growth_mib,
            "time_ratio": last / first, "chunks": total, "latent_frames": total * chunk_frames,
            "chunk_frames": chunk_frames, "window_frames": window_frames, "latent_hw": latent_hw,
            "positions": positions}


def soak_table(r: dict) -> list[str]:
    lines = [f"{r['latent_frames']} latent frames ({r['chunks']} chunks of {r['chunk_frames']}, latent "
             f"{r['latent_hw'][0]}x{r['latent_hw'][1]}) through `WanDiT(dit_preset('tiny'))` with "
             f"`CachePolicy('window', window_frames={r['window_frames']}, positions='{r['positions']}')`, 4 steps "
             "per chunk, one thread.", "",
             "| after chunk | latent frames | RSS (MiB) | ms per chunk (median of the chunks before) |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {x['chunk']} | {x['latent_frames']} | {x['rss_mib']:.1f} | {x['ms_per_chunk']:.1f} |"
              for x in r["rows"]]
    lines += ["", f"RSS growth after the first tenth of the chunks: **{r['growth_mib']:+.2f} MiB** (limit "
              f"{r['max_growth_mib']:.0f} MiB): {'flat' if r['flat'] else 'NOT flat'}; time per chunk, last tenth / "
              f"second tenth: {r['time_ratio']:.2f}."]
    return lines


def absolute_ceiling(latent_frames: int = 5000, chunk_frames: int = 2, window_frames: int = 6,
                     latent_hw=(4, 4)) -> dict:
    """The same stream with positions 'absolute' (CachePolicy's default): how many chunks are made before the RoPE
    table's ceiling stops it (a limit known before the first chunk)."""
    from salt_core.config import dit_preset
    from salt_core.dit import WanDiT
    from salt_core.kv_cache import CachePolicy
    from salt_core.sampling import stream_ar
    from salt_core.schedules import StepGrid

    torch.manual_seed(0)
    model = WanDiT(dit_preset("tiny")).eval()
    made, error = 0, ""
    with torch.inference_mode():
        try:
            for _ in stream_ar(model, torch.randn(1, 8, model.config.text_dim), latent_frames=latent_frames,
                               latent_hw=latent_hw, chunk_frames=chunk_frames, grid=StepGrid.uniform(4, 5.0),
                               policy=CachePolicy("window", window_frames=window_frames)):
                made += 1
        except ValueError as e:
            error = str(e)
    return {"chunks_made": made, "chunks_asked": latent_frames // chunk_frames, "error": error}
