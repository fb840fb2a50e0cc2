"""Wan 2.1 VAE: official layout, parity with diffusers' AutoencoderKLWan, streaming decode, input checks."""
from __future__ import annotations

import pytest
import torch

from salt_core.vae import (
    VAE_PRESETS,
    VAEConfig,
    WanVAE,
    detect_vae_format,
    diffusers_to_official,
    iter_decode,
    official_to_diffusers,
    to_official,
    vae_config_from_state_dict,
    vae_preset,
)

TINY = VAEConfig(dim=8, z_dim=4, dim_mult=(1, 2, 4, 4), num_res_blocks=2,
                 latent_mean=(0.1, -0.2, 0.3, 0.0), latent_std=(1.5, 0.5, 2.0, 1.0))
REAL_PARAMS = 126_892_531  # diffusers AutoencoderKLWan() counts the same (checked below)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def randomize_(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (norm gammas too, and the zero-initialised attention proj), seeded."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("gamma"):
                p.copy_(1.0 + 0.3 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(noise / p[0].numel() ** 0.5)
    return model


def diffusers_twin(ours: WanVAE):
    diffusers = pytest.importorskip("diffusers")
    cfg = ours.config
    twin = diffusers.AutoencoderKLWan(
        base_dim=cfg.dim, z_dim=cfg.z_dim, dim_mult=list(cfg.dim_mult), num_res_blocks=cfg.num_res_blocks,
        temperal_downsample=list(cfg.temporal_downsample),
        latents_mean=list(cfg.latent_mean), latents_std=list(cfg.latent_std),
    )
    twin.load_state_dict(official_to_diffusers(ours.state_dict()), strict=True)
    return twin.eval()


def video(b: int, t: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, t, h, w, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def vae() -> WanVAE:
    return randomize_(WanVAE(TINY), seed=0).eval()


@pytest.fixture(scope="module")
def twin(vae):
    return diffusers_twin(vae)


@pytest.fixture(scope="module")
def latents(vae) -> torch.Tensor:
    with torch.no_grad():
        return vae.encode(video(2, 17, 16, 24, seed=7))  # [2, 4, 5, 2, 3]


@pytest.fixture(scope="module")
def decoded(vae, latents) -> torch.Tensor:
    with torch.no_grad():
        return vae.decode(latents)  # [2, 3, 17, 16, 24]


# ---- layout -----------------------------------------------------------------------------------

def test_real_preset_has_the_official_194_keys_and_126_9m_params():
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        ours = WanVAE(vae_preset("wan2.1-vae"))
        theirs = diffusers.AutoencoderKLWan()
    sd = ours.state_dict()
    assert len(sd) == 194
    assert sum(p.numel() for p in ours.parameters()) == REAL_PARAMS
    assert sum(p.numel() for p in theirs.parameters()) == REAL_PARAMS
    assert sd["decoder.upsamples.3.time_conv.weight"].shape == (768, 384, 3, 1, 1)
    assert sd["encoder.conv1.weight"].shape == (96, 3, 3, 3, 3)
    assert sd["conv1.weight"].shape == (32, 32, 1, 1, 1) and sd["conv2.weight"].shape == (16, 16, 1, 1, 1)
    converted, expected = official_to_diffusers(sd), theirs.state_dict()
    assert set(converted) == set(expected)
    assert all(converted[k].shape == expected[k].shape for k in expected)
    assert ours.config.spatial_factor == 8 and ours.config.temporal_factor == 4


def test_key_conversion_round_trips_both_ways(vae, twin):
    official = vae.state_dict()
    there = official_to_diffusers(official)
    back = diffusers_to_official(there)
    assert list(back) == list(official) and all(back[k] is official[k] for k in official)
    theirs = twin.state_dict()
    again = official_to_diffusers(diffusers_to_official(theirs))
    assert set(again) == set(theirs) and all(again[k] is theirs[k] for k in theirs)
    assert detect_vae_format(official) == "official" and detect_vae_format(theirs) == "diffusers"
    assert to_official(theirs).keys() == official.keys()


def test_config_is_read_back_from_weights_in_either_naming(vae, twin):
    assert vae_config_from_state_dict(vae.state_dict(), TINY.latent_mean, TINY.latent_std) == TINY
    assert vae_config_from_state_dict(twin.state_dict(), TINY.latent_mean, TINY.latent_std) == TINY
    for name, cfg in VAE_PRESETS.items():
        with torch.device("meta"):
            sd = WanVAE(cfg).state_dict()
        assert vae_config_from_state_dict(sd) == cfg, name  # real stats for the real geometry, else identity


def test_key_conversion_rejects_foreign_keys(vae):
    sd = dict(vae.state_dict())
    sd["decoder.upsamples.0.bogus.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="bogus"):
        official_to_diffusers(sd)
    with pytest.raises(ValueError, match="not a Wan 2.1 VAE"):
        detect_vae_format(["model.diffusion_model.patch_embedding.weight"])


# ---- parity with diffusers (fp32) ---------------------------------------------------------------

@pytest.mark.parametrize("frames", [1, 5, 9, 13])
def test_encode_matches_diffusers_posterior_mean(vae, twin, frames):
    x = video(2, frames, 16, 24, seed=frames)
    with torch.no_grad():
        ours = vae.encode(x)
        theirs = twin.encode(x).latent_dist.mean
    assert ours.shape == (2, 4, 1 + (frames - 1) // 4, 2, 3)
    assert rel_err(ours, theirs) <= 1e-4


def test_encode_log_variance_matches_diffusers(vae, twin):
    x = video(1, 9, 16, 16, seed=3)
    with torch.no_grad():
        mu, log_var = vae.encode_moments(x)
        posterior = twin.encode(x).latent_dist
    assert rel_err(mu, posterior.mean) <= 1e-4
    assert rel_err(log_var, posterior.logvar) <= 1e-4


@pytest.mark.parametrize("latent_frames", [1, 2, 5])
def test_decode_matches_diffusers(vae, twin, latents, latent_frames):
    z = latents[:, :, :latent_frames]
    with torch.no_grad():
        ours = vae.decode(z)
        theirs = twin.decode(z).sample
    assert ours.shape == (2, 3, 1 + 4 * (latent_frames - 1), 16, 24)
    assert ours.abs().max() <= 1.0
    assert (ours.abs() < 1).float().mean() > 0.5  # most values unclamped, so the comparison means something
    assert rel_err(ours, theirs) <= 1e-4


# ---- streaming and causality --------------------------------------------------------------------

@pytest.mark.parametrize("chunks", [[1] * 5, [2, 2, 1], [1, 3, 1], [5]])
def test_streaming_decode_equals_full_decode(vae, latents, decoded, chunks):
    full = decoded
    with torch.no_grad():
        dec = vae.streaming_decoder()
        outs, start = [], 0
        for n in chunks:
            out = dec.decode_next(latents[:, :, start:start + n])
            assert out.shape[2] == (1 + 4 * (n - 1) if start == 0 else 4 * n)
            outs.append(out)
            start += n
    assert rel_err(torch.cat(outs, dim=2), full) <= 1e-5
    assert dec.latent_frames_in == 5 and dec.frames_out == full.shape[2] == 17


def test_multi_frame_decoder_steps_equal_one_frame_steps(vae, latents, decoded):
    one = decoded
    with torch.no_grad():
        three = vae.decode(latents, frames_per_step=3)
        chunked = torch.cat(list(iter_decode(vae, latents, chunk_frames=2, frames_per_step=2)), dim=2)
    assert rel_err(three, one) <= 1e-5
    assert rel_err(chunked, one) <= 1e-5


def test_streaming_cache_does_not_grow_with_video_length(vae, latents):
    dec = vae.streaming_decoder()
    sizes = []
    with torch.no_grad():
        for i in range(latents.shape[2]):
            dec.decode_next(latents[:, :, i:i + 1])
            sizes.append(dec.cache_nbytes())
    assert sizes[2] == sizes[-1]


def test_streaming_rejects_a_chunk_of_another_video(vae, latents):
    dec = vae.streaming_decoder()
    with torch.no_grad():
        dec.decode_next(latents[:, :, :1])
        with pytest.raises(ValueError, match="reset"):
            dec.decode_next(latents[:1, :, 1:2])
        dec.reset()
        assert dec.decode_next(latents[:1, :, :1]).shape[2] == 1


@pytest.mark.parametrize("k", [0, 1, 3])
def test_encoding_a_prefix_gives_the_prefix_of_the_latents(vae, k):
    x = video(1, 17, 16, 16, seed=11)
    with torch.no_grad():
        full = vae.encode(x)
        prefix = vae.encode(x[:, :, : 1 + 4 * k])
    assert prefix.shape[2] == k + 1
    assert rel_err(prefix, full[:, :, : k + 1]) <= 1e-5


def test_normalize_uses_per_channel_stats_and_inverts(vae, latents):
    mean = torch.tensor(TINY.latent_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(TINY.latent_std).view(1, -1, 1, 1, 1)
    assert torch.allclose(vae.normalize(latents), (latents - mean) / std)
    assert torch.allclose(vae.denormalize(vae.normalize(latents)), latents, atol=1e-6)
    real = VAE_PRESETS["wan2.1-vae"]
    assert real.latent_mean[0] == -0.7571 and real.latent_std[-1] == 1.9160 and len(real.latent_std) == 16


# ---- config and input errors --------------------------------------------------------------------

def test_config_round_trips_and_presets_are_named():
    for cfg in VAE_PRESETS.values():
        assert VAEConfig.from_dict(cfg.to_dict()) == cfg
        assert cfg.spatial_factor == 8 and cfg.temporal_factor == 4
    with pytest.raises(ValueError, match="allowed"):
        vae_preset("wan2.2-vae")
    with pytest.raises(ValueError, match="temporal_downsample"):
        VAEConfig(temporal_downsample=(True, True))
    with pytest.raises(ValueError, match="latent_mean"):
        VAEConfig(z_dim=4)


def test_tiny_preset_round_trip_shapes():
    model = WanVAE(vae_preset("tiny")).eval()
    with torch.no_grad():
        z = model.encode(video(1, 5, 16, 16, seed=1))
        assert z.shape == (1, 16, 2, 2, 2)
        assert model.decode(z).shape == (1, 3, 5, 16, 16)


@pytest.mark.parametrize("shape, fill, match", [
    ((1, 3, 6, 16, 16), 0.0, r"T=6 frames; frames must be 1 \+ 4k"),
    ((1, 3, 0, 16, 16), 0.0, "T=0 frames"),
    ((1, 3, 5, 12, 16), 0.0, "multiples of 8"),
    ((1, 3, 5, 16, 20), 0.0, "multiples of 8"),
    ((1, 4, 5, 16, 16), 0.0, "4 channels"),
    ((3, 5, 16, 16), 0.0, r"\[B, 3, T, H, W\]"),
    ((1, 3, 5, 16, 16), float("nan"), "NaN"),
    ((1, 3, 5, 16, 16), 255.0, r"\[-1, 1\]"),
])
def test_encode_rejects_bad_video(vae, shape, fill, match):
    with pytest.raises(ValueError, match=match):
        vae.encode(torch.full(shape, fill))


@pytest.mark.parametrize("shape, fill, match", [
    ((1, 16, 2, 2, 2), 0.0, "z_dim=4"),
    ((1, 4, 0, 2, 2), 0.0, "must be >= 1"),
    ((4, 2, 2, 2), 0.0, r"\[B, 4, t, h, w\]"),
    ((1, 4, 2, 2, 2), float("inf"), "NaN or inf"),
])
def test_decode_rejects_bad_latents(vae, shape, fill, match):
    with pytest.raises(ValueError, match=match):
        vae.decode(torch.full(shape, fill))
    with pytest.raises(ValueError, match=match):
        vae.streaming_decoder().decode_next(torch.full(shape, fill))
