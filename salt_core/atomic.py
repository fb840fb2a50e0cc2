"""Atomic file writes: write a hidden temp file next to the target, fsync, then rename over it.

An error (or interrupt) at any point removes the temp file and leaves an existing target untouched.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Union

PathLike = Union[str, os.PathLike]


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


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temp path (same folder, same suffix) to write; on success it replaces `path`."""
    target = Path(os.path.abspath(os.fspath(path)))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(str(target.parent))


def atomic_write(path: PathLike, write: Callable[[str], None]) -> str:
    """write(tmp_path) fills a temp file that then atomically becomes `path`. Returns the absolute path."""
    with atomic_path(path) as tmp:
        write(str(tmp))
    return os.path.abspath(os.fspath(path))
