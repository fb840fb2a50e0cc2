"""Crash scenarios in real subprocesses: SIGKILL at random points of a tiny training run (every finished checkpoint
must load, and the resumed run must end bit for bit where an unbroken run ends), SIGTERM during an MP4 write
(no target, no temp, no ffmpeg left), and a real full disk (a small tmpfs) under the MP4 writer and the trainer."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
KINDS = ("write", "replace", "renamed", "prune", "step", "timer")

# The child: installs one kill point (argv[1], JSON), then runs the trainer (argv[2:]).
_CHILD = r"""
import json, os, signal, sys, threading
point = json.loads(sys.argv[1])
kind, m = point["kind"], point["m"]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
import torch
torch.set_num_threads(1)
from salt_core import atomic
from training import checkpoint, trainer
seen = {"n": 0}
def nth():
    seen["n"] += 1
    return seen["n"] == m
if kind == "write":  # SIGKILL after point["bytes"] bytes of the m-th checkpoint file
    real_open = checkpoint.open_for_writing
    class Dying:
        def __init__(self, f, left): self.f, self.left = f, left
        def write(self, data):
            n = memoryview(data).nbytes
            if n >= self.left:
                self.f.write(memoryview(data).cast("B")[: self.left]); self.f.flush(); die()
            self.left -= n
            return self.f.write(data)
        def flush(self): self.f.flush()
        def __enter__(self): return self
        def __exit__(self, *e): self.f.close()
    checkpoint.open_for_writing = lambda p: Dying(real_open(p), point["bytes"]) if nth() else real_open(p)
elif kind in ("replace", "renamed"):  # just before / just after the m-th checkpoint is renamed into place
    real_replace = os.replace
    def replace(src, dst):
        hit = str(dst).endswith(".pt") and nth()
        if hit and kind == "replace": die()
        real_replace(src, dst)
        if hit: die()
    atomic.os.replace = replace
elif kind == "prune":  # right after the m-th old checkpoint is deleted
    real_remove = os.remove
    def remove(p):
        real_remove(p)
        if str(p).endswith(".pt") and not os.path.basename(str(p)).startswith(".") and nth(): die()
    checkpoint.os.remove = remove
elif kind == "step":  # in the middle of the m-th update (loss computed, optimiser not stepped)
    real_update = trainer.Trainer._update
    def update(self, *a):
        if nth(): die()
        return real_update(self, *a)
    trainer.Trainer._update = update
elif kind == "timer":  # wherever the process is after point["seconds"]
    threading.Timer(point["seconds"], die).start()
from training.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _train_args(data: str, out: str, steps: int) -> list[str]:
    sets = {"data.path": data, "data.batch_size": 2, "teacher.preset": "tiny", "optim.teacher.lr": 1e-3,
            "ema.start_step": 1, "run.output_dir": out, "run.steps": steps, "run.save_every": 1, "run.keep_last": 3,
            "run.log_every": 1, "run.progress": "false", "run.threads": 1, "run.export_on_finish": "false"}
    return ["teacher"] + [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


def _tensors_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_tensors_equal, a, b))
    return a == b


def _inspect(folder: str) -> dict:
    """Finished checkpoints (each loaded with weights_only), corrupt ones, and our temps in a checkpoints folder."""
    from salt_core.atomic import temp_target_name
    from training.checkpoint import list_checkpoints, load_checkpoint

    good, corrupt = [], []
    for step, path in list_checkpoints(folder):
        try:
            ok = load_checkpoint(path)["step"] == step
        except ValueError:
            ok = False
        (good if ok else corrupt).append(step)
    temps = [n for n in os.listdir(folder) if temp_target_name(n)] if os.path.isdir(folder) else []
    return {"good": good, "corrupt": corrupt, "temps": len(temps)}


def _draw_point(rng: random.Random, checkpoint_bytes: int) -> dict:
    kind = rng.choice(KINDS)
    point = {"kind": kind, "m": rng.randint(1, 4)}
    if kind == "write":
        point["bytes"] = rng.randrange(checkpoint_bytes)
    if kind == "timer":
        point["seconds"] = round(rng.uniform(1.0, 7.0), 2)
    return point


def kill_and_resume(kills: int = 20, steps: int = 200, seed: int = 0) -> dict:
    from training.checkpoint import checkpoint_dir, checkpoint_path, load_checkpoint
    from training.data.random_source import write_random_latents

    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="salt-kill-"))
    data = write_random_latents(str(work / "latents"), count=8, latent_shape=(16, 3, 4, 4), text_dim=32, max_tokens=8)
    ref, out = str(work / "straight"), str(work / "killed")
    subprocess.run([sys.executable, "-m", "training", *_train_args(data, ref, steps)], check=True, env=ENV,
                   capture_output=True, cwd=ROOT)
    size = os.path.getsize(checkpoint_path(ref, steps))
    rows = []
    for k in range(kills):
        point = _draw_point(rng, size)
        proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(point), *_train_args(data, out, steps)],
                              env=ENV, capture_output=True, text=True, cwd=ROOT, timeout=600)
        state = _inspect(checkpoint_dir(out))
        rows.append({"kill": k + 1, **point, "rc": proc.returncode, **state,
                     "cleaned": proc.stderr.count("removed an unfinished checkpoint write")})
        if proc.returncode == 0:  # finished before the kill point: nothing more to kill
            break
    final = subprocess.run([sys.executable, "-m", "training", *_train_args(data, out, steps)], env=ENV,
                           capture_output=True, text=True, cwd=ROOT)
    end = _inspect(checkpoint_dir(out))
    a, b = load_checkpoint(checkpoint_path(out, steps)), load_checkpoint(checkpoint_path(ref, steps))
    same = all(_tensors_equal(a[k], b[k]) for k in ("nets", "rng", "data", "guard", "step"))
    return {"rows": rows, "final_rc": final.returncode, "final_clean": end, "identical": same,
            "kills": sum(r["rc"] == -signal.SIGKILL for r in rows), "corrupt": sum(len(r["corrupt"]) for r in rows),
            "steps": steps, "checkpoint_bytes": size, "seed": seed, "work": str(work)}


def kill_table(r: dict) -> list[str]:
    lines = ["| kill | point | exit | finished checkpoints after | corrupt | our temps left | temps removed at start |",
             "|---:|---|---:|---|---:|---:|---:|"]
    for x in r["rows"]:
        where = {"write": f"after {x.get('bytes', 0)} bytes of save #{x['m']}",
                 "replace": f"before the rename of save #{x['m']}", "renamed": f"after the rename of save #{x['m']}",
                 "prune": f"after pruning old checkpoint #{x['m']}", "step": f"inside update #{x['m']}",
                 "timer": f"{x.get('seconds')} s after start"}[x["kind"]]
        lines.append(f"| {x['kill']} | {where} | {x['rc']} | {x['good']} | {len(x['corrupt'])} | {x['temps']} | "
                     f"{x['cleaned']} |")
    lines += ["", f"{r['kills']} SIGKILLs, **{r['corrupt']} corrupt checkpoints**; the final run exited "
              f"{r['final_rc']} and left {r['final_clean']['temps']} temps; step {r['steps']} equals the unbroken "
              f"run's bit for bit (weights, EMA, optimiser, RNG, data position): "
              f"**{'yes' if r['identical'] else 'NO'}**."]
    return lines


# ----------------------------------------------------------------------------- SIGTERM during an MP4 write

_MP4_CHILD = r"""
import sys, torch
from salt_core.atomic import sigterm_as_interrupt
from salt_core.video_io import write_mp4
torch.manual_seed(0)
def chunks():
    for i in range(400):
        if i == int(sys.argv[2]):
            print("streaming", flush=True)
        yield torch.rand(4, 64, 64, 3)
with sigterm_as_interrupt():
    write_mp4(sys.argv[1], chunks())
"""


def _ffmpeg_writing_to(folder: str) -> list[int]:
    """Pids of processes whose command line names a file in `folder` (an orphaned ffmpeg)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if folder.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            continue
    return pids


def sigterm_mp4(runs: int = 5) -> dict:
    import hashlib

    from salt_core.video_io import write_mp4

    rows = []
    for i in range(runs):
        folder = tempfile.mkdtemp(prefix="salt-term-")
        target = os.path.join(folder, "clip.mp4")
        keep = i % 2 == 1  # every other run overwrites an existing video, which must survive intact
        if keep:
            write_mp4(target, torch.rand(4, 64, 64, 3))
        before = hashlib.sha256(open(target, "rb").read()).hexdigest() if keep else None
        proc = subprocess.Popen([sys.executable, "-c", _MP4_CHILD, target, str(5 + 20 * i)], env=ENV, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        started = proc.stdout.readline() == b"streaming\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        left = sorted(os.listdir(folder))
        after = hashlib.sha256(open(target, "rb").read()).hexdigest() if os.path.exists(target) else None
        rows.append({"run": i + 1, "started": started, "rc": proc.returncode,
                     "interrupt": b"KeyboardInterrupt: terminated (SIGTERM)" in err, "left": left,
                     "kept": after == before, "orphans": len(_ffmpeg_writing_to(folder))})
    ok = all(r["started"] and r["interrupt"] and r["kept"] and not r["orphans"]
             and r["left"] == (["clip.mp4"] if r["run"] % 2 == 0 else []) for r in rows)
    return {"rows": rows, "ok": ok}


def sigterm_table(r: dict) -> list[str]:
    lines = ["| run | existing video | exit | KeyboardInterrupt | files left | existing video unchanged "
             "| ffmpeg left |",
             "|---:|---|---:|---|---|---|---:|"]
    for x in r["rows"]:
        lines.append(f"| {x['run']} | {'yes' if x['run'] % 2 == 0 else 'no'} | {x['rc']} | {x['interrupt']} | "
                     f"{x['left'] or 'none'} | {x['kept']} | {x['orphans']} |")
    return lines + ["", f"All runs clean: **{'yes' if r['ok'] else 'NO'}**."]


# ----------------------------------------------------------------------------- a real full disk

def _tmpfs(size: str) -> str | None:
    folder = tempfile.mkdtemp(prefix="salt-full-")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder], capture_output=True)
    return folder if done.returncode == 0 else None


def real_disk_full(checkpoint_bytes: int) -> dict:
    """MP4 and trainer on small tmpfs mounts (needs permission to mount; otherwise skipped)."""
    from salt_core.atomic import WriteError
    from salt_core.video_io import check_writable, write_mp4
    from training.data.random_source import write_random_latents

    rows = []
    mp4_dir = _tmpfs("3m")
    if mp4_dir is None:
        return {"rows": [], "skipped": "cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)"}
    try:
        target = os.path.join(mp4_dir, "clip.mp4")
        write_mp4(target, torch.rand(4, 64, 64, 3))
        old = open(target, "rb").read()
        try:
            write_mp4(target, torch.rand(40, 256, 256, 3), crf=0)
            said = "no error"
        except WriteError as e:
            said = str(e)
        rows.append({"case": "write_mp4 of a 40-frame lossless 256x256 clip onto a 3 MiB tmpfs", "said": said,
                     "ok": said == f"no space left on device while writing {target}"
                     and os.listdir(mp4_dir) == ["clip.mp4"] and open(target, "rb").read() == old})
        filler = os.path.join(mp4_dir, "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * (os.statvfs(mp4_dir).f_bavail * os.statvfs(mp4_dir).f_frsize - 64 * 1024))
        try:
            check_writable(os.path.join(mp4_dir, "next.mp4"))
            said = "no error"
        except WriteError as e:
            said = str(e)
        rows.append({"case": "check_writable on the same tmpfs with 64 KiB left", "said": said,
                     "ok": said.startswith("no space left on device for") and "next.mp4" in said})
    finally:
        subprocess.run(["umount", mp4_dir])
    run_dir = _tmpfs(f"{int(checkpoint_bytes * 1.6)}")
    try:
        work = tempfile.mkdtemp(prefix="salt-full-data-")
        data = write_random_latents(os.path.join(work, "lat"), count=8, latent_shape=(16, 3, 4, 4), text_dim=32,
                                    max_tokens=8)
        out = os.path.join(run_dir, "run")
        proc = subprocess.run([sys.executable, "-m", "training", *_train_args(data, out, 3)], env=ENV, cwd=ROOT,
                              capture_output=True, text=True)
        last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        state = _inspect(os.path.join(out, "checkpoints"))
        rows.append({"case": f"trainer saving {checkpoint_bytes}-byte checkpoints onto a tmpfs of 1.6x that",
                     "said": last,
                     "ok": proc.returncode == 2 and last.startswith("error: no space left on device while writing")
                     and "Traceback" not in proc.stderr and state["good"] == [1] and not state["corrupt"]
                     and not state["temps"]})
    finally:
        subprocess.run(["umount", run_dir])
    return {"rows": rows, "skipped": None}


def disk_table(r: dict) -> list[str]:
    if r["skipped"]:
        return [f"Skipped: {r['skipped']}."]
    lines = ["| case | what the user sees | clear, and nothing lost |", "|---|---|---|"]
    return lines + [f"| {x['case']} | `{x['said']}` | {'yes' if x['ok'] else 'NO'} |" for x in r["rows"]]
