"""Every trainer command runs end to end on its example config (shrunk by --set) and writes its outputs,
and the checkpoints they export load in salt_core and sample (bidirectional and AR). How long the commands
take is measured by benchmarks/perf/smoke_timings.py, not asserted here."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

from salt_core.checkpoints import load_dit, save_vae
from salt_core.kv_cache import CachePolicy
from salt_core.sampling import ChunkLayout, Walk, sample_ar, sample_clip
from salt_core.schedules import resolve_grid
from salt_core.vae import WanVAE, vae_preset
from salt_core.video_io import write_mp4
from training.data import LatentDataset, ODEPairDataset

from _tiny_pipeline import RUN_DIRS, config, run_pipeline
from _training_helpers import _one_thread, run, sets  # noqa: F401


def sample_from(path: str) -> torch.Tensor:
    """Load an exported checkpoint with salt_core and sample a clip the way its header says."""
    model, info = load_dit(path)
    s = info.sampling
    assert info.format == "salt"
    grid = resolve_grid(trained_timesteps=s.timesteps, shift=s.shift) if len(s.timesteps) <= 8 else \
        resolve_grid(steps=4, timesteps=[1000, 750, 500, 250], shift=s.shift)
    ctx = torch.randn(1, 8, model.config.text_dim)
    walk = Walk(grid, s.transition)
    if s.causal:
        assert s.cache is not None  # the trained cache policy travels in the header
        x = sample_ar(model, ctx, layout=ChunkLayout(3, (4, 4), s.chunk_frames), walk=walk,
                      policy=CachePolicy("window", window_frames=2))
    else:
        x = sample_clip(model, ctx, latent_shape=(1, 16, 3, 4, 4), walk=walk)
    assert x.shape == (1, 16, 3, 4, 4) and torch.isfinite(x).all()
    return x


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Runs the whole tiny pipeline once (tests/_tiny_pipeline.py); returns its root folder."""
    torch.set_num_threads(1)
    root = str(tmp_path_factory.mktemp("pipeline"))
    run_pipeline(root)
    return root


def test_every_command_runs_and_writes_its_outputs(pipeline):
    root = pipeline
    assert len(LatentDataset(os.path.join(root, "latents"))) == 8
    pairs = ODEPairDataset(os.path.join(root, "pairs"))
    assert len(pairs) == 4 and pairs.fields["states"][0] == 4  # one state per student level
    for run_dir in RUN_DIRS:
        assert os.listdir(os.path.join(root, run_dir, "checkpoints")) == ["step-00000002.pt"], run_dir
        with open(os.path.join(root, run_dir, "metrics.jsonl"), encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        rows = [r for r in rows if "skipped_total" in r]  # the per-step rows (events have other keys)
        assert [r["step"] for r in rows] == [1, 2] and rows[-1]["skipped_total"] == 0, run_dir
        losses = [v for r in rows for k, v in r.items() if k.endswith("/loss")]
        assert losses and all(math.isfinite(v) for v in losses), run_dir


@pytest.mark.parametrize("run_dir,causal", list(RUN_DIRS.items()))
def test_exported_checkpoint_loads_and_samples(pipeline, run_dir, causal):
    root = pipeline
    path = os.path.join(root, run_dir, "model.safetensors")
    _, info = load_dit(path)
    assert info.sampling.causal is causal
    assert info.metadata["salt_trainer_weights"] == "ema"
    sample_from(path)


def test_export_command_writes_the_ema_student_with_its_grid(pipeline):
    root = pipeline
    path = os.path.join(root, "exported.safetensors")
    model, info = load_dit(path)
    assert info.sampling.timesteps == (1000.0, 750.0, 500.0, 250.0) and info.sampling.shift == 5.0
    assert info.sampling.transition == "renoise" and info.sampling.train_iterations == 2
    same, _ = load_dit(os.path.join(root, "sc_dmd", "model.safetensors"))
    for (k, a), (_, b) in zip(model.state_dict().items(), same.state_dict().items()):
        assert torch.equal(a, b), k
    sample_from(path)


def test_build_latents_encodes_video_files_with_a_vae(tmp_path):
    torch.manual_seed(0)
    vae_path = save_vae(str(tmp_path / "vae.safetensors"), WanVAE(vae_preset("tiny")))
    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(2):
        write_mp4(clips / f"c{i}.mp4", (torch.rand(10, 32, 32, 3) * 255).to(torch.uint8), fps=8)
        (clips / f"c{i}.txt").write_text(f"red circle moves {'left' if i else 'right'}")
    assert run("build-latents", config("build-latents"), *sets(build__path=str(clips), build__vae=vae_path,
                                                               build__output=str(tmp_path / "out"),
                                                               run__device="cpu")) == 0
    ds = LatentDataset(str(tmp_path / "out"))
    assert len(ds) == 2 and ds.latent_shape == (16, 3, 4, 4)  # 9 frames (4k+1 of 10) -> 3 latent frames
    assert ds[1]["prompt"] == "red circle moves left"
