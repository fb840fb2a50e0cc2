"""Memory of a (tiled) streaming VAE decode, estimated from the decoder's structure, and tile planning.

What a streaming decode holds, for a frame of h x w latent cells split by a `TilePlan`:
* cache: every causal conv keeps its last `context` (2) input frames between calls, at its own
  resolution: the trunk's over the whole latent frame, each tile's over the tile. Tiling does not shrink
  this part (the tiles' caches together cover the frame, and their overlaps twice); it is what the
  stream costs as long as it streams.
* working: the transients of one decoder pass over one tile and `frames_per_step` latent frames:
  `WORK_FACTOR` times the largest activation (the upsampled input of the last spatial upsample conv:
  4 frames of 2*dim channels at full resolution per latent frame, for Wan 2.1), plus the trunk's
  features that the tiles read. Tiling shrinks this part with the tile's area.
* output: the chunk's pixel frames (and, when tiled, the float32 buffer they are blended in).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import torch

from .layers import CausalConv3d
from .tiling import TilePlan, pair

if TYPE_CHECKING:
    from .model import ConvSite, WanVAE

RGB = 3
# Live bytes during a decoder pass / its largest activation. A residual block at full resolution holds its
# input, the normed input, the input with its 2 cached frames prepended and the conv output at once
# (0.5 + 0.5 + 0.75 + 0.5 of the largest activation); allocator and oneDNN scratch come on top.
# Checked against measured peaks in benchmarks/results/vae_tiled.md.
WORK_FACTOR = 2.5


@dataclass(frozen=True)
class DecodeMemory:
    """Estimated bytes of a streaming decode at its steady state (every cache full)."""

    cache: int
    working: int
    output: int

    @property
    def total(self) -> int:
        return self.cache + self.working + self.output


def receptive_radius_px(vae: "WanVAE") -> int:
    """Pixels of the output that one latent cell of the trunk's features reaches beyond its own 8x8
    footprint: the sum over the convs after the trunk of their spatial padding, in output pixels. A tile's
    pixels closer than this to an inner edge see its zero padding; pixels farther away are exact."""
    s = vae.config.spatial_factor
    return sum((site.conv.kernel_size[-1] // 2) * s // site.scale for site in vae.decoder.conv_sites("upsample"))


def min_tile(vae: "WanVAE") -> int:
    """Smallest tile side (latent cells) along an axis that is tiled: the least that has a pixel farther
    than the receptive radius from both of its edges (tile * 8 > 2 * radius). Below it, every pixel of
    an inner tile is computed partly from zero padding instead of the frame."""
    return 2 * receptive_radius_px(vae) // vae.config.spatial_factor + 1


@dataclass(frozen=True)
class _DecoderCosts:
    """Elements per latent cell of a decoder, read once from its structure."""

    trunk_cache: int  # cached frames of the trunk's causal convs
    tile_cache: int  # cached frames of the convs after the trunk (per latent cell of a tile)
    trunk_largest: int  # largest trunk activation, per latent frame
    tile_largest: int  # largest activation after the trunk, per latent frame
    features: int  # channels of the trunk's output (read by the tiles)

    @classmethod
    def of(cls, vae: "WanVAE") -> "_DecoderCosts":
        trunk, up = vae.decoder.conv_sites("trunk"), vae.decoder.conv_sites("upsample")
        return cls(_cached(trunk), _cached(up), _largest(trunk), _largest(up), up[0].conv.in_channels)


def _cached(sites: list["ConvSite"]) -> int:
    return sum(site.conv.context * site.conv.in_channels * site.scale ** 2 for site in sites
               if isinstance(site.conv, CausalConv3d) and site.conv.context)


def _largest(sites: list["ConvSite"]) -> int:
    return max(site.conv.in_channels * site.frames * site.scale ** 2 for site in sites)


def _estimate(vae: "WanVAE", costs: _DecoderCosts, plan: TilePlan, batch: int, chunk_frames: int,
              frames_per_step: int, dtype: Optional[torch.dtype]) -> DecodeMemory:
    cfg = vae.config
    elem = (dtype or vae.dtype).itemsize
    (h, w), (th, tw), f = plan.latent_hw, plan.tile, frames_per_step
    cache = costs.trunk_cache * h * w + costs.tile_cache * plan.covered_cells()
    working = max(WORK_FACTOR * costs.trunk_largest * h * w * f,
                  costs.features * h * w * f + WORK_FACTOR * costs.tile_largest * th * tw * f)
    pixels = RGB * cfg.temporal_factor * h * w * cfg.spatial_factor ** 2  # per latent frame
    output = pixels * chunk_frames * elem + (pixels * f * 4 if plan.count > 1 else 0)  # + float32 blend buffer
    return DecodeMemory(int(cache * batch * elem), int(working * batch * elem), int(output * batch))


def estimate_decode_memory(vae: "WanVAE", plan: TilePlan, *, batch: int = 1, chunk_frames: int = 1,
                           frames_per_step: int = 1, dtype: Optional[torch.dtype] = None) -> DecodeMemory:
    """Bytes of streaming `chunk_frames` latent frames per call through `plan`'s tiles, `frames_per_step`
    latent frames per decoder pass, in `dtype` (default: the VAE's)."""
    return _estimate(vae, _DecoderCosts.of(vae), plan, batch, chunk_frames, frames_per_step, dtype)


def _axis_candidates(length: int, smallest: int, overlap: int) -> list[int]:
    """Tile sides worth trying along an axis: the whole axis, or any allowed size below it."""
    return [length] + list(range(max(smallest, overlap + 1), length))


def plan_tiles(vae: "WanVAE", latent_hw, budget: Optional[int], *, overlap=8, batch: int = 1,
               chunk_frames: int = 1, frames_per_step: int = 1, dtype: Optional[torch.dtype] = None) -> TilePlan:
    """The plan with the largest tile whose estimated streaming decode fits `budget` bytes (None: one
    tile, the untiled decode). Ties go to fewer tiles, then to the squarer tile."""
    who = "plan_tiles"
    h, w = pair(latent_hw, "latent_hw", who)
    oh, ow = pair(overlap, "overlap", who)
    for name, value in (("latent_hw", min(h, w)), ("batch", batch), ("chunk_frames", chunk_frames),
                        ("frames_per_step", frames_per_step)):
        if value < 1:
            raise ValueError(f"{who}: {name} must be >= 1; got {latent_hw if name == 'latent_hw' else value}")
    if min(oh, ow) < 0:
        raise ValueError(f"{who}: overlap={overlap!r} must be >= 0 latent cells")
    if budget is None:
        return TilePlan.whole((h, w))
    if not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0:
        raise ValueError(f"{who}: memory budget={budget!r} must be a positive number of bytes (or None)")
    smallest, costs = min_tile(vae), _DecoderCosts.of(vae)

    def cost(plan: TilePlan) -> int:
        return _estimate(vae, costs, plan, batch, chunk_frames, frames_per_step, dtype).total

    best, cheapest = None, None
    for th in _axis_candidates(h, smallest, oh):
        for tw in _axis_candidates(w, smallest, ow):
            plan = TilePlan.build((h, w), (th, tw), (oh, ow))
            need = cost(plan)
            if cheapest is None or need < cheapest[0]:
                cheapest = (need, plan)
            key = (th * tw, -plan.count, -abs(th - tw))
            if need <= budget and (best is None or key > best[0]):
                best = (key, plan)
    if best is None:
        need, plan = cheapest
        raise ValueError(
            f"{who}: memory budget={budget} bytes ({budget / 2**20:.0f} MiB) is too small to decode "
            f"{h}x{w} latent cells (batch {batch}) even with the cheapest tile {plan.tile[0]}x{plan.tile[1]} "
            f"(tiles of at least {smallest} cells, overlap {oh}x{ow}): it needs about {need} bytes "
            f"({need / 2**20:.0f} MiB); allowed: budget >= {need}")
    return best[1]
