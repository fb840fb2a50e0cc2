"""The MP4 writer's failures: each one clear line, checked before the first frame is asked for where it can be,
and never a file at the target that is not a finished video (an existing file there stays as it was)."""
from __future__ import annotations

import errno
import os
import stat
from types import SimpleNamespace

import pytest
import torch

from salt_core import atomic, video_io
from salt_core.atomic import WriteError
from salt_core.video_io import check_writable, read_mp4, write_mp4


def clip(t: int = 4) -> torch.Tensor:
    return torch.rand(t, 16, 16, 3)


class Source:
    """A chunk source that records whether the writer ever asked it for a frame."""

    def __init__(self):
        self.started = False

    def __iter__(self):
        self.started = True
        yield clip()


def fake_ffmpeg(tmp_path, stderr_line: str, status: int) -> str:
    """An executable that reads the frames, writes half a file to its last argument, says `stderr_line` on
    stderr and exits with `status`: what ffmpeg does when the disk fills up while it writes."""
    exe = tmp_path / "ffmpeg"
    exe.write_text("#!/bin/sh\n"
                   "for last; do :; done\n"
                   "cat > /dev/null\n"
                   "printf 'ftypisom half a file' > \"$last\"\n"
                   f"echo '{stderr_line}' >&2\n"
                   f"exit {status}\n")
    exe.chmod(0o755)
    return str(exe)


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "out.mp4").mkdir() or d / "out.mp4", "out.mp4: it is a folder; give a file name"),
    (lambda d: (d / "runs").write_text("x") and d / "runs" / "a" / "out.mp4", "runs is a file, not a folder"),
    (lambda d: d / "out.avi", "writes .mp4 files, got extension '.avi'"),
])
def test_bad_targets_are_refused_before_the_first_frame(tmp_path, make, message):
    target = make(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match=message):
        check_writable(target)
    source = Source()
    with pytest.raises(ValueError, match=message):
        write_mp4(target, source)
    assert not source.started  # no frame was made (sampling never started)
    assert sorted(os.listdir(tmp_path)) == before


def test_a_folder_that_refuses_new_files_is_named(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:  # a real read-only folder (root may write anywhere)
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            with pytest.raises(WriteError, match=f"permission denied in {folder}"):
                check_writable(folder / "a.mp4")
        finally:
            folder.chmod(0o755)

    def refuse(code):
        def mkstemp(*a, **k):
            raise OSError(code, os.strerror(code))
        return mkstemp

    for code, said in ((errno.EACCES, f"permission denied in {folder}"),
                       (errno.EROFS, f"{folder} is on a read-only file system")):
        monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse(code))
        source = Source()
        with pytest.raises(WriteError, match=said):
            write_mp4(folder / "a.mp4", source)
        assert not source.started
    assert os.listdir(folder) == []


def test_too_little_free_space_is_refused_before_sampling(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda p: SimpleNamespace(total=1 << 30, used=0, free=4096))
    with pytest.raises(WriteError, match=r"no space left on device for .*a.mp4: 4096 bytes free"):
        check_writable(tmp_path / "a.mp4")
    assert os.listdir(tmp_path) == []


def test_ffmpeg_running_out_of_disk_is_one_line_and_keeps_the_old_video(tmp_path, monkeypatch):
    target = tmp_path / "a.mp4"
    write_mp4(target, clip())
    old = target.read_bytes()
    monkeypatch.setattr(video_io, "ffmpeg_exe", lambda: fake_ffmpeg(
        tmp_path, "[out#0/mp4] Error writing trailer: No space left on device", 228))
    with pytest.raises(WriteError) as info:
        write_mp4(target, clip())
    assert str(info.value) == f"no space left on device while writing {target}"
    assert sorted(os.listdir(tmp_path)) == ["a.mp4", "ffmpeg"] and target.read_bytes() == old


def test_an_ffmpeg_failure_is_reported_with_its_message_and_leaves_nothing(tmp_path, monkeypatch):
    """imageio's writer ignored ffmpeg's exit status: a failed encode used to be renamed into place."""
    monkeypatch.setattr(video_io, "ffmpeg_exe", lambda: fake_ffmpeg(tmp_path, "Conversion failed!", 1))
    with pytest.raises(WriteError, match=r"ffmpeg failed \(exit status 1\) while writing .*a.mp4.*Conversion failed!"):
        write_mp4(tmp_path / "a.mp4", clip())
    assert os.listdir(tmp_path) == ["ffmpeg"]


def test_the_mp4_writer_removes_temps_of_a_killed_earlier_write(tmp_path):
    stale = tmp_path / ".a.mp4.k2j4h5g6.salt.tmp.mp4"
    stale.write_bytes(b"left by SIGKILL")
    foreign = tmp_path / ".b.mp4.k2j4h5g6.salt.tmp.mp4"
    foreign.write_bytes(b"another target's")
    write_mp4(tmp_path / "a.mp4", clip())
    assert sorted(os.listdir(tmp_path)) == [foreign.name, "a.mp4"]
    assert read_mp4(tmp_path / "a.mp4")[0].shape == (4, 16, 16, 3)
