"""The CPU fast paths compute the same function as the plain formulas they replace."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from salt_core.config import dit_preset
from salt_core.dit import WanDiT
from salt_core.dit.layers import RMSNorm, TanhGELU
from salt_core.rope import RopeTable, apply_rope
from salt_core.vae import VAEConfig, WanVAE
from salt_core.vae.layers import conv3d

from conftest import perturbed, rel_err


def test_tanh_gelu_fast_path_equals_torch_gelu():
    x = torch.randn(4, 33, 70) * 4
    with torch.no_grad():
        fast = TanhGELU()(x)
    assert rel_err(fast, F.gelu(x, approximate="tanh")) <= 1e-6


def test_rms_norm_inference_path_equals_autograd_path():
    norm = RMSNorm(48)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(48) + 0.5)
    x = torch.randn(2, 9, 48)
    with torch.no_grad():
        fast = norm(x)
    assert rel_err(fast, norm(x).detach()) <= 1e-6


def test_complex_rope_equals_the_real_pair_rotation():
    table = RopeTable(head_dim=32)
    cos, sin = table.cos_sin([3, 4], 2, 3, torch.device("cpu"), torch.float32)
    x = torch.randn(2, 12, 4, 32).transpose(1, 2)  # [B, H, L, D] head view, not contiguous
    re, im = x.unflatten(-1, (-1, 2)).unbind(-1)
    expected = torch.stack((re * cos - im * sin, re * sin + im * cos), dim=-1).flatten(-2)
    assert rel_err(apply_rope(x, table.rotation([3, 4], 2, 3, torch.device("cpu"))), expected) <= 1e-6


def test_per_sample_timestep_equals_the_same_timestep_per_frame(tiny_dit):
    x, ctx = torch.randn(2, 16, 3, 4, 4), torch.randn(2, 5, 32)
    t = torch.tensor([300.0, 800.0])
    with torch.no_grad():
        shared = tiny_dit(x, t, ctx)
        per_frame = tiny_dit(x, t[:, None].expand(2, 3), ctx)
    assert rel_err(shared, per_frame) <= 1e-6


def test_inference_forward_leaves_inputs_and_returned_features_untouched(tiny_dit):
    x, t, ctx = torch.randn(1, 16, 2, 4, 4), torch.tensor([500.0]), torch.randn(1, 5, 32)
    x0 = x.clone()
    with torch.no_grad():
        v, feats = tiny_dit(x, t, ctx, return_features=(0, 1))
        v2, feats2 = tiny_dit(x, t, ctx, return_features=(0,))
    assert torch.equal(x, x0)
    assert torch.equal(feats[0], feats2[0])  # block 0's output was not overwritten by block 1
    assert torch.equal(v, v2)


def test_inference_and_autograd_forwards_agree():
    model = perturbed(WanDiT(dit_preset("tiny")))
    x, t, ctx = torch.randn(1, 16, 2, 4, 4), torch.tensor([500.0]), torch.randn(1, 5, 32)
    with torch.inference_mode():
        fast = model(x, t, ctx)
    assert rel_err(fast, model(x, t, ctx).detach()) <= 1e-5


def test_onednn_conv3d_equals_torch_conv3d_in_both_memory_layouts():
    x = torch.randn(1, 6, 5, 9, 7)
    w, b = torch.randn(4, 6, 3, 3, 3), torch.randn(4)
    expected = F.conv3d(x, w, b, (1, 1, 1), (0, 1, 1))
    for layout in (torch.contiguous_format, torch.channels_last_3d):
        got = conv3d(x.contiguous(memory_format=layout), w, b, (1, 1, 1), (0, 1, 1))
        assert rel_err(got, expected) <= 1e-5


def test_auto_frames_per_step_decodes_like_one_frame_per_step():
    torch.manual_seed(0)
    vae = WanVAE(VAEConfig(dim=8, z_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=1, latent_mean=(), latent_std=())).eval()
    z = torch.randn(1, 4, 7, 3, 3)
    with torch.inference_mode():
        auto, single = vae.streaming_decoder(None), vae.streaming_decoder(1)
        a = torch.cat([auto.decode_next(c) for c in z.split(3, dim=2)], dim=2)
        b = torch.cat([single.decode_next(c) for c in z.split(3, dim=2)], dim=2)
    assert rel_err(a, b) <= 1e-5
