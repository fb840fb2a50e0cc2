"""Data: shard datasets round-trip, batches are a function of the step (resumable) and split over ranks
sample for sample, prompt files and text sources, build-latents from a callable clip source."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from salt_core.vae import WanVAE, vae_preset
from training.data import BatchLoader, LatentDataset, PromptDataset, ShardWriter, read_prompts
from training.data.build import build_latents
from training.data.shards import DatasetError, ShardDataset, write_index
from training.data.text import FileTextEncoder, HashTextEncoder, write_embeddings

from _training_helpers import latents


def test_shards_round_trip_samples_and_prompts(tmp_path):
    w = ShardWriter(str(tmp_path), samples_per_shard=2)
    rows = [(torch.randn(2, 3), f"prompt {i}") for i in range(5)]
    for x, p in rows:
        w.add({"x": x, "context": torch.randn(4, 8)}, p)
    w.flush()
    write_index(str(tmp_path), "latents")
    ds = ShardDataset(str(tmp_path))
    assert len(ds) == 5 and len(ds.index["shards"]) == 3
    for i, (x, p) in enumerate(rows):
        assert torch.equal(ds[i]["x"], x) and ds[i]["prompt"] == p
    with pytest.raises(DatasetError, match="a 'latents' dataset, but data.kind asks for 'ode_pairs'"):
        ShardDataset(str(tmp_path), kind="ode_pairs")


def test_batches_depend_on_the_step_only_and_split_over_ranks(tmp_path):
    ds = LatentDataset(latents(str(tmp_path / "d"), count=6))
    one = BatchLoader(ds, 4, seed=3)
    ranks = [BatchLoader(ds, 4, world_size=2, rank=r, seed=3) for r in range(2)]
    for step in (0, 1, 2, 7):  # crosses epochs (6 samples, 4 per step)
        full = one.batch(step)
        halves = [r.batch(step) for r in ranks]
        assert torch.equal(torch.cat([h["latents"] for h in halves]), full["latents"])
        assert sum((h["prompt"] for h in halves), []) == full["prompt"]
        assert torch.equal(torch.cat([h["sample_id"] for h in halves]), full["sample_id"])
        assert torch.equal(BatchLoader(ds, 4, seed=3).batch(step)["latents"], full["latents"])  # fresh = resumed
    epoch0 = [int(i) for s in (0,) for i in one.batch(s)["sample_id"]]
    assert epoch0 == [0, 1, 2, 3]
    seen = [one._index(p) for p in range(6)]
    assert sorted(seen) == list(range(6))  # each epoch is a permutation
    with pytest.raises(ValueError, match="not divisible by the 3 ranks"):
        BatchLoader(ds, 4, world_size=3)


def test_prompt_files_and_text_sources(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("# comment\nred circle\n\nblue square moves left\n")
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "red circle"}\n{"prompt": "green"}\n')
    assert read_prompts(str(txt)) == ["red circle", "blue square moves left"]
    assert read_prompts(str(jsonl)) == ["red circle", "green"]
    enc = HashTextEncoder(16, max_tokens=4)
    ds = PromptDataset(read_prompts(str(txt)), enc)
    a = ds[0]["context"]
    assert a.shape == (4, 16) and torch.equal(a, enc.encode(["red circle"])[0])
    assert torch.equal(a[2:], torch.zeros(2, 16))  # zero-padded like WanDiT pads to text_len
    assert torch.equal(enc.encode(["RED"])[0, 0], enc.encode(["red"])[0, 0])
    path = str(tmp_path / "emb.safetensors")
    write_embeddings(path, ["red circle", "green", "red circle"], enc.encode(["red circle", "green", "red circle"]))
    f = FileTextEncoder(path)
    assert torch.equal(f.encode(["green"]), enc.encode(["green"]))
    with pytest.raises(ValueError, match="no embedding for prompt"):
        f.encode(["purple"])


def test_salt_text_encoder_checkpoint_is_a_text_source(tmp_path):
    from salt_core.text import TextEncoder, TextEncoderConfig, save_text_encoder
    from training.config_load import load_config
    from training.data.text import build_text_encoder

    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(text_dim=32, max_len=8), ["red", "circle", "moves", "left"])
    path = save_text_encoder(str(tmp_path / "te.safetensors"), enc)
    src = build_text_encoder(load_config(None, ["text.encoder=salt", f"text.path={path}"]).text, 32)
    with torch.no_grad():
        want = enc.encode(["red circle moves left"])[0]
    assert torch.allclose(src.encode(["red circle moves left"]), want)
    with pytest.raises(ValueError, match="expects text_dim=16"):
        build_text_encoder(load_config(None, ["text.encoder=salt", f"text.path={path}"]).text, 16)


def test_build_latents_takes_any_clip_source(tmp_path, monkeypatch):
    """The synthetic world plugs in as a callable yielding (frames, prompt)."""
    import dataclasses

    torch.manual_seed(0)
    stats = dict(latent_mean=(0.1, -0.2, 0.3, 0.0), latent_std=(0.5, 2.0, 1.5, 0.8))  # not the identity
    vae = WanVAE(dataclasses.replace(vae_preset("micro"), **stats)).eval()

    def clip(i):
        return torch.rand(5, 16, 16, 3, generator=torch.Generator().manual_seed(i))  # [T, H, W, 3] in 0..1

    def world():
        for i in range(3):
            yield clip(i), f"clip {i}"

    text = HashTextEncoder(8, 4)
    n = build_latents(world(), vae, text, str(tmp_path / "out"), samples_per_shard=2, limit=2)
    ds = LatentDataset(str(tmp_path / "out"))
    assert n == 2 and len(ds) == 2 and ds.latent_shape == (4, 2, 2, 2) and ds[1]["prompt"] == "clip 1"
    for i in range(2):  # normalised VAE latents of the clip in model space, and the prompt's embedding
        with torch.no_grad():
            want = vae.normalize(vae.encode(clip(i).permute(3, 0, 1, 2)[None] * 2 - 1))[0]
        torch.testing.assert_close(ds[i]["latents"], want, atol=1e-5, rtol=1e-5)
        assert torch.equal(ds[i]["context"], text.encode([f"clip {i}"])[0])
    module = types.ModuleType("fake_world")
    module.clips = world
    monkeypatch.setitem(sys.modules, "fake_world", module)
    from training.data.build import callable_clips

    assert [p for _, p in callable_clips("fake_world:clips")] == ["clip 0", "clip 1", "clip 2"]


def test_callable_source_is_asked_for_build_frames(monkeypatch):
    """build.frames reaches a callable that takes `frames` (the world renders clips that long); one without it is
    called bare (its clips are cut later)."""
    from training.data.build import callable_clips
    from training.world.dataset import WorldDataset

    seen = []

    def sized(frames=5):
        seen.append(frames)
        return iter(())

    def bare():
        seen.append("bare")
        return iter(())

    module = types.ModuleType("fake_sources")
    module.sized, module.bare = sized, bare
    monkeypatch.setitem(sys.modules, "fake_sources", module)
    callable_clips("fake_sources:sized", 17)
    callable_clips("fake_sources:sized", 0)
    callable_clips("fake_sources:bare", 17)
    assert seen == [17, 5, "bare"]
    world = callable_clips("training.world.dataset:WorldDataset", 65)
    assert isinstance(world, WorldDataset) and world[0][0].shape[0] == 65
