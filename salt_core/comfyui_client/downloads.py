"""Where a server's output file may be written, and writing it there safely.

The server names each output with {"filename", "subfolder", "type"}; those names are untrusted. The rules:
* `type` is one of ComfyUI's folders: output, temp or input.
* `subfolder` is split at "/" and "\\" (ComfyUI on Windows sends backslashes); each part, and `filename`,
  must be a plain name: not empty, ".", ".."; no NUL or other control characters, no ":" (drive letters,
  NTFS streams), no trailing dot or space, no Windows device name (CON, NUL, COM1, ...), at most 255 bytes.
  So an absolute path, `../x`, `C:\\x` or `a/../../x` is refused, and `filename` has no folder part at all.
* The folder the file lands in, with symlinks resolved, must still be inside --out (a symlink already in
  --out cannot lead outside it).
An entry breaking a rule is refused with the reason; nothing is written for it.

Writing: the body streams in pieces into a hidden temporary file next to the target, capped at the given
number of bytes (an announced Content-Length over the cap, or over the free disk space, is refused before
anything is written), then is moved into place atomically. An existing file is never replaced: the new
one gets the first free name "stem-2.ext", "stem-3.ext", ... and the report says so.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile

from .errors import UnsafeAnswer, shown, size_text

FOLDER_TYPES = ("output", "temp", "input")
MAX_DOWNLOAD_BYTES = 16 << 30  # per file; a long 14B video at high bitrate is a few GiB
_DEVICE_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _name_problem(part: str) -> str | None:
    if part in ("", ".", ".."):
        return f"{part!r} is not a plain name"
    if _CONTROL.search(part):
        return "it contains a NUL or control character"
    if ":" in part:
        return "it contains ':' (a drive letter or stream name)"
    if part[-1] in ". ":
        return "it ends with a dot or space"
    if part.split(".", 1)[0].upper() in _DEVICE_NAMES:
        return "it is a Windows device name"
    if len(part.encode("utf-8", "surrogatepass")) > 255:
        return "it is longer than 255 bytes"
    return None


def safe_target(out_dir: str, entry: dict) -> str:
    """The path an output entry may be written to inside out_dir; UnsafeAnswer says which field and why."""
    where = f"output {shown(entry.get('filename'), 80)} (subfolder {shown(entry.get('subfolder'), 80)})"
    if entry.get("type") not in FOLDER_TYPES:
        raise UnsafeAnswer(f"{where}: type {shown(entry.get('type'), 40)} is not one of {', '.join(FOLDER_TYPES)}")
    filename = entry["filename"]
    if "/" in filename or "\\" in filename:
        raise UnsafeAnswer(f"{where}: the filename has a folder part")
    problem = _name_problem(filename)
    if problem:
        raise UnsafeAnswer(f"{where}: the filename is refused: {problem}")
    subfolder = entry.get("subfolder") or ""
    parts = re.split(r"[/\\]", subfolder) if subfolder else []
    for part in parts:
        problem = _name_problem(part)
        if problem:
            raise UnsafeAnswer(f"{where}: the subfolder is refused: {problem}")
    root = os.path.realpath(out_dir)
    folder = os.path.realpath(os.path.join(root, *parts))
    try:
        inside = os.path.commonpath([root, folder]) == root
    except ValueError:  # another drive (Windows)
        inside = False
    if not inside:
        raise UnsafeAnswer(f"{where}: the subfolder leads outside --out through a symlink")
    return os.path.join(folder, filename)


def _free_name(path: str) -> str:
    stem, ext = os.path.splitext(path)
    k = 2
    while os.path.lexists(path):
        path = f"{stem}-{k}{ext}"
        k += 1
    return path


def _place(tmp: str, path: str) -> str:
    """Move the finished temporary file to `path`, or to the first free "stem-k.ext" if that exists;
    never replaces a file (a hard link fails on an existing name; where links are unsupported an
    exclusive create reserves the name first)."""
    while True:
        path = _free_name(path)
        try:
            os.link(tmp, path)
            os.unlink(tmp)
            return path
        except FileExistsError:
            continue
        except OSError:
            pass
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            continue
        os.replace(tmp, path)
        return path


def write_download(path: str, download, max_bytes: int = MAX_DOWNLOAD_BYTES) -> str:
    """Stream a download (`.length`, `.pieces()`, `.what`) to path atomically -> the path written."""
    if download.length is not None and download.length > max_bytes:
        raise UnsafeAnswer(f"{download.what}: {download.length} bytes announced, more than the cap of "
                           f"{size_text(max_bytes)} per file")
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    if download.length is not None:
        free = shutil.disk_usage(folder).free
        if download.length > free:
            raise OSError(f"{download.what}: {download.length} bytes announced, but only {free} bytes are "
                          f"free in {folder}; nothing was written")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")
    try:
        size = 0
        with os.fdopen(fd, "wb") as f:
            for piece in download.pieces():
                size += len(piece)
                if size > max_bytes:
                    raise UnsafeAnswer(f"{download.what}: more than the cap of {size_text(max_bytes)} per file; "
                                       "the partial file was removed")
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        if download.length is not None and size != download.length:
            raise OSError(f"{download.what}: {size} of {download.length} bytes came; the partial file was removed")
        return _place(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
