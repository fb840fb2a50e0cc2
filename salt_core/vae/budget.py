"""Memory of a (tiled) VAE decode, estimated from the decoder's structure, and tile planning for a budget.

What a decode holds, for a frame of h x w latent cells split by a `TilePlan`:
* cache: every causal conv keeps its last `context` (2) input frames, at its own resolution: the trunk's
  over the whole latent frame, a tile's over the tile. Streaming (`TiledStreamingDecoder`) keeps every
  tile's caches between calls, so tiling does not shrink this part (the tiles cover the frame, their
  overlaps twice). A whole-clip tiled decode (`decode_tiled`) runs one tile through all frames before
  the next, so it holds one tile's caches at a time.
* working: the transients of one decoder pass over one tile and `frames_per_step` latent frames:
  `WORK_FACTOR` times the largest activation (the upsampled input of the last spatial upsample conv:
  4 frames of 2*dim channels at full resolution per latent frame, for Wan 2.1), plus the trunk's
  features that the tiles read. Tiling shrinks this part with the tile's area.
* output: the call's pixel frames, and the float32 buffer tiles are blended in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import torch

from .layers import CausalConv3d
from .tiling import DEFAULT_OVERLAP, TilePlan, pair

if TYPE_CHECKING:
    from .model import ConvSite, WanVAE

RGB = 3
# Live bytes during a decoder pass / its largest activation U. A residual block at full resolution holds
# its input, the normed input, the input with its 2 cached frames prepended, the conv output and, until the
# conv returns, the cache entry it replaces (0.5 + 0.5 + 0.75 + 0.5 + 0.25 = 2.5 U); oneDNN scratch and
# allocator slack come on top: measured 3.36 U (full-size Wan 2.1 VAE, CPU fp32, peak RSS; see
# benchmarks/results/vae_tiled.md, where estimates and measured peaks are compared).
WORK_FACTOR = 3.5
FLOAT32 = 4  # bytes per element of the blend buffer


@dataclass(frozen=True)
class DecodeMemory:
    """Estimated peak bytes of a decode (with every cache full)."""

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
    """Smallest tile side (latent cells): the least that has a pixel farther than the receptive radius
    from both of its edges (tile * 8 > 2 * radius). Below it, every pixel of a tile between two others is
    computed partly from zero padding instead of the frame."""
    return 2 * receptive_radius_px(vae) // vae.config.spatial_factor + 1


def check_positive(who: str, **values) -> None:
    """Each value must be an int >= 1; else a ValueError naming it."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{who}: {name}={value!r} must be an int >= 1")


def check_overlap(overlap, who: str) -> tuple[int, int]:
    oh, ow = pair(overlap, "overlap", who)
    if min(oh, ow) < 0:
        raise ValueError(f"{who}: overlap={overlap!r} must be >= 0 latent cells")
    return oh, ow


def check_budget(budget, who: str) -> None:
    if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0):
        raise ValueError(f"{who}: memory_budget={budget!r} must be a positive number of bytes or None")


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


@dataclass(frozen=True)
class DecodeCall:
    """What one decode call handles (the inputs of the estimate besides the tiles)."""

    batch: int = 1
    latent_frames: int = 1  # per call: a chunk when streaming, the whole clip for `decode_tiled`
    frames_per_step: int = 1  # latent frames per decoder pass
    streaming: bool = True  # every tile's caches persist between calls (else one tile at a time)
    dtype: Optional[torch.dtype] = None  # None: the VAE's
    output_on_device: bool = True  # False: the frames go elsewhere (e.g. CPU RAM) as each pass makes them


def _estimate(vae: "WanVAE", costs: _DecoderCosts, plan: TilePlan, call: DecodeCall) -> DecodeMemory:
    cfg = vae.config
    elem = (call.dtype or vae.dtype).itemsize
    (h, w), (th, tw), f = plan.latent_hw, plan.tile, call.frames_per_step
    cells = plan.covered_cells() if call.streaming else th * tw
    cache = costs.trunk_cache * h * w + costs.tile_cache * cells
    working = max(WORK_FACTOR * costs.trunk_largest * h * w * f,
                  costs.features * h * w * f + WORK_FACTOR * costs.tile_largest * th * tw * f)
    pixels = RGB * cfg.temporal_factor * h * w * cfg.spatial_factor ** 2  # per latent frame
    if not call.output_on_device:  # one pass's frames on the device, then moved out (and blended there)
        return DecodeMemory(int(cache * call.batch * elem), int(working * call.batch * elem),
                            int(pixels * f * elem * call.batch))
    output = pixels * call.latent_frames * elem
    if plan.count > 1:  # float32 blend buffer: one step's frames when streaming, else the clip's
        blend = pixels * (f if call.streaming else call.latent_frames) * FLOAT32
        output += 0 if not call.streaming and elem == FLOAT32 else blend  # a float32 clip is blended in place
    return DecodeMemory(int(cache * call.batch * elem), int(working * call.batch * elem), int(output * call.batch))


def estimate_decode_memory(vae: "WanVAE", plan: TilePlan, call: DecodeCall = DecodeCall()) -> DecodeMemory:
    """Estimated peak bytes of decoding `call` through `plan`'s tiles (caches at their steady state)."""
    return _estimate(vae, _DecoderCosts.of(vae), plan, call)


def _axis_candidates(length: int, smallest: int, overlap: int) -> list[int]:
    """Tile sides worth trying along an axis: the whole axis, or any allowed size below it."""
    return [length] + list(range(max(smallest, overlap + 1), length))


def plan_tiles(vae: "WanVAE", latent_hw, budget: Optional[int], *, overlap=DEFAULT_OVERLAP,
               call: DecodeCall = DecodeCall()) -> TilePlan:
    """The plan with the largest tile (latent cells) whose estimated decode fits `budget` bytes (None:
    one tile, the untiled decode). Ties go to fewer tiles, then to the squarer tile."""
    who = "plan_tiles"
    h, w = pair(latent_hw, "latent_hw", who)
    check_positive(who, latent_height=h, latent_width=w, batch=call.batch, latent_frames=call.latent_frames,
                   frames_per_step=call.frames_per_step)
    oh, ow = check_overlap(overlap, who)
    check_budget(budget, who)
    if budget is None:
        return TilePlan.whole((h, w))
    smallest, costs = min_tile(vae), _DecoderCosts.of(vae)
    best, cheapest = None, None
    for th in _axis_candidates(h, smallest, oh):
        for tw in _axis_candidates(w, smallest, ow):
            plan = TilePlan.build((h, w), (th, tw), (oh, ow))
            need = _estimate(vae, costs, plan, call).total
            if cheapest is None or need < cheapest[0]:
                cheapest = (need, plan)
            key = (th * tw, -plan.count, -abs(th - tw))
            if need <= budget and (best is None or key > best[0]):
                best = (key, plan)
    if best is None:
        need, plan = cheapest
        mode = "streaming" if call.streaming else "whole-clip"
        raise ValueError(
            f"{who}: memory_budget={budget} bytes ({budget / 2**20:.0f} MiB) is too small for a {mode} decode "
            f"of {h}x{w} latent cells ({call.latent_frames} latent frames per call, batch {call.batch}) even "
            f"with the cheapest tile {plan.tile[0]}x{plan.tile[1]} (tiles of >= {smallest} cells, overlap "
            f"{oh}x{ow}): it needs about {need} bytes ({need / 2**20:.0f} MiB); allowed: budget >= {need}")
    return best[1]
