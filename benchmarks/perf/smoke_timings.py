"""How long the tiny things the unit tests run take: rendering a synthetic-world clip, and every trainer
command of the tiny pipeline (tests/_tiny_pipeline.py). The tests used to assert limits on these
(`render` of a 33-frame 64×64 clip under 0.1 s; every command under a minute); the limits are reported here
next to the measured times instead, so the tests assert only behaviour. 1 torch thread.

    python benchmarks/perf/smoke_timings.py [--rounds 3] [--out benchmarks/results/smoke_timings.md]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the tiny pipeline the trainer tests run

from benchmarks.machine import describe  # noqa: E402
from benchmarks.perf.timing import Samples, env_prefix, iqr, timed  # noqa: E402

RENDER_LIMIT_S = 0.1  # what tests/test_world.py asserted (fastest of 5 renders of 33 frames at 64x64)
COMMAND_LIMIT_S = 60.0  # what tests/test_training_commands.py asserted per command
RENDER_CASES = [(33, 64, 64, 1), (33, 64, 64, 2), (81, 64, 64, 2), (33, 128, 128, 2)]  # frames, H, W, objects


def render_times(repeats: int) -> list[tuple[str, Samples]]:
    from training.world import render, sample_scene

    rows = []
    for frames, h, w, objects in RENDER_CASES:
        scene = sample_scene(5, objects=objects)
        render(scene, frames, h, w)  # warm-up
        s = Samples()
        for _ in range(repeats):
            wall, cpu = timed(lambda: render(scene, frames, h, w))
            s.wall.append(wall)
            s.cpu.append(cpu)
        rows.append((f"{frames} frames, {h}×{w}, {objects} object{'s' if objects > 1 else ''}", s))
    return rows


def pipeline_times(rounds: int) -> dict[str, Samples]:
    """Each step of the tiny pipeline, `rounds` whole pipelines, each in a fresh folder."""
    from _tiny_pipeline import run_step, steps

    out: dict[str, Samples] = {}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="salt_smoke_") as root:
            for step in steps(root):
                wall, cpu = timed(lambda: run_step(*step))
                s = out.setdefault(step[0], Samples())
                s.wall.append(wall)
                s.cpu.append(cpu)
    return out


def fmt(s: Samples, unit: float = 1.0, digits: int = 1) -> str:
    lo, hi = iqr(s.wall)
    return f"{s.wall_median * unit:.{digits}f} ({lo * unit:.{digits}f}–{hi * unit:.{digits}f}) | " \
           f"{s.cpu_median * unit:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="whole tiny pipelines to time")
    ap.add_argument("--render-repeats", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/smoke_timings.md"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    renders = render_times(a.render_repeats)
    commands = pipeline_times(a.rounds)

    lines = [
        "# Smoke timings: world rendering and the tiny trainer pipeline",
        "",
        f"Command: `{env_prefix()}python benchmarks/perf/smoke_timings.py --rounds {a.rounds} "
        f"--render-repeats {a.render_repeats}`",
        "",
        f"Machine: {describe()}",
        "",
        "Limits: what the unit tests asserted before these timings moved here; the tests now check behaviour",
        "only. Wall time: median (interquartile range); CPU: median process CPU time. 1 torch thread.",
        "",
        f"## `training.world.render` ({a.render_repeats} renders per case after one warm-up, milliseconds)",
        "",
        "| clip | wall ms (IQR) | CPU ms | fastest wall ms | old test limit |",
        "|---|---|---|---|---|",
    ]
    for name, s in renders:
        limit = f"{RENDER_LIMIT_S * 1000:.0f} ms (fastest of 5): {'met' if min(s.wall) < RENDER_LIMIT_S else 'MISSED'}" \
            if name.startswith("33 frames, 64×64, 2") else "—"
        lines.append(f"| {name} | {fmt(s, 1000)} | {min(s.wall) * 1000:.1f} | {limit} |")
    lines += [
        "",
        f"## Trainer commands of the tiny pipeline ({a.rounds} whole pipelines, seconds, in-process "
        "`python -m training` calls)",
        "",
        "Each row is one command on its example config shrunk by `--set` (see `tests/_tiny_pipeline.py`); the",
        "first command of a round also pays one-time imports and lazy initialisation of the process.",
        "",
        "| step | wall s (IQR) | CPU s | slowest wall s | old test limit |",
        "|---|---|---|---|---|",
    ]
    for name, s in commands.items():
        ok = "met" if max(s.wall) < COMMAND_LIMIT_S else "MISSED"
        lines.append(f"| {name} | {fmt(s, digits=2)} | {max(s.wall):.2f} | {COMMAND_LIMIT_S:.0f} s: {ok} |")
    total = [sum(s.wall[i] for s in commands.values()) for i in range(a.rounds)]
    lines += ["", f"Whole pipeline: median {statistics.median(total):.1f} s wall per round.", ""]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
