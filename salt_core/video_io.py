"""Video IO: H.264 MP4 and PNG sequences, streamed chunk by chunk, written atomically.

Conventions (each one has its own function name, so a call site says which it means):

* **frames** — ``[T, H, W, 3]`` RGB, either float in 0..1 (the ComfyUI ``IMAGE`` convention)
  or uint8 in 0..255. Writers take one such tensor *or an iterable of chunks* ``[t, H, W, 3]``
  (e.g. a generator fed by a streaming VAE decode), so a long video never has to be in memory
  at once.
* **model space** — float in [-1, 1], channels first: ``[3, T, H, W]`` or ``[B, 3, T, H, W]``
  (what the VAE decodes to / encodes from). Convert with :func:`frames_from_model_space` and
  :func:`frames_to_model_space`.

MP4 files are H.264, yuv420p, BT.709 (tagged), encoded by the ffmpeg binary that
``imageio-ffmpeg`` ships, fed through a pipe; its exit status and messages are checked.
yuv420p needs even width and height: an odd size is a ``ValueError`` unless ``pad_odd=True``,
which repeats the last row/column (the file is then one pixel larger).
Writes go to a hidden temp file in the target folder (salt_core.atomic) and are moved into place
with ``os.replace`` only on success: a failure (a full disk included) leaves neither a half-written
file at the target path nor the temp file, and an existing file there stays as it was.
:func:`check_writable` checks an MP4 target before any frame is made.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import numpy as np
import torch

from .atomic import (WriteError, atomic_path, check_target_writable, disk_full_error, mentions_disk_full,
                     remove_stale_temps)

FrameSource = Union[torch.Tensor, np.ndarray, Iterable[Union[torch.Tensor, np.ndarray]]]

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# swscale's defaults (fast chroma interpolation, truncating rounding) cost ~3 levels of error and a
# -1 level bias on a yuv420p round trip; these flags bring it to ~0.6 levels, unbiased.
_SWS_FLAGS = "accurate_rnd+full_chroma_int+bicubic"
_CONVERT_CHUNK = 16  # frames converted to uint8 at a time when a whole clip is given as one tensor
_MODEL_SPACE_HINT = "model-space [-1, 1] channels-first tensors go through frames_from_model_space() first"


# ----------------------------------------------------------------------------- conversions

def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    if isinstance(x, torch.Tensor):
        return x
    raise TypeError(f"{name}: expected a torch.Tensor or numpy array, got {type(x).__name__}")


def _check_finite(x: torch.Tensor, name: str) -> None:
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or inf values")


def to_uint8_frames(frames, name: str = "frames") -> torch.Tensor:
    """Frames ``[T, H, W, 3]`` (float 0..1 or uint8) -> contiguous CPU uint8 ``[T, H, W, 3]``.

    Floats are clamped to 0..1 and rounded. Values far outside 0..1 (below -0.5 or above 1.5)
    are refused: they almost always mean a model-space tensor was passed by mistake.
    """
    x = _as_tensor(frames, name)
    if x.dim() != 4 or x.shape[-1] != 3:
        hint = f"; {_MODEL_SPACE_HINT}" if x.dim() in (4, 5) and 3 in x.shape[:2] else ""
        if x.dim() == 3 and x.shape[-1] == 3:
            hint = "; a single frame [H, W, 3] must be given as [1, H, W, 3]"
        raise ValueError(f"{name}: expected shape [T, H, W, 3] (RGB, channels last), "
                         f"got {tuple(x.shape)}{hint}")
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise ValueError(f"{name}: frame size is {x.shape[2]}x{x.shape[1]} (W x H); both must be > 0")
    if x.dtype == torch.uint8:
        return x.detach().cpu().contiguous()
    if not x.is_floating_point():
        raise ValueError(f"{name}: dtype must be uint8 (0..255) or floating (0..1), got {x.dtype}")
    x = x.detach()
    _check_finite(x, name)
    if x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < -0.5 or hi > 1.5:
            raise ValueError(f"{name}: float values span [{lo:.3g}, {hi:.3g}] but frames are 0..1 "
                             f"(ComfyUI IMAGE); {_MODEL_SPACE_HINT}")
    return (x.float().clamp(0, 1) * 255).round_().to(torch.uint8).cpu().contiguous()


def frames_from_model_space(x: torch.Tensor) -> torch.Tensor:
    """Model space ``[3, T, H, W]`` or ``[B, 3, T, H, W]`` in [-1, 1] -> float32 frames ``[T', H, W, 3]`` in 0..1.

    Batch items are concatenated along time (``T' = B*T``), as ComfyUI's VAEDecode does for video.
    """
    x = _as_tensor(x, "x")
    if x.dim() == 4 and x.shape[0] == 3:
        x = x.unsqueeze(0)
    if x.dim() != 5 or x.shape[1] != 3:
        raise ValueError(f"x: expected model-space shape [3, T, H, W] or [B, 3, T, H, W], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x: model-space tensors are floating point in [-1, 1], got dtype {x.dtype}")
    _check_finite(x, "x")
    x = ((x.detach().float().clamp(-1, 1) + 1) * 0.5)  # [B, 3, T, H, W]
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 3, 4, 1).reshape(b * t, h, w, c)


def frames_to_model_space(frames) -> torch.Tensor:
    """Frames ``[T, H, W, 3]`` (float 0..1 or uint8) -> float32 model space ``[1, 3, T, H, W]`` in [-1, 1]."""
    x = _as_tensor(frames, "frames")
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"frames: expected shape [T, H, W, 3], got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255
    elif x.is_floating_point():
        _check_finite(x, "frames")
        x = x.float().clamp(0, 1)
    else:
        raise ValueError(f"frames: dtype must be uint8 (0..255) or floating (0..1), got {x.dtype}")
    return (x * 2 - 1).permute(3, 0, 1, 2).unsqueeze(0).contiguous()


def iter_uint8_chunks(frames: FrameSource, name: str = "frames") -> Iterator[torch.Tensor]:
    """Yield uint8 CPU chunks ``[t, H, W, 3]`` from one tensor or an iterable of chunks.

    Checks every chunk (rank, channels, dtype, NaN) and that all chunks share one frame size.
    Empty chunks are skipped. Nothing is read ahead: one chunk is converted at a time.
    """
    if isinstance(frames, (torch.Tensor, np.ndarray)):
        x = _as_tensor(frames, name)
        to_uint8_frames(x[:0] if x.dim() else x, name)  # shape/dtype checks, even for an empty tensor
        chunks: Iterable = (x[i:i + _CONVERT_CHUNK] for i in range(0, x.shape[0], _CONVERT_CHUNK))
        label = lambda i: name  # noqa: E731
    elif isinstance(frames, (str, bytes, os.PathLike)) or not hasattr(frames, "__iter__"):
        raise TypeError(f"{name}: expected a [T, H, W, 3] tensor or an iterable of [t, H, W, 3] chunks, "
                        f"got {type(frames).__name__}")
    else:
        chunks = frames
        label = lambda i: f"{name} (chunk {i})"  # noqa: E731
    size = None
    for i, chunk in enumerate(chunks):
        u8 = to_uint8_frames(chunk, label(i))
        if size is None:
            size = tuple(u8.shape[1:3])
        elif tuple(u8.shape[1:3]) != size:
            raise ValueError(f"{label(i)}: frame size {u8.shape[2]}x{u8.shape[1]} (W x H) differs from "
                             f"the first chunk's {size[1]}x{size[0]}")
        if u8.shape[0]:
            yield u8


def _pad_to_even(x: torch.Tensor) -> torch.Tensor:
    """Repeat the last row / column of ``[t, H, W, 3]`` so H and W become even."""
    if x.shape[1] % 2:
        x = torch.cat([x, x[:, -1:]], dim=1)
    if x.shape[2] % 2:
        x = torch.cat([x, x[:, :, -1:]], dim=2)
    return x


# ----------------------------------------------------------------------------- MP4

def _check_fps(fps) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)):
        raise ValueError(f"fps: expected a positive number, got {fps!r}")
    if not math.isfinite(float(fps)) or fps <= 0:
        raise ValueError(f"fps: must be a finite number > 0, got {fps!r}")
    return Fraction(fps).limit_denominator(100000)


def _check_mp4_name(path: Path) -> None:
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"path: write_mp4 writes .mp4 files, got extension {path.suffix or '(none)'!r} "
                         f"in {str(path)!r}")


def ffmpeg_exe() -> str:
    """The ffmpeg binary that imageio-ffmpeg ships (or the one IMAGEIO_FFMPEG_EXE names)."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        raise RuntimeError(f"write_mp4 needs ffmpeg: pip install imageio-ffmpeg ({e})") from None


def check_writable(path: Union[str, os.PathLike]) -> Path:
    """Check an MP4 target before any frame is made (call it before sampling): a .mp4 name, not a folder, no
    file where a folder of its path should be, a folder that accepts a new file, some free space, and ffmpeg
    present. Raises a ValueError (a WriteError, also an OSError, but for the name) with one clear line; writes
    nothing."""
    path = Path(path)
    target = check_target_writable(path)  # a folder, a file in its path, permissions, space: named first
    _check_mp4_name(path)
    try:
        ffmpeg_exe()
    except RuntimeError as e:
        raise WriteError(f"cannot write {target}: {e}", None, target) from None
    return target


def _ffmpeg_command(size: tuple[int, int], fps: Fraction, crf: int, preset: str, out: str) -> list[str]:
    w, h = size
    return [
        ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error",
        "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{w}x{h}", "-pix_fmt", "rgb24", "-r", str(fps), "-i", "-",
        "-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p",
        "-vf", f"scale=out_color_matrix=bt709:out_range=tv:flags={_SWS_FLAGS}",
        "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
        "-crf", str(crf), "-preset", preset, "-movflags", "+faststart", out,
    ]


def _ffmpeg_failure(log, returncode: Optional[int], path: Path) -> Exception:
    """The error for an ffmpeg that exited early or with a failure status; `log` is the file of its stderr."""
    log.seek(0)
    lines = [ln.strip() for ln in log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    if mentions_disk_full(" ".join(lines)):
        return disk_full_error(path)
    said = lines[-1] if lines else "no message"
    return WriteError(f"write_mp4: ffmpeg failed (exit status {returncode}) while writing {str(path)!r}: {said}",
                      None, path)


def _encode(chunks: Iterator[torch.Tensor], first: torch.Tensor, cmd: list[str], pad_odd: bool, path: Path) -> int:
    """Pipe uint8 chunks [t, H, W, 3] into ffmpeg (cmd); -> frames written. Any failure or interrupt kills ffmpeg."""
    session = {"start_new_session": True} if os.name == "posix" else {
        "creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    with tempfile.TemporaryFile() as log:  # ffmpeg's stderr: a file cannot fill up and stall it like a pipe
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, **session)
        count = 0
        try:
            chunk, first = first, None
            while chunk is not None:
                data = (_pad_to_even(chunk) if pad_odd else chunk).numpy()
                try:
                    proc.stdin.write(data)
                except OSError:  # broken pipe: ffmpeg has quit
                    proc.wait()
                    raise _ffmpeg_failure(log, proc.returncode, path) from None
                count += data.shape[0]
                chunk = data = None  # drop our references before the source makes the next chunk
                chunk = next(chunks, None)
            try:
                proc.stdin.close()
            except OSError:  # ffmpeg quit before reading the last bytes; its status says why
                pass
            if proc.wait() != 0:
                raise _ffmpeg_failure(log, proc.returncode, path)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise
    return count


def write_mp4(path: Union[str, os.PathLike], frames: FrameSource, fps: float = 16, *, crf: int = 19,
              preset: str = "medium", pad_odd: bool = False, name: str = "frames") -> tuple[str, int]:
    """Encode frames (a ``[T, H, W, 3]`` tensor or an iterable of ``[t, H, W, 3]`` chunks) to an
    H.264 yuv420p MP4. Returns ``(path, frames_written)``.

    ``crf``: x264 quality 0 (lossless-ish) .. 51 (worst); 19 is visually near-transparent.
    ``pad_odd``: repeat the last row/column for odd sizes instead of raising.
    ``name``: what error messages call the frames (e.g. a node's input name).
    The target is checked (:func:`check_writable`) before the first chunk is asked for, temps of earlier
    killed writes of it are removed, and the file appears at ``path`` only once ffmpeg finished it
    successfully (see the module docstring); a full disk is one "no space left on device" error.
    """
    path = Path(path)
    _check_mp4_name(path)
    fps_q = _check_fps(fps)
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"crf: expected an int in 0..51, got {crf!r}")
    if preset not in X264_PRESETS:
        raise ValueError(f"preset: expected one of {X264_PRESETS}, got {preset!r}")
    check_writable(path)
    remove_stale_temps(path)

    chunks = iter_uint8_chunks(frames, name)
    first = next(chunks, None)
    if first is None:
        raise ValueError(f"{name}: empty video (no frames given)")
    h, w = first.shape[1:3]
    if (h % 2 or w % 2) and not pad_odd:
        raise ValueError(f"{name}: H.264 yuv420p needs even width and height, got {w}x{h} (W x H); "
                         "crop/resize, or pass pad_odd=True to repeat the last row/column")
    size = (w + w % 2, h + h % 2)
    with atomic_path(path) as tmp:
        count = _encode(chunks, first, _ffmpeg_command(size, fps_q, crf, preset, str(tmp)), pad_odd, path)
        if not tmp.exists() or tmp.stat().st_size == 0:
            raise WriteError(f"write_mp4: ffmpeg produced no output for {str(path)!r}", None, path)
    return str(path), count


def read_mp4(path: Union[str, os.PathLike]) -> tuple[torch.Tensor, float]:
    """Decode a video file -> (uint8 frames ``[T, H, W, 3]``, fps). fps is 0.0 if the file has none.

    Loads every frame into memory: meant for tests and tools, not for long videos.
    """
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_mp4: no such file: {str(path)!r}")
    reader = imageio_ffmpeg.read_frames(str(path), output_params=["-sws_flags", _SWS_FLAGS])
    try:
        meta = next(reader)
        w, h = meta["size"]
        frames = [np.frombuffer(b, dtype=np.uint8).reshape(h, w, 3) for b in reader]
    except OSError as err:
        raise ValueError(f"read_mp4: cannot decode {str(path)!r}: {err}") from err
    finally:
        reader.close()
    if not frames:
        raise ValueError(f"read_mp4: no video frames could be decoded from {str(path)!r}")
    return torch.from_numpy(np.stack(frames)), float(meta.get("fps") or 0.0)


# ----------------------------------------------------------------------------- PNG sequences

def _png_pattern(prefix: str) -> re.Pattern:
    if not isinstance(prefix, str) or any(s in prefix for s in ("/", "\\", os.sep)):
        raise ValueError(f"prefix: must be a file-name prefix without path separators, got {prefix!r}")
    return re.compile(re.escape(prefix) + r"(\d+)\.png")


def _find_png_frames(folder: Path, prefix: str) -> dict[int, Path]:
    pattern = _png_pattern(prefix)
    found = {}
    for p in folder.iterdir() if folder.is_dir() else ():
        m = pattern.fullmatch(p.name)
        if m:
            found[int(m.group(1))] = p
    return found


def write_png_frames(folder: Union[str, os.PathLike], frames: FrameSource, prefix: str = "frame_", *,
                     overwrite: bool = False) -> tuple[str, int]:
    """Write ``<prefix>00000.png``, ``<prefix>00001.png``, ... (RGB, lossless) into ``folder``.

    ``frames``: a ``[T, H, W, 3]`` tensor or an iterable of chunks, as for :func:`write_mp4`.
    Each file is written atomically. If the folder already holds a ``<prefix>NNNNN.png`` sequence,
    this raises ``FileExistsError`` unless ``overwrite=True``, which replaces it (stale frames past
    the new length are deleted after a successful write). Returns ``(folder, frames_written)``.
    """
    from PIL import Image

    folder = Path(folder)
    existing = _find_png_frames(folder, prefix)
    if existing and not overwrite:
        raise FileExistsError(f"write_png_frames: {str(folder)!r} already has {len(existing)} "
                              f"'{prefix}NNNNN.png' frames; pass overwrite=True to replace them")
    chunks = iter_uint8_chunks(frames)
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for chunk in chunks:
        for frame in chunk.numpy():
            with atomic_path(folder / f"{prefix}{count:05d}.png") as tmp:
                Image.fromarray(frame, mode="RGB").save(tmp, format="PNG", compress_level=4)
            count += 1
    if count == 0:
        raise ValueError("frames: empty video (no frames given)")
    for index, p in existing.items():
        if index >= count:
            p.unlink(missing_ok=True)
    return str(folder), count


def read_png_frames(folder: Union[str, os.PathLike], prefix: str = "frame_") -> torch.Tensor:
    """Read a ``<prefix>NNNNN.png`` sequence (indices 0..T-1, no gaps) -> uint8 ``[T, H, W, 3]``.

    Grey or RGBA images are converted to RGB (alpha dropped).
    """
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"read_png_frames: no such folder: {str(folder)!r}")
    found = _find_png_frames(folder, prefix)
    if not found:
        raise ValueError(f"read_png_frames: no '{prefix}NNNNN.png' frames in {str(folder)!r}")
    missing = sorted(set(range(len(found))) - set(found))
    if missing:
        raise ValueError(f"read_png_frames: sequence in {str(folder)!r} has gaps; "
                         f"first missing index is {missing[0]}")
    frames = []
    for i in range(len(found)):
        with Image.open(found[i]) as im:
            frames.append(np.asarray(im.convert("RGB")))
        if frames[-1].shape != frames[0].shape:
            raise ValueError(f"read_png_frames: {found[i].name} is {frames[-1].shape[1]}x{frames[-1].shape[0]}, "
                             f"the first frame is {frames[0].shape[1]}x{frames[0].shape[0]} (W x H)")
    return torch.from_numpy(np.stack(frames))
