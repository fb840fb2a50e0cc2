"""Cache-distribution-aware AR training: low/high-quality caches and the feature-alignment loss."""
import pytest
import torch

from salt_core.kv_cache import CachePolicy
from salt_core.sampling import CausalSetup, Walk
from salt_core.schedules import StepGrid
from training.losses import feature_alignment_loss
from training.rollout import CacheAlignment, cache_alignment_term, cache_features, cache_pair

F, HW = 2, (4, 4)
POLICY = CachePolicy("window", window_frames=4)


def valid_keys(driver, layer=0):
    cache = driver.cache
    n = cache.valid_frames * cache.tokens_per_frame
    return cache.layers[layer].k[:, :, :n].clone()


def walk(K):
    return Walk(StepGrid.uniform(K, 5.0))


@pytest.fixture
def setup(tiny_dit):
    g = torch.Generator().manual_seed(0)
    ctx = torch.randn(1, 5, 32, generator=g)
    return tiny_dit, torch.randn(1, 16, 3 * F, *HW, generator=g), CausalSetup(tiny_dit, ctx, POLICY, F)


def test_caches_from_two_and_eight_step_rollouts_differ(setup):
    model, noise, causal = setup
    prev = noise[:, :, : 2 * F]
    pair = cache_pair(causal, prev, walk(2), walk(8), seed=4)
    assert pair.low.cache.valid_frames == pair.high.cache.valid_frames == 2 * F
    assert (pair.x_low - pair.x_high).abs().max() > 1e-3
    assert (valid_keys(pair.low) - valid_keys(pair.high)).abs().max() > 1e-3
    again = cache_pair(causal, prev, walk(2), walk(8), seed=4)
    assert torch.equal(valid_keys(again.low), valid_keys(pair.low))  # same noise, prompt and seed: same cache
    same_k = cache_pair(causal, prev, walk(8), walk(8), seed=4)
    assert torch.equal(valid_keys(same_k.low), valid_keys(same_k.high))


def test_current_chunk_features_depend_on_the_cache_quality(setup):
    model, noise, causal = setup
    pair = cache_pair(causal, noise[:, :, : 2 * F], walk(2), walk(8), seed=1)
    fl, fh, xl, xh = cache_features(pair, noise[:, :, 2 * F:], 0.9, [4, 5], layers=(0, 1))
    assert fl[1].requires_grad and not fh[1].requires_grad and not xh.requires_grad
    assert (fl[1] - fh[1]).abs().max() > 1e-4 and (xl - xh).abs().max() > 1e-4


def test_alignment_loss_pulls_low_cache_features_toward_high_cache_features(setup):
    model, noise, causal = setup
    pair = cache_pair(causal, noise[:, :, : 2 * F], walk(2), walk(8), seed=2)
    x_t, sigma = noise[:, :, 2 * F :], StepGrid.uniform(4, 5.0).sigmas[1]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def distances():
        """(feature gap relative to the target's size, x̂0 gap) under the current student"""
        with torch.no_grad():
            fl, fh, xl, xh = cache_features(pair, x_t, sigma, [4, 5], layers=(1,))
        return (fl[1] - fh[1]).square().mean() / fh[1].square().mean(), (xl - xh).square().mean()

    start, losses = distances(), []
    for _ in range(8):
        fl, fh, xl, xh = cache_features(pair, x_t, sigma, [4, 5], layers=(1,))
        loss, stats = feature_alignment_loss(fl, fh, xl, xh, layers=(1,), use_x0=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    end = distances()
    assert losses[-1] < 0.3 * losses[0]
    assert end[0] < 0.5 * start[0] and end[1] < 0.5 * start[1]
    assert set(stats) == {"fa_layer_1", "fa_x0", "fa_loss"}


def test_alignment_term_end_to_end_trains_only_through_the_low_cache_pass(setup):
    model, noise, causal = setup
    alignment = CacheAlignment(walk(2), walk(8), layers=(0, 1), use_x0=True)
    loss, stats = cache_alignment_term(causal, noise, walk(4), alignment, torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.item() > 0 and stats["fa_cache_gap"] > 0 and 0 <= stats["fa_step"] < 4
    assert model.blocks[1].ffn[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("normalize", ["layernorm", "none", "cosine"])
def test_alignment_loss_is_zero_at_equal_features_and_never_trains_the_target(normalize):
    low = {0: torch.randn(2, 8, 64, requires_grad=True)}
    high = {0: low[0].detach().clone().requires_grad_(True)}
    loss, _ = feature_alignment_loss(low, high, normalize=normalize)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    high[0].data += torch.randn(2, 8, 64)
    loss, _ = feature_alignment_loss(low, high, normalize=normalize)
    loss.backward()
    assert loss.item() > 0 and high[0].grad is None and low[0].grad.abs().sum() > 0


def test_alignment_loss_names_what_is_missing():
    f = {0: torch.randn(1, 4, 8)}
    with pytest.raises(ValueError, match="block"):
        feature_alignment_loss(f, f, layers=(3,))
    with pytest.raises(ValueError, match="nothing to align"):
        feature_alignment_loss({}, {}, layers=())
    with pytest.raises(ValueError, match="x0_low"):
        feature_alignment_loss(f, f, use_x0=True)
