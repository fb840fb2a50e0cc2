"""The `vae` and `text-encoder` trainer commands: they train on the synthetic world, write files that
salt_core loads (the VAE with its measured latent statistics), and report their held-out quality."""
from __future__ import annotations

import json
import os

import torch

from salt_core.checkpoints import load_vae
from salt_core.text import load_text_encoder
from training.text_heads import FIELDS, prompt_targets
from training.world import prompt_for, sample_scene, vocabulary

from _training_helpers import _one_thread, configs_dir, quiet, run, sets  # noqa: F401


def world_cfg(name: str) -> str:
    return os.path.join(configs_dir(), "world", f"{name}.yaml")


def test_vae_command_stores_latent_statistics_and_heldout_psnr(tmp_path):
    out = str(tmp_path / "vae")
    args = quiet(out, 2) + sets(vae__preset="micro", vae__clips__frames=5, vae__clips__height=32,
                                vae__clips__width=32, vae__stats_clips=3, vae__eval_clips=2, vae__output="",
                                data__batch_size=1, run__save_every=1)
    assert run("vae", world_cfg("vae-images"), *args) == 0
    model, _ = load_vae(os.path.join(out, "vae.safetensors"))
    report = json.load(open(os.path.join(out, "vae_eval.json")))
    assert model.config.z_dim == 4 and model.config.spatial_factor == 8 and model.config.temporal_factor == 4
    assert torch.allclose(torch.tensor(model.config.latent_mean), torch.tensor(report["latent_mean"]))
    assert torch.allclose(torch.tensor(model.config.latent_std), torch.tensor(report["latent_std"]))
    assert model.config.latent_std != (1.0,) * 4  # measured, not the identity of the preset
    assert 0.0 < report["heldout_psnr_db"] < 100.0 and report["eval_clips"] == 2
    assert 0.0 < report["heldout_object_psnr_db"] < 100.0
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert {"vae/l1", "vae/one_minus_ssim", "vae/kl"} <= set(rows[-1])


def test_vae_stage_two_continues_from_stage_one(tmp_path):
    first, second = str(tmp_path / "images"), str(tmp_path / "clips")
    small = dict(vae__preset="micro", vae__clips__height=32, vae__clips__width=32, vae__stats_clips=2,
                 vae__eval_clips=1, data__batch_size=1, run__save_every=1)
    assert run("vae", world_cfg("vae-images"), *quiet(first, 1), *sets(vae__output="", **small)) == 0
    init = os.path.join(first, "vae.safetensors")
    assert run("vae", world_cfg("vae"), *quiet(second, 1), *sets(vae__output="", vae__init=init, **small)) == 0
    start, went_on = load_vae(init)[0].state_dict(), load_vae(os.path.join(second, "vae.safetensors"))[0].state_dict()
    assert went_on.keys() == start.keys()
    moved = sum((went_on[k] - start[k]).square().sum() for k in start) / sum(v.square().sum() for v in start.values())
    # one optimiser step from stage one's weights moves them by ~1e-4 (relative); a fresh init is ~0.4 away
    assert 0 < moved.sqrt() < 1e-3


def test_object_mask_and_object_weighted_l1():
    from training.commands.vae import WorldVideos, reconstruction_losses
    from training.config import WorldClipsConfig
    from training.world.render import object_alpha

    data = WorldVideos(WorldClipsConfig(frames=5, height=32, width=32))
    item, scene = data[0], data.world.scene(0)
    t = torch.arange(5, dtype=torch.float32) / data.world.fps
    covered = sum(object_alpha(o, t, 32, 32) for o in scene.objects) > 0.5       # [T, H, W]
    mask = item["objects"][0].bool()
    assert mask.shape == covered.shape and (mask & covered).sum() >= 0.9 * covered.sum()
    assert mask.float().mean() < 0.5                                              # objects, not the background
    video = item["video"][None]
    objects = item["objects"][None]
    off_objects = video + 0.2 * objects                                            # an error only on objects
    off_background = video + 0.2 * (1 - objects)                                   # an error only elsewhere
    for error in (off_objects, off_background):
        plain, _ = reconstruction_losses(error, video)
        weighted, _ = reconstruction_losses(error, video, objects, 10.0)
        if error is off_objects:
            assert weighted > 3 * plain
        else:
            assert weighted < plain


def test_vae_command_rejects_clips_that_do_not_fit_the_vae(tmp_path, capsys):
    args = quiet(str(tmp_path / "v"), 1) + sets(vae__preset="micro", vae__clips__frames=6)
    assert run("vae", world_cfg("vae-images"), *args) == 2
    assert "vae.clips" in capsys.readouterr().err


def test_prompt_targets_are_what_the_prompt_says_for_every_paraphrase():
    scene = sample_scene(3)
    for seed in range(8):
        t = prompt_targets(prompt_for(scene, seed=seed))
        assert t.shape == (len(FIELDS),)
        names = [n for n, _ in FIELDS]
        obj = scene.objects[0]
        for field in ("colour", "shape", "motion"):  # always said
            table = dict(FIELDS)[f"object0.{field}"]
            assert t[names.index(f"object0.{field}")] == table.index(getattr(obj, field)) + 1


def test_text_encoder_command_saves_a_loadable_encoder_with_the_world_vocabulary(tmp_path):
    out = str(tmp_path / "te")
    args = quiet(out, 3) + sets(data__batch_size=8, textenc__eval_prompts=16, textenc__output="",
                                textenc__dim=32, textenc__ffn_dim=64, run__save_every=3)
    assert run("text-encoder", world_cfg("text-encoder"), *args) == 0
    enc = load_text_encoder(os.path.join(out, "text_encoder.safetensors"))
    assert enc.vocab == vocabulary() and enc.config.text_dim == 32
    emb, unknown = enc.encode(["a red circle moves to the right"])
    assert emb.shape[-1] == 32 and unknown == [[]]
    report = json.load(open(os.path.join(out, "text_eval.json")))
    assert report["prompts"] == 16 and report["fields"] == [name for name, _ in FIELDS]
    assert 0.0 <= report["accuracy"]["all"] <= report["accuracy"]["object0.colour"] <= 1.0  # all fields at once


def test_vae_command_names_a_missing_init_checkpoint(tmp_path, capsys):
    args = quiet(str(tmp_path / "v"), 1) + sets(vae__init=str(tmp_path / "absent.safetensors"))
    assert run("vae", world_cfg("vae"), *args) == 2
    assert "vae.init" in capsys.readouterr().err
