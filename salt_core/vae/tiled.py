"""VAE decode tiled in space: the transients of a decoder pass bounded by the tile, not the frame.

Per latent frame, the decoder's trunk (the first conv and the middle block, with its self-attention over
the whole frame) runs on the whole latent frame: it is small at latent resolution, and the attention stays
exact. The rest (residual blocks and upsamplers up to full resolution, where the memory goes) is purely
convolutional; it runs tile by tile on overlapping rectangles of the trunk's features, each tile with its
own temporal `FeatureCache`, and the tiles' pixels are blended with ramps that sum to 1. One tile covering
the frame is exactly the untiled decode; more tiles differ only within the receptive radius of the inner
tile edges, where the ramps hide the seams.

Two loop orders, equal results (same tiles, same arithmetic):
* `TiledStreamingDecoder`: chunk by chunk in time, every tile's caches kept between calls;
* `decode_tiled`: a whole clip, one tile through all frames before the next: one tile's caches at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

import torch
from torch import Tensor

from .budget import (DecodeCall, DecodeMemory, check_budget, check_overlap, check_positive, estimate_decode_memory, min_tile,
                     plan_tiles, receptive_radius_px)
from .layers import FeatureCache
from .streaming import StreamingDecoder
from .tiling import DEFAULT_OVERLAP, RAMPS, TilePlan, axis_weights, pair

if TYPE_CHECKING:
    from .model import WanVAE

@dataclass(frozen=True)
class TileSettings:
    """How to tile, checked once against the VAE. tile: (th, tw) latent cells or None (from the budget, or
    the whole frame without one); overlap: latent cells shared by neighbours; memory_budget: bytes or None."""

    tile: Optional[tuple[int, int]]
    overlap: tuple[int, int]
    memory_budget: Optional[int]
    blend: str
    frames_per_step: int

    @classmethod
    def checked(cls, vae: "WanVAE", who: str, tile, overlap, memory_budget, blend, frames_per_step) -> "TileSettings":
        ov = check_overlap(overlap, who)
        if tile is not None:
            tile = pair(tile, "tile", who)
            smallest = min_tile(vae)
            if min(tile) < smallest:
                raise ValueError(
                    f"{who}: tile={tile!r} is smaller than the decoder's receptive field; allowed: tile sides >= "
                    f"{smallest} latent cells (> 2 x {receptive_radius_px(vae)} px receptive radius / "
                    f"{vae.config.spatial_factor} px per cell)")
            if any(o >= t for o, t in zip(ov, tile)):
                raise ValueError(f"{who}: overlap={overlap!r} must be smaller than tile={tile!r}; "
                                 "allowed: 0 <= overlap < tile on each axis")
        check_budget(memory_budget, who)
        if blend not in RAMPS:
            raise ValueError(f"{who}: blend={blend!r} is unknown; allowed: {list(RAMPS)}")
        check_positive(who, frames_per_step=frames_per_step)
        return cls(tile, ov, memory_budget, blend, frames_per_step)

    def plan(self, vae: "WanVAE", z: Tensor, streaming: bool, who: str, plan: Optional[TilePlan] = None,
             output_on_device: bool = True) -> TilePlan:
        """The tiles for latents z [B, z, t, h, w] (`plan` if the stream has one), checked against the budget."""
        b, _, t, h, w = z.shape
        call = DecodeCall(b, t, self.frames_per_step, streaming, z.dtype, output_on_device)
        if plan is None:
            if self.tile is not None:
                plan = TilePlan.build((h, w), self.tile, self.overlap)
            else:
                try:
                    plan = plan_tiles(vae, (h, w), self.memory_budget, overlap=self.overlap, call=call)
                except ValueError as e:
                    raise ValueError(f"{who}: {e}") from None
        if self.memory_budget is not None:
            need = estimate_decode_memory(vae, plan, call)
            if need.total > self.memory_budget:
                raise ValueError(
                    f"{who}: {t} latent frames of {h}x{w} cells (batch {b}) in tiles of {plan.tile[0]}x"
                    f"{plan.tile[1]} need about {need.total} bytes ({need.total >> 20} MiB: caches "
                    f"{need.cache >> 20}, working {need.working >> 20}, output {need.output >> 20}), over "
                    f"memory_budget={self.memory_budget}; allowed: a smaller tile or chunk, or a budget >= {need.total}")
        return plan

    def weights(self, vae: "WanVAE", plan: TilePlan, device) -> list[Tensor]:
        """Per tile, its blend weights [th*s, tw*s] float32 (all tiles' weights sum to 1 at every pixel)."""
        s, radius = vae.config.spatial_factor, receptive_radius_px(vae)
        rows = axis_weights(plan.rows, s, radius, self.blend)
        cols = axis_weights(plan.cols, s, radius, self.blend)
        return [(wr[:, None] * wc).to(device, torch.float32) for wr in rows for wc in cols]


@dataclass(frozen=True)
class DecodeTiling:
    """What a user asks of the decode's spatial tiling (the CLI's --vae-tile*, SaltDecode's inputs).

    tile: latent cells per tile side (an int or (h, w)), None: the largest tile that fits `memory_budget`;
    overlap: latent cells shared by neighbours; memory_budget: bytes for the decode, None: no limit.
    Neither tile nor budget: the untiled decode."""

    tile: Optional[object] = None
    overlap: object = DEFAULT_OVERLAP
    memory_budget: Optional[int] = None

    @property
    def active(self) -> bool:
        return self.tile is not None or self.memory_budget is not None


def _pixel_frames(vae: "WanVAE", latent_frames: int, first: bool) -> int:
    tf = vae.config.temporal_factor
    return tf * latent_frames - (tf - 1 if first else 0)


class TiledStreamingDecoder(StreamingDecoder):
    """Decode a latent video chunk by chunk, each frame in overlapping spatial tiles.

        dec = TiledStreamingDecoder(vae, memory_budget=8 * 2**30)   # or tile=(32, 32)
        frames = dec.decode_next(z_chunk)   # [B, z, t, h, w] raw latents -> [B, 3, n, 8h, 8w] in [-1, 1]

    tile: (th, tw) latent cells (an int for both), at least `min_tile(vae)`; clipped to the frame.
    overlap: latent cells shared by neighbouring tiles, 0 <= overlap < tile.
    memory_budget: bytes for the decode's caches, transients and output (`estimate_decode_memory`); without
    `tile`, the largest tile that fits is chosen when the first chunk shows the frame size; with it, every
    chunk is checked against the budget before it is decoded. Neither: one tile, the untiled decode.
    blend: "cosine" or "linear" ramps. frames_per_step: latent frames per decoder pass (1: least memory).
    Every tile's caches stay alive between calls, so streaming saves only the transients; `decode_tiled`
    holds one tile's caches at a time when the whole clip is at hand.
    """

    def __init__(self, vae: "WanVAE", tile=None, overlap=DEFAULT_OVERLAP, memory_budget: Optional[int] = None,
                 *, blend: str = "cosine", frames_per_step: int = 1) -> None:
        self.settings = TileSettings.checked(vae, "TiledStreamingDecoder", tile, overlap, memory_budget, blend,
                                             frames_per_step)
        super().__init__(vae, frames_per_step=frames_per_step)

    def reset(self) -> None:
        """Forget the stream (and its tiles): the next call starts a new video, of any size."""
        super().reset()
        self.plan: Optional[TilePlan] = None
        self.tile_caches: list[FeatureCache] = []
        self._weights: list[Tensor] = []

    def cache_nbytes(self) -> int:
        return self.cache.nbytes() + sum(c.nbytes() for c in self.tile_caches)

    def plan_ahead(self, batch: int, chunk_frames: int, latent_hw: tuple[int, int]) -> TilePlan:
        """Plan the stream's tiles and check them against the budget before any compute (a too small budget
        or tile raises here, not after sampling): the stream's chunks must then have this batch and frame
        size and at most `chunk_frames` latent frames each."""
        check_positive("TiledStreamingDecoder.plan_ahead", batch=batch, chunk_frames=chunk_frames)
        h, w = pair(latent_hw, "latent_hw", "TiledStreamingDecoder.plan_ahead")
        self._prepare(torch.empty(batch, self.vae.config.z_dim, chunk_frames, h, w, device="meta",
                                  dtype=self.vae.dtype), "TiledStreamingDecoder")
        self._geometry = (batch, h, w)
        return self.plan

    def _prepare(self, z: Tensor, who: str = "TiledStreamingDecoder.decode_next") -> None:
        plan = self.settings.plan(self.vae, z, True, who, self.plan)
        if self.plan is None:
            self.plan = plan
            self.tile_caches = [FeatureCache() for _ in range(plan.count)]
        if plan.count > 1 and not self._weights and z.device.type != "meta":
            self._weights = self.settings.weights(self.vae, plan, z.device)

    def _decode(self, z: Tensor) -> Tensor:
        # z: [B, z, t, h, w] -> [B, 3, n, 8h, 8w] (before clamping)
        decoder, plan, s = self.vae.decoder, self.plan, self.vae.config.spatial_factor
        steps = [self.vae.conv2(step) for step in z.split(self.frames_per_step, dim=2)]
        if plan.count == 1:
            return torch.cat([decoder.upsample(decoder.trunk(step, self.cache), self.tile_caches[0])
                              for step in steps], dim=2)
        b, _, t, h, w = z.shape
        out = z.new_empty(b, 3, _pixel_frames(self.vae, t, self.latent_frames_in == 0), h * s, w * s)
        done = 0
        for step in steps:
            features = decoder.trunk(step, self.cache)  # [B, C, f, h, w]
            blended = None
            for ((r0, r1), (c0, c1)), cache, weight in zip(plan.tiles(), self.tile_caches, self._weights):
                px = decoder.upsample(features[:, :, :, r0:r1, c0:c1], cache)  # [B, 3, k, th*s, tw*s]
                if blended is None:
                    blended = z.new_zeros(b, 3, px.shape[2], h * s, w * s, dtype=torch.float32)
                blended[:, :, :, r0 * s:r1 * s, c0 * s:c1 * s].addcmul_(px.float(), weight)
            out[:, :, done:done + blended.shape[2]] = blended
            done += blended.shape[2]
        return out


def plan_clip_decode(vae: "WanVAE", batch: int, latent_frames: int, latent_hw: tuple[int, int], tiling: DecodeTiling,
                     *, output_on_device: bool = True) -> tuple[TilePlan, DecodeMemory]:
    """The tiles `decode_tiled` will use for a clip of this geometry and its estimated device memory, checked
    against the budget before any compute (a bad tile, overlap or a budget too small raises here)."""
    who = "decode_tiled"
    check_positive(who, batch=batch, latent_frames=latent_frames)
    h, w = pair(latent_hw, "latent_hw", who)
    settings = TileSettings.checked(vae, who, tiling.tile, tiling.overlap, tiling.memory_budget, "cosine", 1)
    z = torch.empty(batch, vae.config.z_dim, latent_frames, h, w, device="meta", dtype=vae.dtype)
    plan = settings.plan(vae, z, False, who, output_on_device=output_on_device)
    call = DecodeCall(batch, latent_frames, 1, False, vae.dtype, output_on_device)
    return plan, estimate_decode_memory(vae, plan, call)


@torch.no_grad()
def decode_tiled(vae: "WanVAE", z: Tensor, tile=None, overlap=DEFAULT_OVERLAP, memory_budget: Optional[int] = None,
                 *, blend: str = "cosine", frames_per_step: int = 1,
                 on_tile: Optional[Callable[[int, int], None]] = None, output_device=None) -> Tensor:
    """Decode a whole clip of raw latents z [B, z, t, h, w] -> video [B, 3, 1 + 4(t-1), 8h, 8w] in [-1, 1],
    one tile at a time through all frames (each tile's caches are dropped before the next tile starts;
    the trunk is recomputed per tile). Settings as `TiledStreamingDecoder`; the budget covers the whole
    output video; with an `output_device` (where the video is assembled, float32 while tiles are blended;
    e.g. host RAM for ComfyUI's IMAGE) only a pass's frames, the assembled video being the caller's to bound.
    Equals `TiledStreamingDecoder` with the same settings fed the clip in any chunks. on_tile(done, total) is
    called after each tile (for progress; an exception raised there stops)."""
    who = "decode_tiled"
    settings = TileSettings.checked(vae, who, tile, overlap, memory_budget, blend, frames_per_step)
    z = vae.validate_latent(z, who)
    out_dev = z.device if output_device is None else torch.device(output_device)
    plan = settings.plan(vae, z, False, who, output_on_device=output_device is None)
    decoder, s = vae.decoder, vae.config.spatial_factor
    b, _, t, h, w = z.shape
    steps = [vae.conv2(step) for step in z.split(frames_per_step, dim=2)]
    n = _pixel_frames(vae, t, True)
    if plan.count == 1:
        out, trunk_cache, cache, done = z.new_empty(b, 3, n, h * s, w * s, device=out_dev), FeatureCache(), \
            FeatureCache(), 0
        for step in steps:
            px = decoder.upsample(decoder.trunk(step, trunk_cache), cache)
            out[:, :, done:done + px.shape[2]] = px.to(out_dev)
            done += px.shape[2]
        if on_tile is not None:
            on_tile(1, 1)
        return out.clamp_(-1.0, 1.0)
    blended = z.new_zeros(b, 3, n, h * s, w * s, dtype=torch.float32, device=out_dev)
    for k, (((r0, r1), (c0, c1)), weight) in enumerate(zip(plan.tiles(), settings.weights(vae, plan, out_dev))):
        trunk_cache, cache, done = FeatureCache(), FeatureCache(), 0
        for step in steps:
            features = decoder.trunk(step, trunk_cache)  # [B, C, f, h, w]
            px = decoder.upsample(features[:, :, :, r0:r1, c0:c1], cache)  # [B, 3, k, th*s, tw*s]
            blended[:, :, done:done + px.shape[2], r0 * s:r1 * s, c0 * s:c1 * s].addcmul_(px.to(out_dev).float(),
                                                                                          weight)
            done += px.shape[2]
        if on_tile is not None:
            on_tile(k + 1, plan.count)
    return blended.to(z.dtype).clamp_(-1.0, 1.0)
