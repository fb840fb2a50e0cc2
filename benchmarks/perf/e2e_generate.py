"""End to end: `python -m salt_core generate` on the default model, as a user runs it.

Real-time factor (RTF) = seconds of computer time per second of generated video (< 1: faster than real
time). The default model is the embedded default when bundled, else the tiny random stand-in with the
`tiny` VAE preset (same architecture sizes as the embedded default, so the speed is the same).

Each configuration runs `--repeats` times as a fresh process, configurations interleaved run by run;
medians are reported. Two figures per run: the CLI's own "generate+decode+encode" time (the work, after
the model is loaded) and the whole command's wall time (Python start, `import torch`, model load too).
A second table splits the work into its phases (DiT sampling, VAE decode, MP4 encode) in one process.
`--baseline DIR` also runs the CLI from another checkout (e.g. the commit before the optimisations).

    python benchmarks/perf/e2e_generate.py [--threads 1,2] [--repeats 5] [--baseline DIR]
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PROMPT = "a red ball bouncing on a blue background"
DEFAULT_OUT = ROOT / "benchmarks/results/e2e_generate.md"
BASELINE_IS = "the checkout before the optimisations"
LINE = re.compile(r"wrote .*?: (\d+) frames .*?\(([\d.]+) s of video\).*?generate\+decode\+encode ([\d.]+) s")


def run_cli(checkout: Path, threads: int, out: str, extra: list[str], passive: bool = False) -> dict:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    cmd = [sys.executable, "-m", "salt_core", "generate", "--prompt", PROMPT, "--out", out, "--threads", str(threads), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    m = LINE.search(proc.stdout)
    if m is None:
        raise SystemExit(f"unexpected CLI output: {proc.stdout!r}")
    frames, video_s, work_s = int(m.group(1)), float(m.group(2)), float(m.group(3))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return dict(frames=frames, video_s=video_s, work_s=work_s, wall_s=wall, cpu_s=cpu)


def phases(threads: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall s, cpu s) of each phase of the same generation, in this process."""
    import torch

    from salt_core.pipeline import decode_stream, default_frames, encode_prompt, load_salt_model, stream_latents
    from salt_core.video_io import write_mp4

    torch.set_num_threads(threads)
    model = load_salt_model(None)
    context, _ = encode_prompt(model, PROMPT)
    frames = default_frames(model, 4.0, 16.0)
    times: dict[str, list[tuple[float, float]]] = {"DiT sampling (latents)": [], "VAE streaming decode": [],
                                                   "MP4 encode (wall includes waiting on ffmpeg)": []}

    def clock(fn):
        c0, w0 = time.process_time(), time.perf_counter()
        r = fn()
        return r, (time.perf_counter() - w0, time.process_time() - c0)

    with torch.inference_mode(), tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats + 1):
            chunks, t_dit = clock(lambda: [c.latents for c in stream_latents(model, context, width=64, height=64,
                                                                               frames=frames)])
            pixels, t_vae = clock(lambda: list(decode_stream(model, model.vae, chunks)))
            _, t_enc = clock(lambda: write_mp4(f"{tmp}/p.mp4", iter(pixels), fps=16.0))
            if i:  # the first round warms up
                for k, t in zip(times, (t_dit, t_vae, t_enc)):
                    times[k].append(t)
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--passive", action="store_true",
                    help="also run each multi-thread configuration with OMP_WAIT_POLICY=PASSIVE")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--baseline", default=None, help="another checkout whose CLI is run too (before/after)")
    ap.add_argument("--baseline-is", default=BASELINE_IS,
                    help="what the baseline checkout is, for the table's header")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    a = ap.parse_args()
    import torch

    from benchmarks.machine import describe
    from benchmarks.perf.timing import env_prefix

    threads = [int(t) for t in a.threads.split(",")]
    checkouts = {"ours": ROOT}
    if a.baseline:
        checkouts["before"] = Path(a.baseline).resolve()
    configs = [(n, False) for n in threads] + ([(n, True) for n in threads if n > 1] if a.passive else [])
    runs: dict[tuple[str, int, bool], list[dict]] = {(c, n, p): [] for c in checkouts for n, p in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.repeats + 1):
            for (c, n, p) in runs:
                res = run_cli(checkouts[c], n, f"{tmp}/{c}_{n}.mp4", [], passive=p)
                if r:  # the first round warms the file cache
                    runs[(c, n, p)].append(res)
                print(c, n, p, res, file=sys.stderr, flush=True)
    split = {1: phases(1, a.repeats)}  # 1 thread: the split, undisturbed by OpenMP waits
    torch.set_num_threads(threads[0])

    def med(xs, key):
        return statistics.median(x[key] for x in xs)

    any_run = runs[("ours", threads[0], False)][0]
    cmd = env_prefix() + f"python benchmarks/perf/e2e_generate.py --threads {a.threads} --repeats {a.repeats}"
    if a.passive:
        cmd += " --passive"
    if a.baseline:
        cmd += " --baseline DIR"
        if a.baseline_is != BASELINE_IS:
            cmd += f" --baseline-is \"{a.baseline_is}\""
    if Path(a.out).resolve() != DEFAULT_OUT.resolve():
        cmd += f" --out {os.path.relpath(Path(a.out).resolve(), ROOT)}"
    lines = [
        "# End to end: `python -m salt_core generate` real-time factor on CPU",
        "",
        f"Command: `{cmd}`" + (f" (DIR = {a.baseline_is})" if a.baseline else ""),
        "",
        f"Machine: {describe()}",
        "",
        f"`python -m salt_core generate --prompt \"{PROMPT}\" --out X.mp4 --threads N` with the default model "
        f"(64×64, {any_run['frames']} frames = {any_run['video_s']:.2f} s of video at 16 fps, 4 steps, chunks of 3 "
        "latent frames, the default's VAE). Each row: median over "
        f"{a.repeats} fresh processes (configurations interleaved run by run). RTF = seconds per second of video. "
        "\"work\" = the CLI's generate+decode+encode time (model loaded); \"whole command\" also counts Python "
        "start, `import torch` and model construction; CPU s = user+sys of the process and its ffmpeg child.",
        "",
        "| code | threads | work s | RTF (work) | whole command s | RTF (whole command) | CPU s (whole command) |",
        "|---|---|---|---|---|---|---|",
    ]
    for (c, n, p), xs in runs.items():
        v = med(xs, "video_s")
        label = f"{n}" + (" (OMP_WAIT_POLICY=PASSIVE)" if p else "")
        lines.append(f"| {c} | {label} | {med(xs, 'work_s'):.2f} | {med(xs, 'work_s') / v:.3f} | {med(xs, 'wall_s'):.2f} | "
                     f"{med(xs, 'wall_s') / v:.2f} | {med(xs, 'cpu_s'):.2f} |")
    if a.baseline:
        lines.append("")
        for n, p in configs:
            b, o = runs[("before", n, p)], runs[("ours", n, p)]
            ratio = statistics.median(x["work_s"] / y["work_s"] for x, y in zip(o, b))
            lines.append(f"Work time ours/before with {n} thread(s){' (PASSIVE)' if p else ''}: {ratio:.3f} "
                         "(median of paired runs).")
    lines += [
        "",
        "## Where the time goes (one process, model loaded; median of "
        f"{a.repeats} rounds)",
        "",
        "| phase (1 thread) | wall s | CPU s | share of CPU |",
        "|---|---|---|---|",
    ]
    total = sum(c for _, c in split[1].values())
    for k, (w, c) in split[1].items():
        lines.append(f"| {k} | {w:.3f} | {c:.3f} | {100 * c / total:.0f}% |")
    lines.append("")
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
