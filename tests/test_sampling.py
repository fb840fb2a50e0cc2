"""Schedules, transitions and the two samplers."""
import pytest
import torch

from salt_core.kv_cache import CachePolicy
from salt_core.sampling import (ChunkLayout, Guidance, PromptSegment, StopSampling, Walk, sample_ar, sample_clip,
                                stream_ar, transition_step)
from salt_core.schedules import StepGrid, allowed_step_counts, resolve_grid, shift_sigma

SELF_FORCING = [1000.0, 750.0, 500.0, 250.0]


def test_self_forcing_grid_warps_onto_shift_5():
    g = StepGrid.from_timesteps(SELF_FORCING, shift=5.0)
    assert g.timesteps == pytest.approx([1000.0, 937.5, 833.3333, 625.0], abs=1e-3)
    assert g.with_terminal()[-1] == 0.0


def test_shift_is_monotone_and_fixes_endpoints():
    xs = [i / 20 for i in range(21)]
    ys = [shift_sigma(x, 5.0) for x in xs]
    assert ys[0] == 0.0 and ys[-1] == 1.0
    assert all(a < b for a, b in zip(ys, ys[1:]))
    assert all(y >= x for x, y in zip(xs, ys))


def test_step_counts_from_a_trained_grid():
    assert allowed_step_counts(SELF_FORCING)[:5] == [1, 2, 4, 8, 16]
    assert resolve_grid(steps=2, trained_timesteps=SELF_FORCING, shift=1.0).timesteps == (1000.0, 500.0)
    assert resolve_grid(steps=8, trained_timesteps=SELF_FORCING, shift=1.0).timesteps[::2] == tuple(SELF_FORCING)
    with pytest.raises(ValueError, match=r"steps=3 is outside this model's grid.*allowed step counts: \[1, 2, 4, 8"):
        resolve_grid(steps=3, trained_timesteps=SELF_FORCING)
    with pytest.raises(ValueError, match="strictly decreasing"):
        resolve_grid(timesteps=[500, 750])
    with pytest.raises(ValueError, match=r"\(0, 1000\]"):
        resolve_grid(timesteps=[1200, 500])


def test_transitions_follow_the_flow_path():
    x0, eps = torch.randn(4, 8), torch.randn(4, 8)
    s, sn = 0.8, 0.3
    x_t = (1 - s) * x0 + s * eps
    # With the exact x0, the ODE step lands on the same straight path; renoise with the same eps too.
    assert torch.allclose(transition_step(x_t, x0, s, sn, "ode"), (1 - sn) * x0 + sn * eps, atol=1e-6)
    assert torch.allclose(transition_step(x_t, x0, s, sn, "renoise", eps), (1 - sn) * x0 + sn * eps, atol=1e-6)
    assert torch.equal(transition_step(x_t, x0, s, 0.0, "ode"), x0)
    with pytest.raises(ValueError, match="allowed"):
        transition_step(x_t, x0, s, sn, "euler")


GRID = StepGrid.from_timesteps(SELF_FORCING, 5.0)


def ar(model, prompts, chunk_frames=3, **kw):
    args = dict(layout=ChunkLayout(9, (4, 4), chunk_frames), walk=Walk(GRID), seed=3)
    args.update(kw)
    return sample_ar(model, prompts, **args)


@torch.no_grad()
def test_ar_sampling_is_seeded_and_streams_in_chunks(tiny_dit):
    ctx = torch.randn(1, 5, 32)
    a, b, c = ar(tiny_dit, ctx), ar(tiny_dit, ctx), ar(tiny_dit, ctx, seed=4)
    assert a.shape == (1, 16, 9, 4, 4)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    chunks = list(stream_ar(tiny_dit, ctx, layout=ChunkLayout(9, (4, 4), 3), walk=Walk(GRID), seed=3))
    assert [ch.frame_start for ch in chunks] == [0, 3, 6]
    assert torch.equal(torch.cat([ch.latents for ch in chunks], 2), a)


@torch.no_grad()
def test_ar_callback_can_stop_cleanly(tiny_dit):
    seen = []

    def cb(res):
        seen.append(res.index)
        if res.index == 1:
            raise StopSampling

    out = ar(tiny_dit, torch.randn(1, 5, 32), callback=cb)
    assert seen == [0, 1] and out.shape[2] == 6


@torch.no_grad()
def test_prompt_switch_changes_only_later_chunks(tiny_dit):
    a_ctx, b_ctx = torch.randn(1, 5, 32), torch.randn(1, 5, 32)
    base = ar(tiny_dit, a_ctx)
    for recache in (True, False):
        policy = CachePolicy("window", window_frames=3, recache_on_switch=recache)
        base = ar(tiny_dit, a_ctx, policy=policy)
        sw = ar(tiny_dit, [PromptSegment(0, a_ctx), PromptSegment(6, b_ctx)], policy=policy)
        assert torch.equal(sw[:, :, :6], base[:, :, :6])
        assert not torch.allclose(sw[:, :, 6:], base[:, :, 6:])


@torch.no_grad()
def test_prompt_schedule_errors(tiny_dit):
    a = torch.randn(1, 5, 32)
    with pytest.raises(ValueError, match="chunk start"):
        ar(tiny_dit, [PromptSegment(0, a), PromptSegment(4, a)])
    with pytest.raises(ValueError, match="start at frame 0"):
        ar(tiny_dit, [PromptSegment(3, a)])
    with pytest.raises(ValueError, match="empty"):
        ar(tiny_dit, torch.zeros(1, 0, 32))
    with pytest.raises(ValueError, match="NaN"):
        ar(tiny_dit, torch.full((1, 5, 32), float("nan")))
    with pytest.raises(ValueError, match=r"33 video frames \(9 latent frames\) do not fill whole chunks of 2 .* the "
                                         r"nearest video frame counts that do are 29 and 37 \(8k − 3.*\[1, 3, 9\]"):
        ar(tiny_dit, a, chunk_frames=2)


@torch.no_grad()
def test_clip_sampler_with_guidance_and_callback(tiny_dit):
    ctx, neg = torch.randn(1, 5, 32), torch.randn(1, 5, 32)
    steps = []
    shape = (1, 16, 3, 4, 4)
    x = sample_clip(tiny_dit, ctx, latent_shape=shape, walk=Walk(GRID), seed=1,
                    callback=lambda p: steps.append(p.step))
    y = sample_clip(tiny_dit, ctx, latent_shape=shape, walk=Walk(GRID), seed=1, guidance=Guidance(3.0, neg))
    assert steps == [1, 2, 3, 4] and x.shape == shape
    assert torch.isfinite(y).all() and not torch.allclose(x, y)
    with pytest.raises(ValueError, match="negative prompt of guidance scale 3.0 is missing"):
        Guidance(3.0)


@torch.no_grad()
def test_ode_transition_is_deterministic_renoise_depends_on_seed_only_through_noise(tiny_dit):
    ctx = torch.randn(1, 5, 32)
    noise = torch.randn(1, 16, 3, 4, 4)
    shape = tuple(noise.shape)
    a = sample_clip(tiny_dit, ctx, latent_shape=shape, walk=Walk(GRID, "ode"), seed=1, noise=noise)
    b = sample_clip(tiny_dit, ctx, latent_shape=shape, walk=Walk(GRID, "ode"), seed=2, noise=noise)
    c = sample_clip(tiny_dit, ctx, latent_shape=shape, walk=Walk(GRID, "renoise"), seed=2, noise=noise)
    assert torch.equal(a, b) and not torch.allclose(a, c)
