"""Tiled VAE decode, without decoding: tile geometry, blend weights, receptive field, memory estimate,
planning for a budget, and the settings' checks."""
from __future__ import annotations

import pytest
import torch

from salt_core.vae import (DecodeCall, PreviewDecoder, TiledStreamingDecoder, TilePlan, VAEConfig, WanVAE, decode_preview,
                           decode_tiled, estimate_decode_memory, min_tile, plan_tiles, receptive_radius_px, vae_preset)
from salt_core.vae.tiling import axis_weights, ramp, tile_spans


def meta_vae(cfg: VAEConfig) -> WanVAE:
    with torch.device("meta"):
        return WanVAE(cfg)


@pytest.fixture(scope="module")
def wan():
    return meta_vae(vae_preset("wan2.1-vae"))


# ---- geometry -----------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [1, 7, 18, 19, 23, 60, 104, 161])
@pytest.mark.parametrize("tile,overlap", [(4, 0), (4, 3), (18, 4), (18, 8), (25, 12), (32, 8)])
def test_tiles_cover_the_axis_with_full_tiles_and_at_least_the_overlap(length, tile, overlap):
    spans = tile_spans(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(b - a == min(tile, length) for a, b in spans)
    shared = [spans[i][1] - spans[i + 1][0] for i in range(len(spans) - 1)]
    assert all(s >= overlap for s in shared)
    gaps = [spans[i + 1][0] - spans[i][0] for i in range(len(spans) - 1)]
    assert not gaps or max(gaps) - min(gaps) <= 1  # spread evenly
    if len(spans) > 1:  # one tile fewer could not cover the axis with that overlap
        assert (len(spans) - 2) * (tile - overlap) + tile < length


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("n,radius", [(1, 0), (2, 5), (16, 0), (64, 68), (300, 68)])
def test_ramps_are_complementary_and_rise(kind, n, radius):
    r = ramp(n, radius, kind)
    assert r.shape == (n,)
    assert torch.allclose(r + r.flip(0), torch.ones(n, dtype=torch.float64), atol=1e-12)
    assert bool((r[1:] >= r[:-1]).all()) and 0 <= float(r.min()) and float(r.max()) <= 1


def test_wide_overlaps_keep_the_ramp_a_receptive_radius_away_from_the_edges():
    r = ramp(300, 68, "cosine")  # 300 > 4 * 68: the ramp lies where both tiles are exact
    assert float(r[:68].abs().max()) == 0.0 and float((r[-68:] - 1).abs().max()) == 0.0
    assert 0 < float(r[68]) < 1 and 0 < float(r[-69]) < 1
    narrow = ramp(64, 68, "linear")  # narrower than 4 radii: the ramp takes the central half
    assert float(narrow[:16].max()) == 0.0 and 0 < float(narrow[16]) and float(narrow[-17]) < 1


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("length,tile,overlap", [(23, 18, 4), (37, 18, 12), (60, 25, 8), (11, 4, 3), (5, 4, 0)])
def test_blend_weights_sum_to_one_and_are_one_away_from_overlaps(kind, length, tile, overlap):
    spans = tile_spans(length, tile, overlap)
    weights = axis_weights(spans, 8, 20, kind)
    total = torch.zeros(length * 8, dtype=torch.float64)
    for (a, b), w in zip(spans, weights):
        assert w.shape == ((b - a) * 8,) and float(w.min()) >= 0
        total[a * 8:b * 8] += w
    assert torch.allclose(total, torch.ones_like(total), atol=1e-12)
    inside = [c for c in range(length) if sum(a <= c < b for a, b in spans) == 1]  # cells of one tile only
    for c in inside:
        i = next(i for i, (a, b) in enumerate(spans) if a <= c < b)
        a = spans[i][0]
        assert float((weights[i][(c - a) * 8:(c - a + 1) * 8] - 1).abs().max()) < 1e-12


def test_plan_lists_every_tile_and_the_cells_it_recomputes():
    plan = TilePlan.build((23, 30), (18, 18), (6, 6))
    assert plan.rows == ((0, 18), (5, 23)) and plan.cols == ((0, 18), (12, 30))
    assert list(plan.tiles())[1] == ((0, 18), (12, 30)) and plan.count == 4
    assert plan.covered_cells() == 36 * 36
    assert TilePlan.build((10, 12), (40, 40), (8, 8)).count == 1  # the tile is clipped to the frame
    assert TilePlan.whole((10, 12)).tile == (10, 12)


# ---- receptive field and the minimum tile --------------------------------------------------------

def test_receptive_radius_and_minimum_tile_follow_the_architecture():
    # After the trunk, Wan 2.1 runs 3 residual blocks (2 convs of 3x3 each) per stage at 1, 2, 4 and 8 px
    # per latent cell, an upsample conv 3x3 after each of the first three stages, and the head conv:
    # padding 1 each, in output pixels: 6*8 + 4 + 6*4 + 2 + 6*2 + 1 + 6*1 + 1 = 98.
    assert receptive_radius_px(meta_vae(vae_preset("wan2.1-vae"))) == 98
    assert min_tile(meta_vae(vae_preset("wan2.1-vae"))) == 25  # 25 * 8 > 2 * 98 >= 24 * 8
    # tiny / micro: 2 residual blocks per stage: 4*8 + 4 + 4*4 + 2 + 4*2 + 1 + 4 + 1 = 68
    for name in ("tiny", "micro"):
        assert receptive_radius_px(meta_vae(vae_preset(name))) == 68
        assert min_tile(meta_vae(vae_preset(name))) == 18


# ---- memory estimate and planning ---------------------------------------------------------------

def test_estimate_counts_what_tiling_and_the_loop_order_change(wan):
    hw = (60, 104)
    whole = estimate_decode_memory(wan, TilePlan.whole(hw), DecodeCall(latent_frames=3))
    plan = TilePlan.build(hw, (32, 32), (8, 8))
    stream = estimate_decode_memory(wan, plan, DecodeCall(latent_frames=3))
    clip = estimate_decode_memory(wan, plan, DecodeCall(latent_frames=3, streaming=False))
    assert stream.working < whole.working / 4  # the transients scale with the tile
    assert stream.cache > whole.cache  # every tile keeps its caches; overlaps count twice
    assert clip.cache < whole.cache / 4 and clip.working == stream.working  # one tile's caches at a time
    half = estimate_decode_memory(wan, plan, DecodeCall(latent_frames=3, dtype=torch.bfloat16))
    assert half.cache * 2 == stream.cache
    two = estimate_decode_memory(wan, plan, DecodeCall(batch=2, latent_frames=3))
    assert abs(two.total - 2 * stream.total) <= 4  # (each part rounded to whole bytes)


def test_a_clip_assembled_off_the_device_leaves_only_a_pass_of_frames_in_the_budget(wan):
    from salt_core.vae import DecodeTiling, plan_clip_decode

    plan = TilePlan.build((60, 104), (32, 32), (8, 8))
    on = estimate_decode_memory(wan, plan, DecodeCall(latent_frames=21, streaming=False))
    off = estimate_decode_memory(wan, plan, DecodeCall(latent_frames=21, streaming=False, output_on_device=False))
    assert (off.cache, off.working) == (on.cache, on.working)
    assert off.output * 21 == on.output  # float32 VAE: the clip is blended in place, one latent frame per pass
    budget = (off.total + on.total) // 2
    fits, need = plan_clip_decode(wan, 1, 21, (60, 104), DecodeTiling(tile=32, memory_budget=budget),
                                  output_on_device=False)
    assert fits == plan and need == off
    with pytest.raises(ValueError, match=r"decode_tiled: .* over memory_budget="):
        plan_clip_decode(wan, 1, 21, (60, 104), DecodeTiling(tile=32, memory_budget=budget))


def test_plan_without_budget_is_one_tile(wan):
    assert plan_tiles(wan, (60, 104), None).count == 1


def test_plan_takes_the_largest_tile_that_fits_the_budget(wan):
    hw, call = (40, 52), DecodeCall(latent_frames=2, streaming=False)
    budget = 1200 * 2**20
    plan = plan_tiles(wan, hw, budget, overlap=8, call=call)
    assert 1 < plan.count and estimate_decode_memory(wan, plan, call).total <= budget
    area = plan.tile[0] * plan.tile[1]
    for th in [40] + list(range(25, 40)):
        for tw in [52] + list(range(25, 52)):
            other = TilePlan.build(hw, (th, tw), (8, 8))
            if th * tw > area:
                assert estimate_decode_memory(wan, other, call).total > budget, (th, tw)
    bigger = plan_tiles(wan, hw, 2 * budget, overlap=8, call=call)
    assert bigger.tile[0] * bigger.tile[1] > area
    huge = plan_tiles(wan, hw, 2**40, overlap=8, call=call)
    assert huge.count == 1


def test_too_small_a_budget_names_the_least_that_works(wan):
    call = DecodeCall(latent_frames=2, streaming=False)
    with pytest.raises(ValueError, match=r"memory_budget=1000000 bytes .* too small .* allowed: budget >= (\d+)") as e:
        plan_tiles(wan, (60, 104), 10**6, call=call)
    least = int(e.value.args[0].rsplit(">= ", 1)[1])
    plan = plan_tiles(wan, (60, 104), least, call=call)
    assert estimate_decode_memory(wan, plan, call).total <= least
    with pytest.raises(ValueError, match="too small"):
        plan_tiles(wan, (60, 104), least - 1, call=call)


@pytest.mark.parametrize("kwargs,match", [
    (dict(latent_hw=(0, 10)), r"latent_height=0 must be an int >= 1"),
    (dict(latent_hw=(10, -3)), r"latent_width=-3 must be an int >= 1"),
    (dict(latent_hw=(10, 2.5)), r"latent_hw=\(10, 2.5\) must be an int or a pair"),
    (dict(budget=0), r"memory_budget=0 must be a positive number of bytes"),
    (dict(budget=1.5e9), r"memory_budget=1500000000.0 must be a positive number of bytes"),
    (dict(overlap=-1), r"overlap=-1 must be >= 0"),
    (dict(call=DecodeCall(batch=0)), r"batch=0 must be an int >= 1"),
    (dict(call=DecodeCall(latent_frames=0)), r"latent_frames=0 must be an int >= 1"),
    (dict(call=DecodeCall(frames_per_step=0)), r"frames_per_step=0 must be an int >= 1"),
])
def test_plan_rejects_bad_settings(wan, kwargs, match):
    args = dict(latent_hw=(20, 30), budget=2**30) | kwargs
    extra = {k: v for k, v in args.items() if k in ("overlap", "call")}
    with pytest.raises(ValueError, match=match):
        plan_tiles(wan, args["latent_hw"], args["budget"], **extra)


# ---- settings of the decoders ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(tile=17), r"tile=\(17, 17\) is smaller than the decoder's receptive field; allowed: tile sides >= 18"),
    (dict(tile=(40, 12)), r"allowed: tile sides >= 18 latent cells"),
    (dict(tile=0), r"tile sides >= 18"),
    (dict(tile="big"), r"tile='big' must be an int or a pair of ints"),
    (dict(tile=(20, 20, 20)), r"tile=\(20, 20, 20\) must be an int or a pair"),
    (dict(tile=20, overlap=20), r"overlap=20 must be smaller than tile=\(20, 20\); allowed: 0 <= overlap < tile"),
    (dict(tile=(20, 30), overlap=(4, 30)), r"overlap=\(4, 30\) must be smaller than tile"),
    (dict(overlap=-2), r"overlap=-2 must be >= 0 latent cells"),
    (dict(memory_budget=0), r"memory_budget=0 must be a positive number of bytes or None"),
    (dict(memory_budget=True), r"memory_budget=True must be a positive number"),
    (dict(blend="gauss"), r"blend='gauss' is unknown; allowed: \['linear', 'cosine'\]"),
    (dict(frames_per_step=0), r"frames_per_step=0 must be an int >= 1"),
])
def test_decoders_reject_bad_settings_when_built(kwargs, match):
    vae = meta_vae(vae_preset("micro"))
    with pytest.raises(ValueError, match="TiledStreamingDecoder: .*" + match):
        TiledStreamingDecoder(vae, **kwargs)
    z = torch.zeros(1, 4, 1, 20, 20)
    with pytest.raises(ValueError, match="decode_tiled: .*" + match):
        decode_tiled(vae, z, **kwargs)  # checked before the latents are even looked at


@pytest.mark.parametrize("max_side", [0, 7, 100.0, True])
def test_previews_reject_a_bad_size(max_side):
    vae = meta_vae(vae_preset("micro"))
    with pytest.raises(ValueError, match=r"decode_preview: max_side=.* must be an int >= 8 pixels"):
        decode_preview(vae, torch.zeros(1, 4, 1, 4, 4), max_side=max_side)  # checked before any compute
    with pytest.raises(ValueError, match=r"PreviewDecoder: max_side=.* must be an int >= 8 pixels"):
        PreviewDecoder(vae, max_side=max_side)
