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
    assert run("vae", world_cfg("vae"), *args) == 0
    model, _ = load_vae(os.path.join(out, "vae.safetensors"))
    report = json.load(open(os.path.join(out, "vae_eval.json")))
    assert model.config.z_dim == 4 and model.config.spatial_factor == 8 and model.config.temporal_factor == 4
    assert torch.allclose(torch.tensor(model.config.latent_mean), torch.tensor(report["latent_mean"]))
    assert torch.allclose(torch.tensor(model.config.latent_std), torch.tensor(report["latent_std"]))
    assert model.config.latent_std != (1.0,) * 4  # measured, not the identity of the preset
    assert 0.0 < report["heldout_psnr_db"] < 100.0 and report["eval_clips"] == 2
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert {"vae/l1", "vae/one_minus_ssim", "vae/kl"} <= set(rows[-1])


def test_vae_command_rejects_clips_that_do_not_fit_the_vae(tmp_path, capsys):
    args = quiet(str(tmp_path / "v"), 1) + sets(vae__preset="micro", vae__clips__frames=6)
    assert run("vae", world_cfg("vae"), *args) == 2
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
    assert 0.0 <= report["accuracy"]["all"] <= 1.0 and "object0.colour" in report["accuracy"]
