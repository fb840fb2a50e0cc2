"""Streaming VAE decode tiled in space: bounded memory at any frame size.

Per latent frame, the decoder's trunk (the first conv and the middle block, with its self-attention over
the whole frame) runs once on the whole latent frame: it is small at latent resolution, and the attention
stays exact. The rest (residual blocks and upsamplers up to full resolution, where the memory goes) is
purely convolutional; it runs tile by tile on overlapping rectangles of the trunk's features, each tile
with its own temporal `FeatureCache` (so every tile still streams in time), and the tiles' pixels are
blended with ramps that sum to 1. One tile covering the frame is exactly the untiled decode.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor

from .budget import estimate_decode_memory, min_tile, plan_tiles, receptive_radius_px
from .layers import FeatureCache
from .streaming import StreamingDecoder
from .tiling import RAMPS, TilePlan, axis_weights, pair

if TYPE_CHECKING:
    from .model import WanVAE

DEFAULT_OVERLAP = 8  # latent cells (64 pixels) shared by neighbouring tiles


class TiledStreamingDecoder(StreamingDecoder):
    """Decode a latent video chunk by chunk, each frame in overlapping spatial tiles.

        dec = TiledStreamingDecoder(vae, memory_budget=2 * 2**30)   # or tile=(32, 32)
        frames = dec.decode_next(z_chunk)   # [B, z, t, h, w] raw latents -> [B, 3, n, 8h, 8w] in [-1, 1]

    tile: (th, tw) latent cells (an int for both), at least `min_tile(vae)`; clipped to the frame.
    overlap: latent cells shared by neighbouring tiles, 0 <= overlap < tile.
    memory_budget: bytes for the decode's caches, transients and output (see `estimate_decode_memory`);
    without `tile`, the largest tile that fits is chosen when the first chunk shows the frame size; with
    it, the tile is checked against the budget. Neither: one tile, the untiled decode.
    blend: "cosine" or "linear" ramps over each overlap.
    """

    def __init__(self, vae: "WanVAE", tile=None, overlap=DEFAULT_OVERLAP, memory_budget: Optional[int] = None,
                 *, blend: str = "cosine", frames_per_step: int = 1) -> None:
        who = "TiledStreamingDecoder"
        self.overlap = pair(overlap, "overlap", who)
        if min(self.overlap) < 0:
            raise ValueError(f"{who}: overlap={overlap!r} must be >= 0 latent cells")
        self.tile = None if tile is None else pair(tile, "tile", who)
        if self.tile is not None:
            smallest = min_tile(vae)
            if min(self.tile) < smallest:
                raise ValueError(
                    f"{who}: tile={tile!r} is smaller than the decoder's receptive field: allowed tile sides "
                    f">= {smallest} latent cells (2 x {receptive_radius_px(vae)} px of receptive radius / "
                    f"{vae.config.spatial_factor} px per cell, + 1)")
            if any(o >= t for o, t in zip(self.overlap, self.tile)):
                raise ValueError(f"{who}: overlap={overlap!r} must be smaller than tile={tile!r} "
                                 "(allowed: 0 <= overlap < tile on each axis)")
        if memory_budget is not None and (not isinstance(memory_budget, int) or isinstance(memory_budget, bool)
                                          or memory_budget <= 0):
            raise ValueError(f"{who}: memory_budget={memory_budget!r} must be a positive number of bytes or None")
        if blend not in RAMPS:
            raise ValueError(f"{who}: blend={blend!r} is unknown; allowed: {list(RAMPS)}")
        if not isinstance(frames_per_step, int) or frames_per_step < 1:
            raise ValueError(f"{who}: frames_per_step={frames_per_step!r} must be an int >= 1")
        self.memory_budget = memory_budget
        self.blend = blend
        super().__init__(vae, frames_per_step=frames_per_step)

    def reset(self) -> None:
        """Forget the stream (and its tile plan): the next call starts a new video, of any size."""
        super().reset()
        self.plan: TilePlan | None = None
        self.tile_caches: list[FeatureCache] = []
        self._weights: list[tuple[Tensor, Tensor]] = []  # per tile: (rows [th*s], cols [tw*s]) float32

    def cache_nbytes(self) -> int:
        return self.cache.nbytes() + sum(c.nbytes() for c in self.tile_caches)

    def _prepare(self, z: Tensor) -> None:
        b, _, t, h, w = z.shape
        who = "TiledStreamingDecoder.decode_next"
        if self.plan is None:
            if self.tile is not None:
                plan = TilePlan.build((h, w), self.tile, self.overlap)
            else:
                plan = plan_tiles(self.vae, (h, w), self.memory_budget, overlap=self.overlap, batch=b,
                                  chunk_frames=t, frames_per_step=self.frames_per_step, dtype=z.dtype)
        else:
            plan = self.plan
        if self.memory_budget is not None:
            need = estimate_decode_memory(self.vae, plan, batch=b, chunk_frames=t,
                                          frames_per_step=self.frames_per_step, dtype=z.dtype)
            if need.total > self.memory_budget:
                raise ValueError(
                    f"{who}: a chunk of {t} latent frames of {h}x{w} cells (batch {b}) in tiles of "
                    f"{plan.tile[0]}x{plan.tile[1]} needs about {need.total} bytes ({need.total / 2**20:.0f} MiB: "
                    f"caches {need.cache >> 20}, working {need.working >> 20}, output {need.output >> 20}), over "
                    f"memory_budget={self.memory_budget}; allowed: a smaller tile or chunk, or budget >= {need.total}")
        if self.plan is None:
            self._start(plan, z.device)

    def _start(self, plan: TilePlan, device: torch.device) -> None:
        s = self.vae.config.spatial_factor
        radius = receptive_radius_px(self.vae)
        rows = axis_weights(plan.rows, s, radius, self.blend)
        cols = axis_weights(plan.cols, s, radius, self.blend)
        self._weights = [(wr.to(device, torch.float32), wc.to(device, torch.float32)) for wr in rows for wc in cols]
        self.tile_caches = [FeatureCache() for _ in range(plan.count)]
        self.plan = plan

    def _decode(self, x: Tensor) -> Tensor:
        # x: [B, z, t, h, w] after conv2 -> [B, 3, n, 8h, 8w] (before clamping)
        decoder, plan = self.vae.decoder, self.plan
        if plan.count == 1:
            return torch.cat([decoder.upsample(decoder.trunk(step, self.cache), self.tile_caches[0])
                              for step in x.split(self.frames_per_step, dim=2)], dim=2)
        cfg = self.vae.config
        b, _, t, h, w = x.shape
        s, tf = cfg.spatial_factor, cfg.temporal_factor
        n = tf * t - (tf - 1 if self.latent_frames_in == 0 else 0)
        out = x.new_empty(b, 3, n, h * s, w * s)
        done = 0
        for step in x.split(self.frames_per_step, dim=2):
            features = decoder.trunk(step, self.cache)  # [B, C, f, h, w]
            blended = None
            for ((r0, r1), (c0, c1)), cache, (wr, wc) in zip(plan.tiles(), self.tile_caches, self._weights):
                px = decoder.upsample(features[:, :, :, r0:r1, c0:c1], cache)  # [B, 3, k, th*s, tw*s]
                if blended is None:
                    blended = torch.zeros(b, 3, px.shape[2], h * s, w * s, device=x.device, dtype=torch.float32)
                blended[:, :, :, r0 * s:r1 * s, c0 * s:c1 * s].addcmul_(px.float(), wr[:, None] * wc)
            k = blended.shape[2]
            out[:, :, done:done + k] = blended
            done += k
        return out
