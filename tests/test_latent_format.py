"""The latent format belongs to the VAE: a model's latents are un-normalised with the statistics of the VAE it was
trained with (the VAE's own when the model records none), and a VAE of another format is refused before compute."""
import pytest
import torch

from salt_core.checkpoints import load_vae
from salt_core.config import SamplingDefaults, dit_preset
from salt_core.dit import WanDiT
from salt_core.pipeline import DEFAULT_ASSETS, SaltModel, decode_stream
from salt_core.vae import WAN21_LATENT_FORMAT, FrameDecoder, LatentFormat, WanVAE, vae_preset
from salt_core.video_io import frames_from_model_space

VAE_FILE = DEFAULT_ASSETS / "vae.safetensors"


@pytest.fixture(scope="module")
def world_vae():
    if VAE_FILE.is_file():
        return load_vae(str(VAE_FILE))[0]
    cfg = vae_preset("tiny")
    import dataclasses

    return WanVAE(dataclasses.replace(cfg, latent_mean=(0.3,) * 16, latent_std=(2.0,) * 16)).eval()


def _model(fmt=None):
    return SaltModel(WanDiT(dit_preset("tiny")).eval(), SamplingDefaults(causal=True), "m", "test", latent_format=fmt)


def test_a_model_without_a_recorded_format_is_decoded_with_the_vaes_own_statistics(world_vae):
    assert not world_vae.config.latent_format.matches(WAN21_LATENT_FORMAT)  # the world VAE has its own
    z = torch.randn(1, 16, 3, 4, 4)
    frames = torch.cat(list(decode_stream(_model(), world_vae, [z])), dim=0)
    with torch.no_grad():
        want = frames_from_model_space(world_vae.decode(world_vae.denormalize(z), frames_per_step=3))
        wan = frames_from_model_space(world_vae.decode(WAN21_LATENT_FORMAT.to_raw(z), frames_per_step=3))
    assert torch.equal(frames, want)
    assert (frames - wan).abs().max() > 0.05  # what the Wan 2.1 constants made of it


def test_a_vae_of_another_format_is_refused_before_decoding(world_vae):
    calls = []
    world_vae.decoder.register_forward_pre_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError, match=r"the VAE's latent format .* differs from the one the model works in"):
        FrameDecoder(world_vae, WAN21_LATENT_FORMAT)
    assert calls == []
    FrameDecoder(world_vae, world_vae.config.latent_format)  # its own format is fine


def test_raw_latents_of_the_sampler_use_the_models_format(world_vae):
    fmt = world_vae.config.latent_format
    z = torch.randn(1, 16, 2, 4, 4)
    assert torch.allclose(_model(fmt).to_raw_latents(z), world_vae.denormalize(z))
    assert torch.allclose(_model(None).to_raw_latents(z), WAN21_LATENT_FORMAT.to_raw(z))  # none recorded: Wan's
    m = _model(fmt)
    assert torch.allclose(m.from_raw_latents(m.to_raw_latents(z)), z, atol=1e-6)


def test_latent_format_checks_its_input():
    with pytest.raises(ValueError, match="one each per latent channel"):
        LatentFormat((0.0,) * 3, (1.0,) * 4)
    with pytest.raises(ValueError, match="std > 0"):
        LatentFormat((0.0,), (0.0,))
    with pytest.raises(ValueError, match="do not have this format's 16 channels"):
        WAN21_LATENT_FORMAT.to_raw(torch.zeros(1, 4, 1, 2, 2))
