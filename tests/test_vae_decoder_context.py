"""A temporally local VAE whose decoder trunk also sees the latent frame before (VAEConfig.decoder_context):
latent frame k's pixels depend on latent frames k-1 and k and on nothing older, in every decode path."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from salt_core.checkpoints import load_vae, save_vae
from salt_core.vae import VAEConfig, WanVAE, decode_tiled, vae_preset
from training.commands.vae import initial_vae
from training.config import VAETrainConfig
from training.config_load import ConfigError

from test_world_vae_local import LOCAL, randomized  # the micro local VAE and its all-random weights

CONTEXT = dataclasses.replace(LOCAL, decoder_context=1)


def latents(frames: int, seed: int, side: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 4, frames, side, side, generator=g)  # raw latents [1, z, t, h, w]


def groups(video: torch.Tensor) -> list[torch.Tensor]:
    """[B, 3, T, H, W] -> the pixel frames of each latent frame: frame 0, then 4 at a time."""
    return [video[:, :, :1], *video[:, :, 1:].split(4, dim=2)]


@pytest.fixture(scope="module")
def context() -> WanVAE:
    return randomized(CONTEXT)


def test_the_option_is_checked_and_an_old_header_reads_as_no_context():
    assert VAEConfig().decoder_context == 0
    old = {k: v for k, v in vae_preset("tiny").to_dict().items() if k != "decoder_context"}
    assert VAEConfig.from_dict(old).decoder_context == 0
    with pytest.raises(ValueError, match="decoder_context=1 needs temporally_local=true"):
        dataclasses.replace(LOCAL, temporally_local=False, decoder_context=1)
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="decoder_context=.* must be an integer >= 0"):
            dataclasses.replace(LOCAL, decoder_context=bad)


@torch.no_grad()
@pytest.mark.parametrize("changed", [0, 1, 3])
def test_a_latent_frame_reaches_its_own_group_and_the_next_only(context, changed):
    z = latents(6, seed=1)
    w = z.clone()
    w[:, :, changed] += 1.0
    for frames_per_step in (1, 6):
        a, b = context.decode(z, frames_per_step), context.decode(w, frames_per_step)
        moved = [float((p - q).abs().max()) for p, q in zip(groups(a), groups(b))]
        assert moved[changed] > 1e-3 and moved[changed + 1] > 1e-3, moved
        assert all(m == 0 for i, m in enumerate(moved) if i not in (changed, changed + 1)), moved


@torch.no_grad()
def test_without_context_the_same_weights_decode_each_latent_frame_alone(context):
    plain = WanVAE(LOCAL).eval()
    plain.load_state_dict(context.state_dict())
    z = latents(4, seed=2)
    a, b = groups(plain.decode(z)), groups(context.decode(z))
    assert torch.equal(a[0], b[0])                   # frame 0 has nothing before it: the same either way
    assert all((p - q).abs().max() > 1e-3 for p, q in zip(a[1:], b[1:]))


@torch.no_grad()
def test_a_pair_of_latent_frames_decodes_the_same_wherever_it_stands(context):
    """No drift: group k depends on (k-1, k) only, wherever the pair sits in the stream."""
    z = latents(6, seed=3)
    moved = torch.cat([z[:, :, :1], z[:, :, 4:6], z[:, :, 1:4]], dim=2)  # frames 4, 5 now at positions 1, 2
    assert torch.equal(groups(context.decode(z))[5], groups(context.decode(moved))[2])


@torch.no_grad()
@pytest.mark.parametrize("chunks,frames_per_step", [((1, 1, 1, 1, 1, 1), 1), ((3, 3), 1), ((1, 5), None), ((2, 4), 2)])
def test_streaming_decode_equals_whole_decode(context, chunks, frames_per_step):
    z = latents(6, seed=4)
    decoder = context.streaming_decoder(frames_per_step=frames_per_step)
    streamed = torch.cat([decoder.decode_next(part) for part in z.split(list(chunks), dim=2)], dim=2)
    torch.testing.assert_close(streamed, context.decode(z), rtol=0, atol=1e-5)
    assert decoder.cache_nbytes() > 0
    decoder.reset()                                  # a new video forgets the kept latent frame
    torch.testing.assert_close(decoder.decode_next(z[:, :, 3:5]), context.decode(z[:, :, 3:5]), rtol=0, atol=1e-5)


@torch.no_grad()
def test_the_kept_past_stays_one_latent_frame_however_long_the_stream(context):
    decoder = context.streaming_decoder()
    z = latents(12, seed=5)
    sizes = []
    for part in z.split(3, dim=2):
        decoder.decode_next(part)
        sizes.append(decoder.cache_nbytes())
    assert sizes[1] == sizes[-1]                     # bounded by the frame size, not by the stream's length


@torch.no_grad()
def test_tiled_decode_keeps_the_context_to_one_latent_frame(context):
    g = torch.Generator().manual_seed(7)
    z = torch.randn(1, 4, 4, 20, 20, generator=g)  # raw latents: 13 frames of 160x160, two tiles of 18 per side
    w = z.clone()
    w[:, :, 1] += 1.0
    a, b = decode_tiled(context, z, tile=18), decode_tiled(context, w, tile=18)
    moved = [float((p - q).abs().max()) for p, q in zip(groups(a), groups(b))]
    assert moved[1] > 1e-3 and moved[2] > 1e-3 and moved[0] == 0 and moved[3] == 0, moved


def test_the_context_survives_the_checkpoint(context, tmp_path):
    loaded, _ = load_vae(save_vae(str(tmp_path / "context.safetensors"), context))
    assert loaded.config.decoder_context == 1 and loaded.config.temporally_local is True
    z = latents(3, seed=8)
    with torch.no_grad():
        assert torch.equal(loaded.decode(z), context.decode(z))


def test_the_trainer_gives_an_init_the_context_and_refuses_it_without_locality(tmp_path):
    init = save_vae(str(tmp_path / "local.safetensors"), randomized(LOCAL))
    model = initial_vae(VAETrainConfig(init=init, temporally_local=True, decoder_context=1), "cpu")
    assert model.config.decoder_context == 1
    with pytest.raises(ConfigError, match=r"vae.init .* decoder_context=1 needs temporally_local=true"):
        initial_vae(VAETrainConfig(init=init, temporally_local=False, decoder_context=1), "cpu")
