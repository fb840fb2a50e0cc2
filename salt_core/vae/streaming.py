"""Streaming VAE decode: latents in, pixel frames out, one chunk at a time.

The decoder's causal convs keep at most 2 past frames each in a `FeatureCache`, so memory is
bounded by the chunk size, not by the video length, and the concatenation of all outputs
equals `WanVAE.decode` of the whole latent tensor.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional

import torch
from torch import Tensor

from .layers import FeatureCache

if TYPE_CHECKING:
    from .model import WanVAE

# `frames_per_step=None` (auto): decode a whole chunk per decoder pass while its largest activation stays
# under this many bytes. Whole chunks are ~30% faster on CPU for small frames (fewer, bigger convs; at
# 256x256 and up one frame per pass is as fast and smaller); 1 latent frame per pass is
# the memory floor (a real 832x480 frame at full resolution already needs ~1.2 GB per activation).
AUTO_STEP_BYTES = 32 * 2**20


def auto_frames_per_step(vae: "WanVAE", z_chunk: Tensor) -> int:
    """Latent frames per decoder pass for `z_chunk` [B, z, t, h, w] under `AUTO_STEP_BYTES`."""
    cfg = vae.config
    b, _, t, h, w = z_chunk.shape
    s = cfg.spatial_factor
    # Largest decoder activation per latent frame: temporal_factor frames of 2*dim channels at full size.
    per_frame = b * cfg.temporal_factor * 2 * cfg.dim * (h * s) * (w * s) * z_chunk.element_size()
    return max(1, min(t, AUTO_STEP_BYTES // max(per_frame, 1)))


class StreamingDecoder:
    """Decode a latent video chunk by chunk.

        dec = vae.streaming_decoder()
        frames = dec.decode_next(z_chunk)   # z_chunk: [B, z, t, h, w] raw latents, t >= 1

    The first latent frame of the stream gives 1 pixel frame, every later one gives
    `temporal_factor` (4) frames; output is [B, 3, n, 8h, 8w] clamped to [-1, 1].
    Run under `torch.inference_mode()` unless gradients are wanted (the cache keeps the graph).
    """

    def __init__(self, vae: "WanVAE", frames_per_step: Optional[int] = 1) -> None:
        """frames_per_step: latent frames per decoder pass (1 = least memory, the official way);
        None = auto: a whole chunk per pass when it fits `AUTO_STEP_BYTES` (faster), else 1."""
        if frames_per_step is not None and int(frames_per_step) < 1:
            raise ValueError(f"StreamingDecoder: frames_per_step={frames_per_step} must be >= 1")
        self.vae = vae
        self.frames_per_step = None if frames_per_step is None else int(frames_per_step)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next call starts a new video."""
        self.cache = FeatureCache()
        self.latent_frames_in = 0
        self.frames_out = 0
        self._geometry: tuple[int, int, int] | None = None  # (B, h, w) of the stream

    def decode_next(self, z_chunk: Tensor) -> Tensor:
        """z_chunk: [B, z, t, h, w] (t >= 1) -> pixel frames [B, 3, n, 8h, 8w] with
        n = 1 + 4(t-1) on the first call of a stream and 4t afterwards."""
        who = f"{type(self).__name__}.decode_next"
        z = self.vae.validate_latent(z_chunk, who)
        b, _, t, h, w = z.shape
        if self._geometry is not None and self._geometry != (b, h, w):
            raise ValueError(
                f"{who}: chunk has (B, h, w) = "
                f"{(b, h, w)} but the stream started with {self._geometry}; call reset() for a new video"
            )
        self._prepare(z)  # checks that need the stream's geometry, before any compute
        self._geometry = (b, h, w)
        frames = self._decode(z).clamp_(-1.0, 1.0)
        self.latent_frames_in += t
        self.frames_out += frames.shape[2]
        return frames

    def _prepare(self, z: Tensor) -> None:
        """Hook for subclasses: called with each validated chunk before it is decoded."""

    def _decode(self, z: Tensor) -> Tensor:
        """z: [B, z, t, h, w] -> pixels [B, 3, n, 8h, 8w] (before clamping). Every op sees one step at a
        time (conv2 too), so with a fixed frames_per_step any split into chunks gives the same bits."""
        step = self.frames_per_step or auto_frames_per_step(self.vae, z)
        return torch.cat([self.vae.decoder(self.vae.conv2(s), self.cache) for s in z.split(step, dim=2)], dim=2)

    def cache_nbytes(self) -> int:
        """Bytes held between calls (bounded by the frame size, independent of video length)."""
        return self.cache.nbytes()


def iter_decode(vae: "WanVAE", z: Tensor, chunk_frames: int = 1, frames_per_step: int = 1) -> Iterator[Tensor]:
    """Decode raw latents [B, z, t, h, w] `chunk_frames` latent frames at a time, yielding pixel
    chunks [B, 3, n, 8h, 8w]; their concatenation along dim 2 equals `vae.decode(z)`.
    `frames_per_step`: latent frames per decoder pass inside a chunk (1 = least memory)."""
    if int(chunk_frames) < 1:
        raise ValueError(f"iter_decode: chunk_frames={chunk_frames} must be >= 1")
    decoder = StreamingDecoder(vae, frames_per_step=frames_per_step)
    for chunk in z.split(int(chunk_frames), dim=2):
        yield decoder.decode_next(chunk)
