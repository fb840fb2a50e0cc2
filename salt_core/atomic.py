"""Atomic file writes: write a hidden temp file next to the target, fsync, then rename over it.

* An error or an interrupt at any point removes the temp file and leaves an existing target untouched.
* The finished file gets the mode a plain ``open(path, "w")`` would give it (``0666 & ~umask``), not the
  ``0600`` of the temp file.
* Temp files are named ``.<target name>.<8 random chars>.salt.tmp<target suffix>`` (the suffix is kept
  because some writers, e.g. ffmpeg, pick the format from it). A process killed mid-write (SIGKILL)
  leaves one behind; :func:`remove_stale_temps` deletes those of one target, and only those of a dead
  writer: on POSIX a live writer holds an ``flock`` on its temp for the whole write.
* A full disk gives :class:`WriteError` "no space left on device while writing <target>", whatever the
  library that wrote (torch, safetensors, ffmpeg) made of the ``ENOSPC``.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

try:
    import fcntl
except ImportError:  # Windows: no flock; an open file cannot be deleted there anyway
    fcntl = None

PathLike = Union[str, os.PathLike]

TEMP_MARK = ".salt.tmp"
_RANDOM = r"[a-z0-9_]{8}"  # what tempfile.mkstemp puts between prefix and suffix
# .<name>.<random>.salt.tmp<suffix>, and the two forms earlier versions of this module wrote
_TEMP_FORMS = (
    re.compile(rf"^\.(?P<name>.+)\.{_RANDOM}\.salt\.tmp(?P<suffix>\.[^.]*)?$"),
    re.compile(rf"^\.(?P<stem>.+)\.{_RANDOM}\.tmp(?P<suffix>\.[^.]*)?$"),  # .<stem>.<random>.tmp<suffix>
    re.compile(rf"^\.(?P<name>.+)\.{_RANDOM}\.tmp$"),                       # .<name>.<random>.tmp
)
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DISK_FULL_TEXT = ("no space left on device", "disk quota exceeded", "os error 28")


class WriteError(OSError, ValueError):
    """A file could not be written. The message names the file and the reason; nothing was left at the
    target (an existing file there is unchanged). An OSError (``.errno`` set when known) and a ValueError,
    so command lines that report bad input in one line report this too."""

    def __init__(self, message: str, code: Optional[int] = None, path: Optional[PathLike] = None):
        super().__init__(code, message)
        self.message = message
        self.filename = os.fspath(path) if path is not None else None

    def __str__(self) -> str:
        return self.message


def mentions_disk_full(text: str) -> bool:
    """True if a message (e.g. ffmpeg's stderr) says the disk or the quota is full."""
    text = text.lower()
    return any(t in text for t in _DISK_FULL_TEXT)


def is_disk_full(err: BaseException) -> bool:
    """True for ENOSPC / EDQUOT, also when a library only kept the text (safetensors: "os error 28")."""
    return (isinstance(err, OSError) and err.errno in _DISK_FULL) or mentions_disk_full(str(err))


def disk_full_error(target: PathLike) -> WriteError:
    return WriteError(f"no space left on device while writing {os.fspath(target)}", errno.ENOSPC, target)


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux), else by a quick set-and-restore."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode open(path, 'w') gives a new file: 0666 & ~umask."""
    return 0o666 & ~current_umask()


# ----------------------------------------------------------------------------- temp names

def temp_target_name(name: str) -> Optional[str]:
    """The target file name a temp file of ours (any version) stands for, or None if `name` is not ours."""
    for form in _TEMP_FORMS:
        m = form.match(name)
        if not m:
            continue
        groups = m.groupdict()
        if "stem" in groups:
            target = groups["stem"] + (groups["suffix"] or "")
        else:
            target = groups["name"]
            if groups.get("suffix") is not None and Path(target).suffix != groups["suffix"]:
                continue
        return target
    return None


def _is_locked(path: str) -> bool:
    """True if a live writer holds the temp (POSIX flock); False if nobody does or flock is unavailable."""
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # vanished or unreadable: leave it alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def remove_temps_in(folder: PathLike, wanted: Callable[[str], bool]) -> list[str]:
    """Delete our stale temp files in `folder` whose target name satisfies `wanted`; returns their names.

    Never touches other files, symlinks, or a temp a live writer still holds."""
    folder = os.fspath(folder)
    removed: list[str] = []
    try:
        names = sorted(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for name in names:
        target = temp_target_name(name)
        if target is None or not wanted(target):
            continue
        path = os.path.join(folder, name)
        if os.path.islink(path) or not os.path.isfile(path) or _is_locked(path):
            continue
        try:
            os.remove(path)
        except (FileNotFoundError, PermissionError):  # gone already / open elsewhere (Windows)
            continue
        removed.append(name)
    return removed


def remove_stale_temps(target: PathLike) -> list[str]:
    """Delete the temps that killed writes of `target` left next to it; returns the removed names."""
    target = Path(os.path.abspath(os.fspath(target)))
    return remove_temps_in(target.parent, lambda name: name == target.name)


# ----------------------------------------------------------------------------- writing

def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_in_folder_path(target: Path) -> Optional[Path]:
    """The nearest existing ancestor of `target` if it is not a folder (so `target` cannot be created), else None."""
    for parent in target.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _refuse_folder(target: Path) -> None:
    if target.is_dir():
        raise WriteError(f"cannot write {target}: it is a folder; give a file name", errno.EISDIR, target)


def _write_error(e: OSError, target: Path, folder: Path) -> WriteError:
    """A clear WriteError for a failure to create a file in `folder` (the usual causes by name)."""
    if isinstance(e, (FileExistsError, NotADirectoryError)) or e.errno == errno.ENOTDIR:
        blocker = _file_in_folder_path(target) or folder
        return WriteError(f"cannot write {target}: {blocker} is a file, not a folder", errno.ENOTDIR, target)
    if isinstance(e, PermissionError):
        return WriteError(f"cannot write {target}: permission denied in {folder}", errno.EACCES, target)
    if e.errno == errno.EROFS:
        return WriteError(f"cannot write {target}: {folder} is on a read-only file system", errno.EROFS, target)
    if is_disk_full(e):
        return disk_full_error(target)
    return WriteError(f"cannot write {target}: {e.strerror or e} (creating a file in {folder})", e.errno, target)


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM arriving in the block are held and re-raised when it ends (main thread only, where
    Python runs signal handlers): a file created inside cannot be orphaned by an interrupt that lands between
    its creation and its cleanup being armed. (Masking the signals would not do: any of torch's threads may
    take a process signal.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    kinds = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in kinds}
    try:
        yield
    finally:
        for s, handler in previous.items():  # None: a handler set outside Python; the default is the closest
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        for s in dict.fromkeys(held):
            signal.raise_signal(s)  # now handled as it would have been


def _new_temp(target: Path, folder: Optional[Path] = None) -> tuple[int, str]:
    """Create and open a temp file of ours for `target` in `folder` (default: the target's folder, made if missing)."""
    folder = folder or target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=f".{target.name}.", suffix=f"{TEMP_MARK}{target.suffix}", dir=folder)
    except OSError as e:
        raise _write_error(e, target, folder) from None


def check_target_writable(path: PathLike, min_free_bytes: int = 1 << 20) -> Path:
    """Check, before any work, that `path` can be written as a file: it is not a folder, no part of its folder
    path is a file, its (nearest existing) folder accepts a new file, and that folder's disk has at least
    `min_free_bytes` free. Raises WriteError naming the path and the reason; creates and leaves nothing."""
    target = Path(os.path.abspath(os.fspath(path)))
    _refuse_folder(target)
    blocker = _file_in_folder_path(target)
    if blocker is not None:
        raise WriteError(f"cannot write {target}: {blocker} is a file, not a folder", errno.ENOTDIR, target)
    folder = next(p for p in target.parents if p.exists())  # the root always exists
    with _interrupts_deferred():  # the probe never outlives an interrupt
        fd, probe = _new_temp(target, folder)
        os.close(fd)
        os.remove(probe)
    free = shutil.disk_usage(folder).free
    if free < min_free_bytes:
        raise WriteError(f"no space left on device for {target}: {free} bytes free in {folder}", errno.ENOSPC, target)
    return target


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp path (same folder, same suffix) to write; on success it replaces `path`."""
    target = Path(os.path.abspath(os.fspath(path)))
    _refuse_folder(target)
    fd, tmp = -1, None
    try:
        with _interrupts_deferred():  # a Ctrl+C / SIGTERM lands after `tmp` is known, so its cleanup runs
            fd, tmp = _new_temp(target)
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd closes: after the rename, or on SIGKILL
            else:
                os.close(fd)
                fd = -1
        yield Path(tmp)
        os.chmod(tmp, default_file_mode())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as e:
        try:
            if tmp is not None:
                os.remove(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, Exception) and not isinstance(e, WriteError) and is_disk_full(e):
            raise disk_full_error(target) from None
        raise
    finally:
        if fd >= 0:
            os.close(fd)
    _fsync_dir(str(target.parent))


def atomic_write(path: PathLike, write: Callable[[str], None]) -> str:
    """write(tmp_path) fills a temp file that then atomically becomes `path`. Returns the absolute path."""
    with atomic_path(path) as tmp:
        write(str(tmp))
    return os.path.abspath(os.fspath(path))


def atomic_write_text(path: PathLike, text: str) -> str:
    """Write `text` (UTF-8) to `path` atomically. Returns the absolute path."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return atomic_write(path, write)


# ----------------------------------------------------------------------------- signals

@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread, so a `kill` takes the same clean
    path as Ctrl+C (temps removed, targets untouched). The previous handler is restored afterwards.

    Signal handlers can only be set from the main thread; elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt("terminated (SIGTERM)")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        # None means a handler set outside Python; the default action is the closest we can restore
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
