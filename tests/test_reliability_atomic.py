"""The atomic writer: finished files get the umask's mode (not mkstemp's 0600), temps follow one naming scheme
of ours and only dead ones of one target are removed, a full disk is one clear error with nothing left behind,
and SIGTERM mid-write takes the clean Ctrl+C path (no temp, no target)."""
from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from salt_core.atomic import (WriteError, atomic_path, atomic_write, remove_stale_temps, sigterm_as_interrupt,
                              temp_target_name)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def umask():
    """Set a umask for one test and restore the previous one."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def write_bytes(data: bytes):
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
    return write


@pytest.mark.parametrize("mask, want", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_finished_files_get_the_mode_of_the_umask(tmp_path, umask, mask, want):
    umask(mask)
    path = atomic_write(tmp_path / "a.bin", write_bytes(b"x"))
    assert mode_of(path) == want
    atomic_write(path, write_bytes(b"y"))  # replacing keeps following the umask
    assert mode_of(path) == want


def test_mp4_trainer_checkpoint_and_text_encoder_files_follow_the_umask(tmp_path, umask):
    from salt_core.text import TextEncoder, TextEncoderConfig, save_text_encoder
    from salt_core.video_io import write_mp4
    from training.checkpoint import save_checkpoint

    umask(0o022)
    mp4, _ = write_mp4(tmp_path / "v.mp4", torch.rand(2, 16, 16, 3))
    ckpt = save_checkpoint(str(tmp_path / "step-00000001.pt"), {"format": "salt-trainer-v1", "w": torch.ones(2)})
    enc = save_text_encoder(tmp_path / "t.safetensors",
                            TextEncoder(TextEncoderConfig(dim=8, num_heads=2, ffn_dim=8, text_dim=4), ["red"]))
    assert [mode_of(p) for p in (mp4, ckpt, enc)] == [0o644] * 3


def test_temps_are_named_after_their_target_with_our_mark(tmp_path):
    with atomic_path(tmp_path / "clip.mp4") as tmp:
        assert tmp.parent == tmp_path
        assert tmp.name.startswith(".clip.mp4.") and tmp.name.endswith(".salt.tmp.mp4")
        assert temp_target_name(tmp.name) == "clip.mp4"
        tmp.write_bytes(b"x")
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_remove_stale_temps_removes_only_dead_temps_of_that_target(tmp_path):
    target = tmp_path / "clip.mp4"
    ours = [".clip.mp4.abcd_123.salt.tmp.mp4",  # this version
            ".clip.k2j4h5g6.tmp.mp4",           # the previous version (.<stem>.<random>.tmp<suffix>)
            ".clip.mp4.zz9yy8xx.tmp"]           # the version before (.<name>.<random>.tmp)
    others = [".other.mp4.abcd_123.salt.tmp.mp4",   # another target's temp
              ".clip.mp4.abcd_123.salt.tmp.png",    # suffix does not fit the target
              ".clip.mp4.tmp", "clip.mp4.bak", ".clip.mp4.abc.salt.tmp.mp4", "clip.mp4"]
    for name in ours + others:
        (tmp_path / name).write_bytes(b"data")
    (tmp_path / ".clip.mp4.linklink.salt.tmp.mp4").symlink_to(tmp_path / "clip.mp4.bak")
    with atomic_path(target) as live:  # a writer of the same target still running: its temp must survive
        live.write_bytes(b"in progress")
        assert sorted(remove_stale_temps(target)) == sorted(ours)
        assert live.exists()
    left = sorted(os.listdir(tmp_path))
    assert left == sorted(others + [".clip.mp4.linklink.salt.tmp.mp4"])
    assert (tmp_path / "clip.mp4").read_bytes() == b"in progress"


def test_a_temp_left_by_sigkill_is_removed_by_the_next_start(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal
        from salt_core.atomic import atomic_path
        with atomic_path({str(tmp_path / 'a.bin')!r}) as tmp:
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGKILL
    [stale] = os.listdir(tmp_path)
    assert temp_target_name(stale) == "a.bin"
    assert remove_stale_temps(tmp_path / "a.bin") == [stale]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),  # safetensors
])
def test_a_full_disk_is_one_clear_error_and_keeps_the_old_file(tmp_path, failure):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"the previous file")

    def full(tmp: str) -> None:
        Path(tmp).write_bytes(b"partial")
        raise failure

    with pytest.raises(WriteError) as info:
        atomic_write(target, full)
    assert str(info.value) == f"no space left on device while writing {target}"
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, ValueError)
    assert os.listdir(tmp_path) == ["model.safetensors"] and target.read_bytes() == b"the previous file"


def test_a_file_in_the_folder_path_and_a_folder_target_are_named(tmp_path):
    (tmp_path / "notes").write_text("a file")
    with pytest.raises(WriteError, match=r"notes is a file, not a folder"):
        atomic_write(tmp_path / "notes" / "sub" / "a.bin", write_bytes(b"x"))
    (tmp_path / "out.bin").mkdir()
    with pytest.raises(WriteError, match=r"out.bin: it is a folder"):
        atomic_write(tmp_path / "out.bin", write_bytes(b"x"))
    assert sorted(os.listdir(tmp_path)) == ["notes", "out.bin"] and os.listdir(tmp_path / "out.bin") == []


def test_sigterm_as_interrupt_restores_the_previous_handler():
    def mine(signum, frame):
        pass

    old = signal.signal(signal.SIGTERM, mine)
    try:
        with sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is not mine
            with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
                signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, old)


_WRITER = """
import sys
from salt_core.atomic import atomic_path, sigterm_as_interrupt
guard = sigterm_as_interrupt() if sys.argv[2] == "guarded" else __import__("contextlib").nullcontext()
with guard:
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"half a file")
        print("writing", flush=True)
        sys.stdin.read()  # blocks until the parent acts
"""


@pytest.mark.parametrize("mode", ["guarded", "plain"])
def test_sigterm_mid_write_leaves_no_temp_and_no_target_only_when_guarded(tmp_path, mode):
    target = tmp_path / "video.mp4"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(target), mode], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline() == b"writing\n"  # the temp exists and is half written
        assert len(os.listdir(tmp_path)) == 1
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if mode == "guarded":
        assert b"KeyboardInterrupt: terminated (SIGTERM)" in err
        assert os.listdir(tmp_path) == []
    else:  # the default action kills the process before any cleanup: this is what the guard is for
        assert proc.returncode == -signal.SIGTERM
        assert [temp_target_name(n) for n in os.listdir(tmp_path)] == ["video.mp4"]


def test_an_interrupt_as_the_temp_is_created_leaves_no_temp(tmp_path, monkeypatch):
    """SIGINT arriving right after mkstemp made the file (before its cleanup could be armed) is held back until the
    temp is known: the interrupt still stops the write, and nothing is left."""
    import tempfile

    real = tempfile.mkstemp

    def mkstemp_then_interrupted(*args, **kwargs):
        made = real(*args, **kwargs)
        # raise() delivers to this thread before it returns; os.kill's process-directed signal may be taken by one
        # of torch's threads and land after the block (a race CI hit), which is not the case under test
        signal.raise_signal(signal.SIGINT)
        return made

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "a.bin") as tmp:
            tmp.write_bytes(b"never finished")
    assert list(tmp_path.iterdir()) == []
