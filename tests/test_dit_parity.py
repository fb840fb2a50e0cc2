"""Our DiT equals diffusers' WanTransformer3DModel (an independent implementation) on the same weights."""
import pytest
import torch

from salt_core.checkpoints.keys import diffusers_to_official, official_to_diffusers
from salt_core.config import DiTConfig
from salt_core.dit import WanDiT

from conftest import perturbed, rel_err

diffusers = pytest.importorskip("diffusers", reason="diffusers is the test-only oracle: pip install -e '.[test]'")

CFG = DiTConfig(dim=64, ffn_dim=128, num_heads=2, num_layers=2, text_dim=32, text_len=16)


def oracle_for(cfg: DiTConfig):
    return diffusers.WanTransformer3DModel(
        patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_dim, out_channels=cfg.out_dim, text_dim=cfg.text_dim, freq_dim=cfg.freq_dim,
        ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers, cross_attn_norm=cfg.cross_attn_norm,
        qk_norm="rms_norm_across_heads", eps=cfg.eps,
    ).eval()


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    ours = perturbed(WanDiT(CFG), seed=1)
    theirs = oracle_for(CFG)
    theirs.load_state_dict(official_to_diffusers(ours.state_dict()), strict=True)
    return ours, theirs


def padded(ctx: torch.Tensor, text_len: int) -> torch.Tensor:
    """diffusers leaves padding to the caller; the reference pads to text_len with zeros."""
    return torch.cat([ctx, ctx.new_zeros(ctx.shape[0], text_len - ctx.shape[1], ctx.shape[2])], dim=1)


@pytest.mark.parametrize("t", [1000.0, 937.5, 500.7, 37.25, 0.0])
@torch.no_grad()
def test_forward_matches_diffusers(pair, t):
    ours, theirs = pair
    x = torch.randn(2, 16, 3, 8, 6)
    ctx = torch.randn(2, 7, CFG.text_dim)
    ts = torch.tensor([t, t])
    a = ours(x, ts, ctx)
    b = theirs(x, ts, padded(ctx, CFG.text_len), return_dict=False)[0]
    assert a.shape == b.shape == x.shape
    assert rel_err(a, b) <= 1e-4


@torch.no_grad()
def test_key_conversion_round_trips_both_ways(pair):
    ours, theirs = pair
    sd = ours.state_dict()
    back = diffusers_to_official(official_to_diffusers(sd))
    assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    # diffusers -> ours loads strictly into a fresh model and gives the same output
    fresh = WanDiT(CFG).eval()
    fresh.load_state_dict(diffusers_to_official(theirs.state_dict()), strict=True)
    x, ctx, t = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 5, CFG.text_dim), torch.tensor([321.5])
    assert torch.equal(fresh(x, t, ctx), ours(x, t, ctx))


@torch.no_grad()
def test_weights_matter_so_the_parity_test_can_fail(pair):
    ours, theirs = pair
    other = perturbed(WanDiT(CFG), seed=2)
    x, ctx, t = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 5, CFG.text_dim), torch.tensor([500.0])
    b = theirs(x, t, padded(ctx, CFG.text_len), return_dict=False)[0]
    assert rel_err(other(x, t, ctx), b) > 1e-2
