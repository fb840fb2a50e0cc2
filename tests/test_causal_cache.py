"""Causal mode: chunk-by-chunk through the KV cache equals one forward with the equivalent mask."""
import pytest
import torch

from salt_core.kv_cache import CachePolicy
from salt_core.sampling import ChunkDriver, ChunkLayout

from conftest import rel_err

T, F, HW = 12, 3, (4, 6)


def run_chunks(model, x, t, ctx, policy, chunk=F):
    cache = model.new_cache(policy, batch=x.shape[0], latent_hw=HW, chunk_frames=chunk)
    model.set_prompt(cache, ctx)
    outs = []
    for c in range(x.shape[2] // chunk):
        idx = list(range(c * chunk, (c + 1) * chunk))
        xc, tc = x[:, :, idx], t[:, idx]
        outs.append(model.forward_chunk(xc, tc, cache, idx))
        model.forward_chunk(xc, tc, cache, idx, commit=True)
    return torch.cat(outs, 2), cache


POLICIES = {
    "full": CachePolicy("full"),
    "window": CachePolicy("window", window_frames=4),  # 4 frames over chunks of 3: eviction mid-chunk
    "sink_window": CachePolicy("sink_window", sink_frames=2, window_frames=4),
    "full_relative": CachePolicy("full", positions="cache_relative"),
}


@pytest.mark.parametrize("name", list(POLICIES))
@torch.no_grad()
def test_chunked_generation_equals_single_pass_with_policy_mask(tiny_dit, name):
    policy = POLICIES[name]
    x = torch.randn(2, 16, T, *HW)
    t = torch.rand(2, T) * 1000  # per-frame timesteps, fractional
    ctx = torch.randn(2, 5, 32)
    ref = tiny_dit(x, t, ctx, frame_mask=policy.frame_mask(T, F))
    out, cache = run_chunks(tiny_dit, x, t, ctx, policy)
    assert rel_err(out, ref) <= 1e-5
    assert cache.valid_frames == min(T, policy.capacity)


@torch.no_grad()
def test_window_differs_from_full_once_frames_are_evicted(tiny_dit):
    x, t, ctx = torch.randn(1, 16, T, *HW), torch.full((1, T), 500.0), torch.randn(1, 5, 32)
    full, _ = run_chunks(tiny_dit, x, t, ctx, POLICIES["full"])
    win, _ = run_chunks(tiny_dit, x, t, ctx, POLICIES["window"])
    # chunk 0 and 1 see the same past (<= 4 frames); chunk 2 onward lost frames
    assert rel_err(win[:, :, :6], full[:, :, :6]) <= 1e-5
    assert rel_err(win[:, :, 6:], full[:, :, 6:]) > 1e-3


def test_banded_mask_shapes():
    m = CachePolicy("sink_window", sink_frames=1, window_frames=2).frame_mask(9, 3)
    # chunk 2 (frames 6..8): itself, sink frame 0, last two past frames 4, 5
    assert m[7].nonzero().flatten().tolist() == [0, 4, 5, 6, 7, 8]
    assert m[1].nonzero().flatten().tolist() == [0, 1, 2]  # chunk 0 sees only itself
    full = CachePolicy("full").frame_mask(6, 3)
    assert torch.equal(full, torch.tensor([[1] * 3 + [0] * 3] * 3 + [[1] * 6] * 3, dtype=torch.bool))


@torch.no_grad()
def test_cache_relative_matches_absolute_when_cached_frames_are_contiguous(tiny_dit):
    """RoPE scores depend on position differences only: re-indexing a contiguous window changes nothing,
    while closing the gap between sink and window (cache_relative) does change the result."""
    x, t, ctx = torch.randn(1, 16, T, *HW), torch.full((1, T), 700.0), torch.randn(1, 5, 32)

    def both(**kw):
        a, _ = run_chunks(tiny_dit, x, t, ctx, CachePolicy(**kw))
        r, _ = run_chunks(tiny_dit, x, t, ctx, CachePolicy(**kw, positions="cache_relative"))
        return a, r

    a, r = both(kind="window", window_frames=3)
    assert rel_err(r, a) <= 1e-5
    a, r = both(kind="sink_window", sink_frames=1, window_frames=3)
    assert rel_err(r[:, :, :6], a[:, :, :6]) <= 1e-5  # no gap yet
    assert rel_err(r[:, :, 6:], a[:, :, 6:]) > 1e-4  # sink frame 0 now sits next to the window


@torch.no_grad()
def test_absolute_positions_past_rope_table_give_clear_error_and_relative_runs_on():
    from salt_core.config import DiTConfig
    from salt_core.dit import WanDiT

    model = WanDiT(DiTConfig(dim=64, ffn_dim=64, num_heads=2, num_layers=1, text_dim=8, text_len=4, rope_max_positions=8)).eval()
    x, t, ctx = torch.randn(1, 16, 3, 2, 2), torch.full((1,), 0.0), torch.randn(1, 2, 8)
    for positions, should_fail in (("absolute", True), ("cache_relative", False)):
        cache = model.new_cache(CachePolicy("window", window_frames=3, positions=positions), batch=1, latent_hw=(2, 2), chunk_frames=3)
        model.set_prompt(cache, ctx)
        try:
            for c in range(6):  # 18 frames > 8 table positions
                idx = list(range(3 * c, 3 * c + 3))
                model.forward_chunk(x, t, cache, idx, commit=True)
        except ValueError as e:
            assert should_fail, e
            assert "RoPE" in str(e) and "cache_relative" in str(e)
            assert c == 2  # frames 6..8 are the first to reach position 8
        else:
            assert not should_fail


@torch.no_grad()
def test_full_policy_reports_its_ceiling(tiny_dit):
    cache = tiny_dit.new_cache(CachePolicy("full", max_frames=4), batch=1, latent_hw=HW, chunk_frames=3)
    tiny_dit.set_prompt(cache, torch.randn(1, 5, 32))
    x, t = torch.randn(1, 16, 3, *HW), torch.zeros(1)
    tiny_dit.forward_chunk(x, t, cache, [0, 1, 2], commit=True)
    with pytest.raises(ValueError, match="max_frames=4"):
        tiny_dit.forward_chunk(x, t, cache, [3, 4, 5], commit=True)


@torch.no_grad()
def test_window_cache_memory_is_bounded(tiny_dit):
    cache = tiny_dit.new_cache(CachePolicy("window", window_frames=6), batch=1, latent_hw=HW, chunk_frames=3)
    tiny_dit.set_prompt(cache, torch.randn(1, 5, 32))
    x, t = torch.randn(1, 16, 3, *HW), torch.zeros(1)
    sizes = []
    for c in range(20):
        tiny_dit.forward_chunk(x, t, cache, list(range(3 * c, 3 * c + 3)), commit=True)
        sizes.append(cache.memory_bytes())
    assert len(set(sizes)) == 1 and cache.valid_frames == 6


@torch.no_grad()
def test_prompt_switch_recache_equals_history_under_new_prompt(tiny_dit):
    x = torch.randn(1, 16, 6, *HW)
    ctx_a, ctx_b = torch.randn(1, 5, 32), torch.randn(1, 7, 32)

    def committed(ctx):
        driver = ChunkDriver(tiny_dit, CachePolicy("full"), ChunkLayout(9, HW, 3))
        driver.set_prompt(ctx)
        for c in range(2):
            driver.commit(x[:, :, 3 * c: 3 * c + 3], driver.frames(c))
        return driver

    switched, direct, kept = committed(ctx_a), committed(ctx_b), committed(ctx_a)
    switched.set_prompt(ctx_b, recache=True)
    kept.set_prompt(ctx_b, recache=False)
    nxt = torch.randn(1, 16, 3, *HW)
    want = direct.denoiser(direct.frames(2)).velocity(nxt, 0.6)
    assert rel_err(switched.denoiser(switched.frames(2)).velocity(nxt, 0.6), want) <= 1e-5
    assert rel_err(kept.denoiser(kept.frames(2)).velocity(nxt, 0.6), want) > 1e-4


@pytest.mark.parametrize("policy, frames, message", [
    (CachePolicy("window", window_frames=6), 1100, r"absolute.*up to 1099.*1024 positions.*cache_relative"),
    (CachePolicy("full", max_frames=2000, positions="cache_relative"), 1100, r"'full' cache.*window"),
])
def test_positions_past_the_rope_table_are_refused_before_sampling(policy, frames, message):
    with pytest.raises(ValueError, match=message):
        policy.check_length(frames, 3, 1024)


def test_long_windowed_relative_videos_fit_the_table():
    CachePolicy("window", window_frames=12, positions="cache_relative").check_length(100_002, 3, 1024)
    CachePolicy("sink_window", sink_frames=3, window_frames=9, positions="cache_relative").check_length(3_000, 3, 1024)
    CachePolicy("window", window_frames=6).check_length(1023, 3, 1024)  # absolute: index 1022 is in the table


def test_cache_policy_rejects_bad_settings():
    with pytest.raises(ValueError, match="allowed"):
        CachePolicy("ring")
    with pytest.raises(ValueError, match="window_frames"):
        CachePolicy("window")
    with pytest.raises(ValueError, match="sink_frames"):
        CachePolicy("sink_window", window_frames=3)
    with pytest.raises(ValueError, match="positions"):
        CachePolicy("full", positions="relative")
