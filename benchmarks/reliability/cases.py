"""The bad-input catalogue: every case a user can cause that we tried, run against the code on sys.path.

A case is *clear* when it ends in one line of a ValueError / OSError (for `python -m training`: exit status 2 and
one `error:` line, no traceback) that contains the expected name (the key, file or parameter), or, for reporting
cases (unknown words), when the report shows what was typed; and it must leave no new file behind.
Run as a script with `--json` it prints the outcomes, so battery.py can run it against an older tree too.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import re
import tempfile
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

GIB = 1 << 30


class CLIExit(Exception):
    def __init__(self, code: int, err: str):
        super().__init__(err.strip())
        self.code, self.err = code, err


@dataclass
class Case:
    area: str
    name: str
    setup: Callable[[Path], Any]   # work folder -> what act needs (inputs written here are not "new files")
    act: Callable[[Any], Any]      # raises the failure, or returns a report (reporting cases)
    expect: str                    # a regular expression the message / report must match


# ---- helpers --------------------------------------------------------------------------------------------------

def cli(*argv: str) -> None:
    from training.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except Exception:  # escaped main(): `python -m training` would print this traceback
            traceback.print_exc(file=err)
            code = 1
    if code:
        raise CLIExit(code, err.getvalue())


def dataset(work: Path) -> str:
    from training.data.random_source import write_random_latents

    return write_random_latents(str(work / "lat"), count=8, latent_shape=(16, 3, 4, 4), text_dim=32, max_tokens=8)


def train(data: str, work: Path, *sets: str) -> tuple:
    args = ["teacher", "--set", f"data.path={data}", "--set", "teacher.preset=tiny", "--set", "run.steps=1",
            "--set", "run.progress=false", "--set", f"run.output_dir={work / 'run'}"]
    return tuple(args + [a for s in sets for a in ("--set", s)])


def damaged(change: Callable[[str], None]) -> Callable[[Path], tuple]:
    def setup(work: Path) -> tuple:
        data = dataset(work)
        change(data)
        return train(data, work)
    return setup


def truncate_shard(data: str) -> None:
    p = os.path.join(data, "shard-00000.safetensors")
    os.truncate(p, os.path.getsize(p) - 1000)


def rewrite_index(edit: Callable[[dict], Any]) -> Callable[[str], None]:
    def change(data: str) -> None:
        p = os.path.join(data, "index.json")
        index = json.load(open(p))
        out = edit(index)
        with open(p, "w") as f:
            f.write(out if isinstance(out, str) else json.dumps(index))
    return change


def encoder():
    from salt_core.text import TextEncoder, TextEncoderConfig

    return TextEncoder(TextEncoderConfig(dim=16, num_heads=2, ffn_dim=16, text_dim=8), ["a", "red", "circle"]).eval()


def node(name: str):
    import nodes

    return getattr(nodes, name)()


def embedded_vae():
    return node("SaltVAELoader").load("(embedded default)")[0]


def refuse_big_empty(fn: Callable) -> Callable:
    """Run fn with torch.empty refusing more than 1 GiB (so an unchecked allocation fails fast, not after 37 GiB)."""
    def run(*a):
        real = torch.empty

        def guarded(*size, **kw):
            n = torch.Size(size[0] if len(size) == 1 and not isinstance(size[0], int) else size).numel()
            if n * 4 > GIB:
                raise MemoryError(f"allocated {n * 4 / GIB:.1f} GiB without checking")
            return real(*size, **kw)

        torch.empty = guarded
        try:
            return fn(*a)
        finally:
            torch.empty = real
    return run


def fake_ffmpeg(work: Path, line: str, status: int) -> str:
    exe = work / "ffmpeg"
    exe.write_text(f"#!/bin/sh\nfor last; do :; done\ncat > /dev/null\nprintf half > \"$last\"\necho '{line}' >&2\n"
                   f"exit {status}\n")
    exe.chmod(0o755)
    return str(exe)


def with_ffmpeg(line: str, status: int):
    def setup(work: Path):
        return work / "a.mp4", fake_ffmpeg(work, line, status)

    def act(ctx):
        target, exe = ctx
        os.environ["IMAGEIO_FFMPEG_EXE"] = exe  # imageio-ffmpeg's get_ffmpeg_exe() reads it on every call
        try:
            mp4(target, torch.rand(4, 16, 16, 3))
        finally:
            del os.environ["IMAGEIO_FFMPEG_EXE"]
    return setup, act


def mp4(target, frames, **kw):
    from salt_core.video_io import write_mp4

    return write_mp4(target, frames, **kw)


def writable(target) -> None:
    from salt_core import video_io

    check = getattr(video_io, "check_writable", None)
    if check is None:  # older code: only the writer itself can tell
        return mp4(target, torch.rand(2, 16, 16, 3))
    check(target)


def reported_unknown(prompt: str):
    def act(enc):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return str(enc.encode([prompt])[1])
    return act


def mode_after_write(work: Path) -> str:
    from salt_core.atomic import atomic_write

    old = os.umask(0o022)
    try:
        p = atomic_write(work / "a.bin", lambda tmp: open(tmp, "wb").close())
        return oct(os.stat(p).st_mode & 0o777)
    finally:
        os.umask(old)
        os.remove(work / "a.bin")


def _tiny_teacher(w: Path) -> str:
    from salt_core.checkpoints import save_dit
    from salt_core.config import SamplingDefaults, dit_preset
    from salt_core.dit import WanDiT

    return save_dit(str(w / "t.safetensors"), WanDiT(dit_preset("tiny")), SamplingDefaults(causal=False))


def _dmd(w: Path, prompts: bytes = b"a red circle\nblue square\n", *sets: str) -> tuple:
    """A one-step dmd run of a tiny teacher on a prompt file (what the option cases change)."""
    (w / "p.txt").write_bytes(prompts)
    args = {"data.kind": "prompts", "data.path": w / "p.txt", "data.latent_shape": "[3,4,4]",
            "teacher.init": _tiny_teacher(w), "run.output_dir": w / "run", "run.steps": 1, "run.progress": "false",
            "run.export_on_finish": "false"}
    pairs = [f"{k}={v}" for k, v in args.items()] + list(sets)
    return ("dmd", *[a for kv in pairs for a in ("--set", kv)])


def _range(key_value: str, expect: str) -> Case:
    return Case("trainer options", f"--set {key_value}", lambda w: _dmd(w, b"a red circle\n", key_value),
                lambda a: cli(*a), re.escape(expect))


def _dir_target(w: Path) -> Path:
    (w / "out.mp4").mkdir()
    return w / "out.mp4"


def _file_parent(w: Path) -> Path:
    (w / "runs").write_text("x")
    return w / "runs" / "a" / "out.mp4"


def _bad_prompt_file(w: Path) -> tuple:
    return _dmd(w, b"a red circle\n\xff\xfe broken\n")


def _prefix_file(w: Path) -> Path:
    os.environ["SALT_OUTPUT_DIR"] = str(w)
    (w / "notes").write_text("x")
    return w


# ---- the catalogue --------------------------------------------------------------------------------------------

def catalogue() -> list[Case]:
    z = lambda *shape, **kw: {"samples": torch.zeros(*shape, **kw)}  # noqa: E731
    save = lambda *args: node("SaltSaveVideo").save(*args)  # noqa: E731
    decode = lambda ctx: node("SaltDecode").decode(ctx[0], embedded_vae(), chunk_frames=ctx[1])  # noqa: E731
    ffmpeg_full, ffmpeg_fail = with_ffmpeg("Error writing trailer: No space left on device", 228), \
        with_ffmpeg("Conversion failed!", 1)
    return [
        Case("MP4 target", "target is a folder", _dir_target, writable, "it is a folder"),
        Case("MP4 target", "a file where a folder of the path should be", _file_parent, writable, "runs is a file"),
        Case("MP4 target", "a read-only folder (/sys)", lambda w: "/sys/salt-battery.mp4", writable, "/sys"),
        Case("MP4 target", "extension .avi", lambda w: w / "a.avi", writable, r"\.avi"),
        Case("MP4 writer", "ffmpeg runs out of disk", ffmpeg_full[0], ffmpeg_full[1],
             "no space left on device while writing"),
        Case("MP4 writer", "ffmpeg fails (exit 1)", ffmpeg_fail[0], ffmpeg_fail[1], "a.mp4.*Conversion failed!"),
        Case("MP4 writer", "odd frame size", lambda w: w / "a.mp4", lambda t: mp4(t, torch.rand(2, 15, 16, 3)),
             "even width and height"),
        Case("MP4 writer", "NaN frames", lambda w: w / "a.mp4",
             lambda t: mp4(t, torch.full((2, 16, 16, 3), float("nan"))), "NaN"),
        Case("MP4 writer", "no frames", lambda w: w / "a.mp4", lambda t: mp4(t, torch.zeros(0, 16, 16, 3)), "empty"),
        Case("MP4 writer", "crf 99", lambda w: w / "a.mp4", lambda t: mp4(t, torch.rand(2, 16, 16, 3), crf=99), "crf"),
        Case("MP4 writer", "fps 0", lambda w: w / "a.mp4", lambda t: mp4(t, torch.rand(2, 16, 16, 3), fps=0), "fps"),
        Case("MP4 writer", "model-space frames", lambda w: w / "a.mp4",
             lambda t: mp4(t, torch.rand(2, 16, 16, 3) * 4 - 2), "frames_from_model_space"),
        Case("files", "atomic write under a file", lambda w: (w / "f").write_text("x") and w / "f" / "x" / "a.bin",
             lambda t: __import__("salt_core.atomic").atomic.atomic_write(t, lambda tmp: None), "f is a file"),
        Case("files", "a writer reports ENOSPC only in its text (safetensors)", lambda w: w / "a.safetensors",
             lambda t: __import__("salt_core.atomic").atomic.atomic_write(t, lambda tmp: (_ for _ in ()).throw(
                 RuntimeError("I/O error: No space left on device (os error 28)"))),
             "no space left on device while writing .*a.safetensors"),
        Case("files", "mode of a written file under umask 022", lambda w: w, mode_after_write, "^0o644$"),
        Case("prompts", "'a red café circle' reports the word as typed", lambda w: encoder(),
             reported_unknown("a red café circle"), "'café'"),
        Case("prompts", "'Ça red' reports the word as typed", lambda w: encoder(), reported_unknown("Ça red"), "Ça"),
        Case("prompts", "emoji-only prompt", lambda w: encoder(), lambda e: e.encode(["🔴 🟦"]),
             "🔴.*unconditioned"),
        Case("prompts", "CJK-only prompt", lambda w: encoder(), lambda e: e.encode(["红色的圆"]),
             "红色的圆.*unconditioned"),
        Case("prompts", "accented unknown words only", lambda w: encoder(), lambda e: e.encode(["Ça été"]),
             "Ça.*unconditioned"),
        Case("prompts", "punctuation-only prompt", lambda w: encoder(), lambda e: e.encode(["... !!"]),
             "no word this model knows"),
        Case("prompts", "SaltTextEncode says what happens to unknown words", lambda w: None,
             lambda _: str(node("SaltTextEncode").encode(node("SaltModelLoader").load("(embedded default)")[0],
                                                        "a red circle moves left zorp")), "<unk>.*zorp"),
        _range("optim.student.lr=-1e-3", "optim.student.lr must be > 0"),
        _range("optim.critic.betas=[0.9, 1.0]", "optim.critic.betas[1] must be in [0, 1)"),
        _range("optim.student.eps=0", "optim.student.eps must be > 0"),
        _range("optim.student.weight_decay=-1", "optim.student.weight_decay must be >= 0"),
        _range("run.steps=0", "run.steps must be >= 1"),
        _range("run.keep_last=0", "run.keep_last must be >= 1"),
        _range("ema.decay=1.5", "ema.decay must be in [0, 1]"),
        _range("grid.timesteps=[1000, 0]", "grid.timesteps[1]"),
        _range("dmd.exit_step=-1", "dmd.exit_step must be >= 0"),
        _range("data.batch_size=0", "data.batch_size must be >= 1"),
        _range("flow.cond_dropout=1", "flow.cond_dropout must be in [0, 1)"),
        _range("sc.eps=0", "sc.eps must be > 0"),
        Case("trainer data", "a truncated shard", damaged(truncate_shard), lambda a: cli(*a), "shard-00000"),
        Case("trainer data", "index.json is not JSON", damaged(rewrite_index(lambda i: "{not json")),
             lambda a: cli(*a), "index.json"),
        Case("trainer data", "index.json miscounts a shard",
             damaged(rewrite_index(lambda i: i["shards"][0].update(count=5))), lambda a: cli(*a), "shard-00000"),
        Case("trainer data", "index.json lists a missing shard",
             damaged(lambda d: os.remove(os.path.join(d, "shard-00001.safetensors"))), lambda a: cli(*a),
             "shard-00001"),
        Case("trainer data", "a prompt file that is not UTF-8", _bad_prompt_file, lambda a: cli(*a), "p.txt"),
        Case("trainer files", "run.output_dir under a file",
             lambda w: (w / "f").write_text("x") and train(dataset(w), w, f"run.output_dir={w / 'f' / 'run'}"),
             lambda a: cli(*a), "f/run"),
        Case("trainer files", "run.resume names a garbage file",
             lambda w: (w / "g.pt").write_bytes(b"garbage") and train(dataset(w), w, f"run.resume={w / 'g.pt'}"),
             lambda a: cli(*a), "g.pt"),
        Case("ComfyUI nodes", "SaltDecode chunk_frames 0", lambda w: (z(1, 16, 3, 2, 2), 0), decode, "chunk_frames"),
        Case("ComfyUI nodes", "SaltDecode of a 200000-frame LATENT",
             lambda w: ({"samples": torch.zeros(1, 16, 1, 8, 8).expand(1, 16, 200_000, 8, 8)}, 1),
             refuse_big_empty(decode), "GiB of float32.*free memory"),
        Case("ComfyUI nodes", "SaltDecode of NaN latents", lambda w: ({"samples": torch.full((1, 16, 2, 2, 2),
                                                                                             float("nan"))}, 1),
             decode, "NaN"),
        Case("ComfyUI nodes", "SaltDecode of integer latents", lambda w: (z(1, 16, 2, 2, 2, dtype=torch.long), 1),
             decode, "floating point"),
        Case("ComfyUI nodes", "SaltSaveVideo of NaN images", _prefix_file,
             lambda w: save(torch.full((2, 16, 16, 3), float("nan"))), "NaN"),
        Case("ComfyUI nodes", "SaltSaveVideo of zero frames", _prefix_file,
             lambda w: save(torch.zeros(0, 16, 16, 3)), "empty|no frames"),
        Case("ComfyUI nodes", "SaltSaveVideo with an empty filename_prefix", _prefix_file,
             lambda w: save(torch.rand(2, 16, 16, 3), 16.0, ""), "filename_prefix"),
        Case("ComfyUI nodes", "SaltSaveVideo with a NUL in filename_prefix", _prefix_file,
             lambda w: save(torch.rand(2, 16, 16, 3), 16.0, "a\0b"), "filename_prefix"),
        Case("ComfyUI nodes", "SaltSaveVideo with a file in the prefix's folder path", _prefix_file,
             lambda w: save(torch.rand(2, 16, 16, 3), 16.0, "notes/clip"), "notes"),
    ]


# ---- running --------------------------------------------------------------------------------------------------

def _files(folder: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs}


def attempt(case: Case) -> dict:
    work = Path(tempfile.mkdtemp(prefix="salt-case-"))
    try:
        ctx = case.setup(work)
    except Exception as e:  # the older code may lack what a case sets up
        return {"area": case.area, "name": case.name, "kind": type(e).__name__, "message": f"setup: {e}",
                "clear": False, "new_files": []}
    before = _files(work)
    report = None
    try:
        report = case.act(ctx)
        kind, message = "no error", ""
    except CLIExit as e:
        lines = e.err.strip().splitlines()
        one = e.code == 2 and bool(lines) and lines[-1].startswith("error: ") and "Traceback" not in e.err
        kind, message = (f"exit {e.code}" + ("" if one else ", not one error line")), (lines[-1] if lines else "")
    except Exception as e:  # noqa: BLE001 - classifying whatever the code under test raises
        kind, message = type(e).__name__, str(e)
        if not isinstance(e, (ValueError, OSError)) or "\n" in message.strip():
            kind += " (not a clear error)"
    finally:
        os.environ.pop("SALT_OUTPUT_DIR", None)
    new = sorted(_files(work) - before)
    if kind == "no error":
        clear = report is not None and re.search(case.expect, str(report)) is not None
        message = str(report)[:200] if report is not None else "(no error, no report)"
    else:
        clear = ((kind == "exit 2" or "not a clear" not in kind and not kind.startswith("exit"))
                 and re.search(case.expect, message) is not None)
    return {"area": case.area, "name": case.name, "kind": kind, "message": message.strip().splitlines()[-1][:300]
            if message.strip() else "", "clear": bool(clear) and not new, "new_files": new}


def run_all() -> list[dict]:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    return [attempt(c) for c in catalogue()]


if __name__ == "__main__":
    # run from any tree: the code under test is what sys.path finds first (PYTHONPATH)
    sys.path.append(str(Path(__file__).resolve().parents[2]))
    results = run_all()
    if "--json" in sys.argv:
        print(json.dumps(results))
    else:
        for r in results:
            verdict = "CLEAR" if r["clear"] else "no   "
            print(f"{verdict} {r['area']:14s} {r['name']:50s} {r['kind']}: {r['message'][:120]}")
