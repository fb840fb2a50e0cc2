"""The temporally local VAE (VAEConfig.temporally_local): off by default (Wan 2.1's causal cache unchanged), on it
keeps every latent frame's group of pixel frames independent of the earlier groups, and streams like the whole
decode; the vae trainer's width / locality overrides and its shifted training windows."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from salt_core.checkpoints import load_vae, save_vae
from salt_core.vae import FeatureCache, VAEConfig, WanVAE, decode_tiled, vae_preset
from training.commands.vae import WorldVideos, initial_vae, start_frame, temporal_difference_loss
from training.config import VAETrainConfig, WorldClipsConfig
from training.config_load import ConfigError

CAUSAL = VAEConfig(dim=8, z_dim=4, dim_mult=(1, 2, 2, 2), num_res_blocks=1, latent_mean=(), latent_std=())
LOCAL = dataclasses.replace(CAUSAL, temporally_local=True)


def randomized(cfg: VAEConfig, seed: int = 0) -> WanVAE:
    """Every parameter random (the zero-started attention projections too), so every path carries signal."""
    model = WanVAE(cfg).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / max(1, p[0].numel()) ** 0.5)
    return model


def clip(frames: int, seed: int, size: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, size, size, generator=g) * 2 - 1  # [1, 3, T, H, W]


@pytest.fixture(scope="module")
def local() -> WanVAE:
    return randomized(LOCAL)


@pytest.fixture(scope="module")
def causal() -> WanVAE:
    return randomized(CAUSAL)  # the same weights as `local` (same seed and shapes)


def test_default_is_causal_and_an_old_header_reads_as_causal():
    assert VAEConfig().temporally_local is False and vae_preset("wan2.1-vae").temporally_local is False
    old = {k: v for k, v in vae_preset("tiny").to_dict().items() if k != "temporally_local"}
    assert VAEConfig.from_dict(old) == vae_preset("tiny")
    with pytest.raises(ValueError, match="temporally_local"):
        VAEConfig(temporally_local="yes")


@torch.no_grad()
def test_causal_model_equals_one_continuous_cache(causal):
    """Off, encode / decode are the plain causal chain: chunks (1, 4, 4, ...) through one cache, never reset."""
    x = clip(13, seed=1)
    cache = FeatureCache()
    chunks = [x[:, :, :1], *x[:, :, 1:].split(4, dim=2)]
    moments = torch.cat([causal.conv1(causal.encoder(c, cache)) for c in chunks], dim=2)
    assert torch.equal(causal.encode(x), moments.chunk(2, dim=1)[0])
    z = causal.encode(x)
    cache = FeatureCache()
    steps = [causal.decoder(causal.conv2(s), cache) for s in z.split(1, dim=2)]
    assert torch.equal(causal.decode(z), torch.cat(steps, dim=2).clamp(-1, 1))


@torch.no_grad()
@pytest.mark.parametrize("changed_group", [0, 1, 2])
def test_encoding_of_later_groups_ignores_an_earlier_group(local, causal, changed_group):
    """Pixel frames of group g (frame 0 is group 0, frames 4g-3..4g group g) change: with locality only latent
    frame g changes; without, every later latent frame does too."""
    x = clip(17, seed=2)
    y = x.clone()
    frames = slice(0, 1) if changed_group == 0 else slice(4 * changed_group - 3, 4 * changed_group + 1)
    y[:, :, frames] = clip(17, seed=3)[:, :, frames]
    moved = (local.encode(x) - local.encode(y)).abs().amax(dim=(0, 1, 3, 4))  # [5] per latent frame
    assert moved[changed_group] > 1e-3
    assert torch.all(moved[changed_group + 1:] == 0) and torch.all(moved[:changed_group] == 0)
    causal_moved = (causal.encode(x) - causal.encode(y)).abs().amax(dim=(0, 1, 3, 4))
    assert torch.all(causal_moved[changed_group + 1:] > 1e-4)


@torch.no_grad()
@pytest.mark.parametrize("changed", [0, 1, 3])
def test_decoding_of_later_groups_ignores_an_earlier_latent_frame(local, causal, changed):
    z = local.encode(clip(21, seed=4))  # [1, 4, 6, 2, 2]
    w = z.clone()
    w[:, :, changed] += 1.0
    groups = lambda video: [video[:, :, :1], *video[:, :, 1:].split(4, dim=2)]  # noqa: E731
    for frames_per_step in (1, 6):
        a, b = local.decode(z, frames_per_step), local.decode(w, frames_per_step)
        moved = [float((p - q).abs().max()) for p, q in zip(groups(a), groups(b))]
        assert moved[changed] > 1e-3
        assert all(m == 0 for i, m in enumerate(moved) if i != changed), moved
    causal_moved = [float((p - q).abs().max()) for p, q in zip(groups(causal.decode(z)), groups(causal.decode(w)))]
    assert all(m > 1e-4 for m in causal_moved[changed + 1:])


@torch.no_grad()
def test_a_group_decodes_the_same_at_any_position(local):
    """No drift: a latent frame k >= 1 gives the same pixels wherever it stands in the stream."""
    z = local.encode(clip(13, seed=5))  # [1, 4, 4, 2, 2]
    moved = torch.cat([z[:, :, :1], z[:, :, 3:], z[:, :, 1:3]], dim=2)
    assert torch.equal(local.decode(z)[:, :, 9:13], local.decode(moved)[:, :, 1:5])


@torch.no_grad()
@pytest.mark.parametrize("chunks,frames_per_step", [((1, 1, 1, 1, 1, 1), 1), ((3, 3), 1), ((1, 5), None), ((2, 4), 2)])
def test_streaming_decode_equals_whole_decode(local, chunks, frames_per_step):
    z = local.encode(clip(21, seed=6))  # [1, 4, 6, 2, 2]
    whole = local.decode(z)
    decoder = local.streaming_decoder(frames_per_step=frames_per_step)
    streamed = torch.cat([decoder.decode_next(part) for part in z.split(list(chunks), dim=2)], dim=2)
    torch.testing.assert_close(streamed, whole, rtol=0, atol=1e-5)


@torch.no_grad()
def test_tiled_decode_keeps_the_groups_independent(local):
    """The tiled decode (trunk once, upsampler per overlapping tile with its own caches) stays local too."""
    g = torch.Generator().manual_seed(7)
    z = torch.randn(1, 4, 3, 20, 20, generator=g)  # raw latents: 9 frames of 160x160, two tiles of 18 per side
    w = z.clone()
    w[:, :, 1] += 1.0
    a, b = decode_tiled(local, z, tile=18), decode_tiled(local, w, tile=18)
    assert (a[:, :, 1:5] - b[:, :, 1:5]).abs().max() > 1e-3
    assert torch.equal(a[:, :, 5:], b[:, :, 5:]) and torch.equal(a[:, :, :1], b[:, :, :1])


def test_locality_survives_the_checkpoint(local, tmp_path):
    path = save_vae(str(tmp_path / "local.safetensors"), local)
    loaded, _ = load_vae(path)
    assert loaded.config.temporally_local is True
    x = clip(9, seed=8)
    with torch.no_grad():
        assert torch.equal(loaded.decode(loaded.encode(x)), local.decode(local.encode(x)))


def test_trainer_builds_the_overridden_preset_and_makes_an_init_local(tmp_path):
    fresh = initial_vae(VAETrainConfig(preset="tiny", dim=8, dim_mult=(1, 2, 2, 2), num_res_blocks=2,
                                       temporally_local=True), "cpu")
    assert (fresh.config.dim, fresh.config.dim_mult, fresh.config.num_res_blocks) == (8, (1, 2, 2, 2), 2)
    assert fresh.config.temporally_local and fresh.config.z_dim == 16
    assert initial_vae(VAETrainConfig(preset="tiny"), "cpu").config == vae_preset("tiny")
    path = save_vae(str(tmp_path / "causal.safetensors"), randomized(CAUSAL))
    warm = initial_vae(VAETrainConfig(init=path, temporally_local=True), "cpu")
    assert warm.config == LOCAL
    assert all(torch.equal(a, b) for a, b in zip(warm.state_dict().values(), randomized(CAUSAL).state_dict().values()))
    with pytest.raises(ConfigError, match="dim"):
        initial_vae(VAETrainConfig(preset="tiny", dim=7), "cpu")


def test_training_windows_start_where_drawn_and_show_the_later_frames():
    clips = WorldClipsConfig(frames=5, height=32, width=32, seed=4)
    starts = [start_frame(4, i, 28) for i in range(64)]
    assert starts == [start_frame(4, i, 28) for i in range(64)]  # fixed by (seed, index): resume is exact
    assert min(starts) >= 0 and max(starts) <= 28 and len(set(starts)) > 10
    assert all(start_frame(4, i, 0) == 0 for i in range(8))
    shifted, long = WorldVideos(clips, max_start_frame=28), WorldVideos(dataclasses.replace(clips, frames=33))
    for i in range(4):
        s = starts[i]
        assert torch.equal(shifted[i]["video"], long[i]["video"][:, s:s + 5])
        assert torch.equal(shifted[i]["objects"], long[i]["objects"][:, s:s + 5])
    assert torch.equal(WorldVideos(clips)[0]["video"], long[0]["video"][:, :5])


def test_temporal_difference_loss_sees_frame_to_frame_jumps_only():
    video = clip(9, seed=9)
    objects = torch.zeros(1, 1, 9, 16, 16)
    objects[:, :, :, 4:8, 4:8] = 1
    steady = video + 0.1  # off by a constant: the frame-to-frame changes are right
    assert float(temporal_difference_loss(steady, video, objects, 10.0)) < 1e-6
    jumpy = video.clone()
    jumpy[:, :, 5] += 0.2  # one frame jumps: its two differences are off by 0.2 everywhere
    assert float(temporal_difference_loss(jumpy, video, objects, 0.0)) == pytest.approx(0.2 * 2 / 8, rel=1e-4)
    on_objects_only = video.clone()
    on_objects_only[:, :, 5, 4:8, 4:8] += 0.2  # the same jump on the object pixels only
    assert (temporal_difference_loss(on_objects_only, video, objects, 10.0)
            > 5 * temporal_difference_loss(on_objects_only, video, objects, 0.0))
    assert float(temporal_difference_loss(video[:, :, :1], video[:, :, :1], objects[:, :, :1], 10.0)) == 0


def test_stage_four_config_trains_a_local_vae_from_a_causal_one(tmp_path):
    import json
    import os

    from _training_helpers import configs_dir, quiet, run, sets

    init = save_vae(str(tmp_path / "causal.safetensors"), WanVAE(vae_preset("micro")))
    out = str(tmp_path / "local")
    args = quiet(out, 2) + sets(vae__init=init, vae__clips__height=32, vae__clips__width=32, vae__stats_clips=2,
                                vae__eval_clips=1, vae__output="", vae__temporal_weight=0.5, run__save_every=1,
                                data__batch_size=1)
    assert run("vae", os.path.join(configs_dir(), "world", "vae-local-warm.yaml"), *args) == 0
    trained, _ = load_vae(os.path.join(out, "vae.safetensors"))
    assert trained.config.temporally_local is True and trained.config.z_dim == vae_preset("micro").z_dim
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert rows[-1]["vae/temporal"] > 0


def test_decoder_only_training_keeps_the_encoder_and_its_statistics(tmp_path):
    import dataclasses as dc
    import os

    from _training_helpers import configs_dir, quiet, run, sets

    stats = dict(latent_mean=tuple(0.1 * i for i in range(4)), latent_std=tuple(1.0 + 0.2 * i for i in range(4)))
    init_model = WanVAE(dc.replace(vae_preset("micro"), **stats))
    init = save_vae(str(tmp_path / "init.safetensors"), init_model)
    out = str(tmp_path / "decoder")
    args = quiet(out, 2) + sets(vae__init=init, vae__train_encoder=False, vae__mse_weight=1.0,
                                vae__clips__height=32, vae__clips__width=32, vae__stats_clips=2, vae__eval_clips=1,
                                vae__output="", run__save_every=1, data__batch_size=1, ema__start_step=0)
    assert run("vae", os.path.join(configs_dir(), "world", "vae-local-warm.yaml"), *args) == 0
    trained, _ = load_vae(os.path.join(out, "vae.safetensors"))
    before, after = init_model.state_dict(), trained.state_dict()
    encoder = [k for k in before if k.startswith(("encoder.", "conv1."))]
    decoder = [k for k in before if k.startswith(("decoder.", "conv2."))]
    assert encoder and decoder
    assert all(torch.equal(before[k], after[k]) for k in encoder)  # bit for bit, EMA or not
    assert any(not torch.equal(before[k], after[k]) for k in decoder)
    assert trained.config.latent_mean == stats["latent_mean"] and trained.config.latent_std == stats["latent_std"]
    import json

    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert rows[-1]["vae/mse"] > 0


def test_decoder_only_training_needs_an_init():
    from training.commands.vae import VAETask
    from training.config import TrainConfig

    cfg = TrainConfig()
    cfg = dataclasses.replace(cfg, vae=dataclasses.replace(cfg.vae, train_encoder=False))
    with pytest.raises(ConfigError, match="vae.train_encoder=false .* vae.init"):
        VAETask(cfg, "cpu")


def _decoder_task(tmp_path, latent_noise: float, train_encoder: bool = False):
    import dataclasses as dc

    from training.commands.vae import VAETask
    from training.config import TrainConfig

    stats = dict(latent_mean=(0.0,) * 4, latent_std=(0.5, 1.0, 2.0, 4.0))
    init = save_vae(str(tmp_path / "init.safetensors"), WanVAE(dc.replace(vae_preset("micro"), **stats)))
    cfg = TrainConfig()
    v = dc.replace(cfg.vae, init=init, train_encoder=train_encoder, latent_noise=latent_noise,
                   clips=WorldClipsConfig(frames=5, height=32, width=32))
    return VAETask(dc.replace(cfg, vae=v), "cpu")


def test_latent_noise_is_per_clip_scaled_by_the_latent_std_and_reproducible(tmp_path):
    task = _decoder_task(tmp_path, latent_noise=0.5)
    z = torch.zeros(3, 4, 2, 64, 64)
    a = task._noised(z, [0, 1, 2], step=7)
    assert torch.equal(a, task._noised(z, [0, 1, 2], step=7))        # a resumed step draws the same
    assert torch.equal(a[1], task._noised(z[:1], [1], step=7)[0])      # per clip, not per batch position
    assert not torch.equal(a, task._noised(z, [0, 1, 2], step=8))
    spread = a.std(dim=(2, 3, 4))                                      # [B, C]: clip scale x channel std
    ratio = spread / spread[:, :1]
    assert torch.allclose(ratio, torch.tensor([1.0, 2.0, 4.0, 8.0]).expand_as(ratio), rtol=0.05)
    scales = spread[:, 0] / 0.5                                        # the clip's U(0, 0.5) draw
    assert ((scales > 0) & (scales < 0.5)).all() and scales.unique().numel() == 3


def test_latent_noise_needs_a_frozen_encoder(tmp_path):
    with pytest.raises(ConfigError, match="vae.latent_noise .* vae.train_encoder=false"):
        _decoder_task(tmp_path, latent_noise=0.3, train_encoder=True)


def test_latent_noise_reaches_the_decoder_in_training(tmp_path):
    batch = {"video": torch.rand(2, 3, 5, 32, 32) * 2 - 1, "objects": torch.zeros(2, 1, 5, 32, 32),
             "sample_id": torch.tensor([4, 5])}
    clean = _decoder_task(tmp_path, latent_noise=0.0)
    noisy = _decoder_task(tmp_path, latent_noise=1.0)
    noisy.model.load_state_dict(clean.model.state_dict())
    with torch.no_grad():
        l_clean, _ = clean.loss("vae", batch, step=3)
        l_noisy, _ = noisy.loss("vae", batch, step=3)
        l_again, _ = noisy.loss("vae", batch, step=3)
    assert float(l_noisy) != float(l_clean) and float(l_noisy) == float(l_again)
