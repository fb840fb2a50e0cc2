"""The slow reliability battery; writes benchmarks/reliability/RESULTS.md.

    python benchmarks/reliability/battery.py [--kills 20] [--soak-frames 5000] [--baseline DIR] [--only a,b]

Parts: `cases` (the bad-input catalogue, cases.py, run in a fresh process; with --baseline DIR also against the
code in DIR, e.g. `git archive <commit> | tar -x -C DIR`, for a before/after count), `kills` (SIGKILL at random
points of a tiny training run, then resume), `sigterm` (SIGTERM during MP4 writes), `disk` (a real full disk on
small tmpfs mounts; skipped where mounting is not allowed) and `soak` (5000 latent frames through a tiny causal
DiT with a window cache: flat RSS). The fast cases are the tests/test_reliability_*.py files.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe  # noqa: E402
from benchmarks.reliability.crash import (disk_table, kill_and_resume, kill_table, real_disk_full,  # noqa: E402
                                          sigterm_mp4, sigterm_table)
from benchmarks.reliability.soak import absolute_ceiling, run_soak, soak_table  # noqa: E402

PARTS = ("cases", "kills", "sigterm", "disk", "soak")


def run_cases(code_root: Path) -> list[dict]:
    """The catalogue in a fresh process whose salt_core / training / nodes come from `code_root`."""
    env = {**os.environ, "PYTHONPATH": str(code_root), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(HERE / "cases.py"), "--json"], env=env, cwd=str(code_root),
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"cases.py failed under {code_root}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cases_table(now: list[dict], before: list[dict] | None) -> list[str]:
    old = {(r["area"], r["name"]): r for r in before or []}
    head = "| area | case | now | what the user sees now |" + (" before |" if before else "")
    lines = [head, "|---|---|---|---|" + ("---|" if before else "")]
    for r in now:
        msg = (r["message"] or r["kind"]).replace("|", "/").replace("\n", " ")[:160]
        row = f"| {r['area']} | {r['name']} | {'clear' if r['clear'] else '**not clear**'} | `{msg}` |"
        if before:
            b = old.get((r["area"], r["name"]))
            said = (b["message"] or b["kind"]).replace("|", "/")[:90] if b else "(not run)"
            row += f" {'clear' if b and b['clear'] else 'not clear'}: {b['kind'] if b else ''} `{said}` |"
        lines.append(row)
    n, c = len(now), sum(r["clear"] for r in now)
    summary = f"**{c} of {n} cases give a clear error (or report) now**"
    if before:
        summary += f"; {sum(r['clear'] for r in before)} of {len(before)} did before"
    return lines + ["", summary + ". A case counts as clear when it ends in one line (ValueError / OSError, or for "
                    "`python -m training` exit status 2 and one `error:` line without a traceback) naming the key, "
                    "file or parameter, and leaves no new file behind."]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--steps", type=int, default=200, help="steps of the killed training run")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    p.add_argument("--soak-frames", type=int, default=5000)
    p.add_argument("--baseline", default=None, help="a tree of older code for the before column of the cases")
    p.add_argument("--baseline-commit", default="", help="the commit the --baseline tree was exported from")
    p.add_argument("--only", default=",".join(PARTS))
    p.add_argument("--out", default=str(HERE / "RESULTS.md"))
    a = p.parse_args()
    parts = a.only.split(",")
    command = "python benchmarks/reliability/battery.py " + " ".join(sys.argv[1:])
    doc = ["# Reliability battery", "", f"Command: `{command.strip()}`", "", f"Machine: {describe()}", "",
           "Fast cases: `PYTHONPATH=$PWD python -m pytest -q tests/test_reliability_*.py` (each asserts the message "
           "and that nothing was written or lost). This file holds the slow ones.", ""]
    verdicts: dict[str, bool] = {}
    t0 = time.time()

    def write() -> None:  # after every part, so a later failure keeps what was measured
        tail = ["## Verdict", "", "| part | passed |", "|---|---|"]
        tail += [f"| {k} | {'yes' if v else '**NO**'} |" for k, v in verdicts.items()]
        Path(a.out).write_text("\n".join(doc + tail + ["", f"Wall time {time.time() - t0:.0f} s."]) + "\n",
                               encoding="utf-8")

    checkpoint_bytes = 2_701_895  # the tiny teacher's, when the kills part does not measure it
    for part in (x for x in PARTS if x in parts):
        try:
            if part == "cases":
                now = run_cases(ROOT)
                before = run_cases(Path(a.baseline).resolve()) if a.baseline else None
                where = (f"Before: the code of commit {a.baseline_commit or '(unnamed)'} (`git archive "
                         f"{a.baseline_commit or '<commit>'} | tar -x -C DIR`), the same catalogue run against it.")
                doc += ["## Bad input: the catalogue", "", *([where, ""] if before else []),
                        *cases_table(now, before), ""]
                verdicts["cases"] = all(r["clear"] for r in now)
            elif part == "kills":
                r = kill_and_resume(a.kills, a.steps, a.seed)
                checkpoint_bytes = r["checkpoint_bytes"]
                doc += [f"## {r['kills']} SIGKILLs at random points of a training run, then resume", "",
                        f"Tiny teacher, {r['steps']} steps, a checkpoint ({r['checkpoint_bytes']} bytes) after every "
                        f"step, keep_last 3; kill points drawn with seed {r['seed']} from: inside a checkpoint write "
                        "(after a random byte count), just before / after its rename, after pruning an old one, inside "
                        "an update, or a timer (startup, resume, anything). After each kill every finished checkpoint "
                        "is loaded (`torch.load(weights_only=True)`); the next start removes our temps and resumes.",
                        "", *kill_table(r), ""]
                verdicts["kills"] = (r["corrupt"] == 0 and r["identical"] and r["final_rc"] == 0
                                     and r["kills"] == a.kills)
            elif part == "sigterm":
                r = sigterm_mp4()
                doc += ["## SIGTERM during an MP4 write", "",
                        "A process streams 4-frame chunks into `write_mp4` inside `sigterm_as_interrupt()` and gets "
                        "SIGTERM while ffmpeg encodes (every other run overwrites an existing video).", "",
                        *sigterm_table(r), ""]
                verdicts["sigterm"] = r["ok"]
            elif part == "disk":
                r = real_disk_full(checkpoint_bytes)
                doc += ["## A real full disk (tmpfs)", "", *disk_table(r), ""]
                verdicts["disk"] = r["skipped"] is not None or all(x["ok"] for x in r["rows"])
            elif part == "soak":
                r = run_soak(a.soak_frames)
                c = absolute_ceiling(a.soak_frames)
                doc += ["## Memory soak: `stream_ar` with a window cache", "", *soak_table(r), "",
                        f"The same call with CachePolicy's default positions ('absolute') made {c['chunks_made']} of "
                        f"{c['chunks_asked']} chunks, then stopped with: `{c['error'] or 'no error'}`. The ceiling is "
                        "known before the first chunk, but stream_ar only reports it when the stream reaches it.", ""]
                verdicts["soak"] = r["flat"]
        except Exception as e:  # noqa: BLE001 - a broken part is reported, the others still run
            doc += [f"## {part}: FAILED", "", f"`{type(e).__name__}: {str(e)[:2000]}`", ""]
            verdicts[part] = False
        write()
    print(Path(a.out).read_text(encoding="utf-8"))
    return 0 if all(verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
