"""Checks of user-facing generation parameters; each failure is a ValueError naming the parameter."""
from __future__ import annotations

from typing import Optional

import torch

VAE_TIME = 4
VAE_SPACE = 8
SIZE_MULTIPLE = 16  # VAE 8x times patch 2x


def _is_positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def latent_frames_for(frames: int) -> int:
    """Pixel frames (4k+1) -> latent frames (k+1)."""
    if not _is_positive_int(frames):
        raise ValueError(f"frames must be of the form 4k+1 (1, 5, 9, ..., 81, ...), a positive integer, got {frames!r}")
    if (frames - 1) % VAE_TIME:
        lower = frames - (frames - 1) % VAE_TIME
        raise ValueError(f"frames must be of the form 4k+1 (1, 5, 9, ..., 81, ...), got {frames}: "
                         f"the nearest are {lower} and {lower + VAE_TIME}")
    return (frames - 1) // VAE_TIME + 1


def pixel_frames_for(latent_frames: int, temporal: int = VAE_TIME) -> int:
    """Latent frames (k+1) -> pixel frames (1 + temporal*k) for a VAE with that temporal factor."""
    return 1 + temporal * (latent_frames - 1)


def latent_size_for(height: int, width: int) -> tuple[int, int]:
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, int) or v < SIZE_MULTIPLE or v % SIZE_MULTIPLE:
            raise ValueError(f"{name} must be a positive multiple of {SIZE_MULTIPLE} (e.g. 480, 832), got {v!r}")
    return height // VAE_SPACE, width // VAE_SPACE


def divisors(n: int) -> list[int]:
    """Divisors of n in increasing order, in O(√n)."""
    small, large = [], []
    d = 1
    while d * d <= n:
        if n % d == 0:
            small.append(d)
            if d * d != n:
                large.append(n // d)
        d += 1
    return small + large[::-1]


def nearest_whole_chunk_frames(latent_frames: int, chunk_frames: int) -> list[int]:
    """The pixel frame counts (4F·k − 3) of whole chunks just below and above `latent_frames` (the one below only
    when it holds at least one chunk)."""
    lower = (latent_frames // chunk_frames) * chunk_frames
    return [pixel_frames_for(n) for n in (lower, lower + chunk_frames) if n >= 1]


def check_pixel_frames(frames, chunk_frames: Optional[int] = None) -> int:
    """`latent_frames_for`, whose refusal of a count that is not 4k+1 also names, for a causal model sampling
    chunks of `chunk_frames` latent frames, the nearest counts that fill whole chunks."""
    try:
        return latent_frames_for(frames)
    except ValueError as e:
        if chunk_frames is None or not _is_positive_int(frames):  # not a count at all: the plain refusal
            raise
        nearest = nearest_whole_chunk_frames((frames - 1) // VAE_TIME + 1, chunk_frames)
        raise ValueError(f"{e}; for this model's chunks of {chunk_frames} latent frames, the nearest that fill "
                         f"whole chunks are {' and '.join(map(str, nearest))} "
                         f"({4 * chunk_frames}k − 3 frames)") from None


def check_chunking(latent_frames: int, chunk_frames: int) -> int:
    """The number of chunks; a length that does not fill whole chunks is refused, naming the nearest that do."""
    if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
        raise ValueError(f"chunk_frames must be a positive integer, got {chunk_frames!r}")
    if latent_frames % chunk_frames:
        F = chunk_frames
        nearest = nearest_whole_chunk_frames(latent_frames, F)
        sizes = divisors(latent_frames) if latent_frames <= 10**12 else []
        raise ValueError(
            f"{pixel_frames_for(latent_frames)} video frames ({latent_frames} latent frames) do not fill whole chunks "
            f"of {F} latent frames (chunk_frames={F} does not divide the {latent_frames} latent frames): "
            f"the nearest video frame counts that do are {' and '.join(map(str, nearest))} "
            f"({4 * F}k − 3 frames for chunks of {F})"
            + (f"; chunk sizes that divide this length: {sizes}" if sizes else "")
        )
    return latent_frames // chunk_frames


def check_conditioning(context: torch.Tensor, name: str = "conditioning") -> None:
    if context is None:
        raise ValueError(f"{name} is missing: give a prompt embedding [B, L, text_dim]")
    if not isinstance(context, torch.Tensor) or context.ndim != 3:
        shape = tuple(context.shape) if isinstance(context, torch.Tensor) else type(context).__name__
        raise ValueError(f"{name} must be a tensor [B, L, text_dim], got {shape}")
    if context.shape[0] == 0 or context.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(context.shape)}): give a non-empty prompt embedding")
    check_finite(context, name)


def check_finite(x: torch.Tensor, name: str) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
