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
@pytest.mark.parametrize("positions", ["absolute", "cache_relative"])
def test_a_recache_that_keeps_the_sink_recomputes_only_the_frames_after_it(positions):
    """LongLive's global_sink: on a prompt switch the sink's K/V stay as the first prompt made them; the window's are
    recomputed under the new prompt (against that sink). Without it every retained frame is recomputed."""
    import dataclasses

    from conftest import perturbed
    from salt_core.config import dit_preset
    from salt_core.dit import WanDiT
    from salt_core.sampling import ChunkDriver

    torch.manual_seed(0)  # 3 blocks: the sink's K/V of block 1 reach the window's keys of block 2
    model = perturbed(WanDiT(dataclasses.replace(dit_preset("tiny"), num_layers=3)))
    a_ctx, b_ctx = torch.randn(1, 5, 32), torch.randn(1, 5, 32)
    layout = ChunkLayout(12, (4, 4), 3)
    sinks = {}
    for keep in (True, False):
        policy = CachePolicy("sink_window", window_frames=3, sink_frames=3, positions=positions,
                             recache_keeps_sink=keep)
        driver = ChunkDriver(model, policy, layout)
        driver.set_prompt(a_ctx)
        for chunk in range(3):  # frames 0..8 committed: sink 0-2, window 6-8
            x = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(chunk))
            driver._context_pass(driver.cache, x, driver.frames(chunk))
        cache = driver.cache
        tokens = 3 * cache.tokens_per_frame
        before = [(layer.k[:, :, :tokens].clone(), layer.k[:, :, tokens:2 * tokens].clone()) for layer in cache.layers]
        driver.set_prompt(b_ctx, recache=True)
        assert sorted(cache.slot_frame[:6]) == [0, 1, 2, 6, 7, 8]
        # layer 0's keys see only the frame itself; from layer 1 on they carry the prompt (through cross-attention)
        for (sink, window), layer in list(zip(before, cache.layers))[1:]:
            assert torch.equal(layer.k[:, :, :tokens], sink) == keep
            assert not torch.allclose(layer.k[:, :, tokens:2 * tokens], window)
        sinks[keep] = [layer.k[:, :, tokens:2 * tokens].clone() for layer in cache.layers[1:]]
    # the window recomputed against the kept (first-prompt) sink differs from one against a recomputed sink
    assert not all(torch.allclose(k, r) for k, r in zip(sinks[True], sinks[False]))


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


def test_a_pixel_frame_count_off_4k_plus_1_names_the_nearest_and_for_chunks_those_that_fill_them():
    from salt_core.validation import check_pixel_frames

    assert check_pixel_frames(33, 3) == 9 and check_pixel_frames(33) == 9
    with pytest.raises(ValueError, match=r"got 10: the nearest are 9 and 13$"):
        check_pixel_frames(10)                       # a bidirectional model: no chunk rule
    with pytest.raises(ValueError, match=r"got 40: the nearest are 37 and 41; for this model's chunks of 3 latent "
                                         r"frames, the nearest that fill whole chunks are 33 and 45 \(12k − 3"):
        check_pixel_frames(40, 3)
    with pytest.raises(ValueError, match=r"got 3: the nearest are 1 and 5; .* whole chunks are 5 \(8k − 3"):
        check_pixel_frames(3, 2)                     # below the first whole chunk only the one above is named
    with pytest.raises(ValueError, match="a positive integer, got True"):
        check_pixel_frames(True, 3)


# ---- classifier-free guidance: the formula, through one step ------------------------------------------
#
# One step from σ = 1 to 0 ends at x̂0 = x − v, so the sampler's output shows the guided flow prediction
# directly: x̂0 = x − (v_u + w·(v_c − v_u)). The stand-ins' predictions are known functions of the prompt.

ONE_STEP = StepGrid.from_timesteps([1000], 1.0)
TEXT_DIM, C, HW = 4, 3, (2, 2)


def prompt_shift(context: torch.Tensor, frame: int = 0) -> torch.Tensor:
    """The part of the stand-ins' prediction set by the prompt: [B, L, TEXT_DIM] -> [B, C, 1, 1, 1]."""
    w = torch.arange(TEXT_DIM * C, dtype=torch.float32).view(TEXT_DIM, C) / 10 - 0.5
    return (context.mean(dim=1) @ w + 0.25 * frame).view(-1, C, 1, 1, 1)


class KnownFlow(torch.nn.Module):
    """Bidirectional stand-in: v(x, t, context) = x_gain·x + prompt_shift(context); records its calls."""

    device = torch.device("cpu")

    def __init__(self, x_gain: float):
        super().__init__()
        self.x_gain, self.calls = x_gain, []

    def forward(self, x, t, context):
        self.calls.append((t.clone(), context))
        return self.x_gain * x + prompt_shift(context)


class PromptCache:
    def __init__(self, policy):
        self.policy, self.context, self.committed = policy, None, []


class KnownCausalFlow:
    """Causal stand-in with the interface the AR sampler uses: v = x + prompt_shift(cache's prompt, chunk's
    first frame), so the clean estimate at σ = 1 (x − v) does not depend on the drawn noise."""

    device = torch.device("cpu")
    config = type("Config", (), {"in_dim": C})()

    def __init__(self):
        self.denoise_t = []

    def new_cache(self, policy, *, batch, latent_hw, chunk_frames):
        return PromptCache(policy)

    def set_prompt(self, cache, context):
        cache.context = context

    def forward_chunk(self, x, t, cache, frame_indices, commit=False):
        if commit:
            cache.committed.append(list(frame_indices))
        else:
            self.denoise_t.append(t.clone())
        return x + prompt_shift(cache.context, frame_indices[0])


def prompts():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, TEXT_DIM, generator=g), torch.randn(2, 3, TEXT_DIM, generator=g)


@torch.no_grad()
@pytest.mark.parametrize("w", [1.0, 0.0, 3.0, -1.5])
def test_clip_sampler_guides_with_v_uncond_plus_w_times_the_difference(w):
    ctx, neg = prompts()
    shape = (2, C, 2, *HW)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    model = KnownFlow(x_gain=0.5)
    out = sample_clip(model, ctx, latent_shape=shape, walk=Walk(ONE_STEP, "ode"), guidance=Guidance(w, neg),
                      noise=noise)
    v_c, v_u = 0.5 * noise + prompt_shift(ctx), 0.5 * noise + prompt_shift(neg)
    want = v_c if w == 1.0 else v_u + w * (v_c - v_u)
    torch.testing.assert_close(out, noise - want, atol=1e-6, rtol=1e-6)
    assert all(bool((t == 1000.0).all()) for t, _ in model.calls)
    assert sum(t.shape[0] for t, _ in model.calls) == (2 if w == 1.0 else 4)  # w = 1: no unconditional pass


@torch.no_grad()
@pytest.mark.parametrize("w", [1.0, 0.0, 3.0, -1.5])
def test_ar_sampler_guides_every_chunk_with_its_own_negative_cache(w):
    ctx, neg = prompts()
    model = KnownCausalFlow()
    out = sample_ar(model, ctx, layout=ChunkLayout(4, HW, 2, batch=2), walk=Walk(ONE_STEP), guidance=Guidance(w, neg))
    assert out.shape == (2, C, 4, *HW)
    for chunk, frames in enumerate((slice(0, 2), slice(2, 4))):
        s_c, s_u = prompt_shift(ctx, 2 * chunk), prompt_shift(neg, 2 * chunk)
        want = -(s_c if w == 1.0 else s_u + w * (s_c - s_u))  # x − v with v = x + shift
        torch.testing.assert_close(out[:, :, frames], want.expand(2, C, 2, *HW), atol=1e-6, rtol=1e-6)
    assert all(bool((t == 1000.0).all()) for t in model.denoise_t)
    assert sum(t.shape[0] for t in model.denoise_t) == 2 * 2 * (1 if w == 1.0 else 2)  # chunks x batch x passes


@torch.no_grad()
def test_clip_sampler_reports_each_step_and_needs_a_negative_prompt_to_guide(tiny_dit):
    ctx = torch.randn(1, 5, 32)
    steps = []
    shape = (1, 16, 3, 4, 4)
    x = sample_clip(tiny_dit, ctx, latent_shape=shape, walk=Walk(GRID), seed=1,
                    callback=lambda p: steps.append(p.step))
    assert steps == [1, 2, 3, 4] and x.shape == shape
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


def test_a_stream_past_the_rope_table_is_refused_before_its_first_chunk(tiny_dit):
    calls = []
    tiny_dit.blocks[0].register_forward_pre_hook(lambda *a: calls.append(1))
    stream = stream_ar(tiny_dit, torch.randn(1, 5, 32), layout=ChunkLayout(1500, (4, 4), 3), walk=Walk(GRID),
                       policy=CachePolicy("window", window_frames=6))
    with pytest.raises(ValueError, match="positions 'absolute' .* up to 1499 .* 1024 positions"):
        next(stream)
    assert calls == []
