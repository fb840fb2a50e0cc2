"""Every trainer command runs end to end on its example config (shrunk by --set) in under a minute, and
the checkpoints they export load in salt_core and sample (bidirectional and AR)."""
from __future__ import annotations

import os
import time

import pytest
import torch

from salt_core.checkpoints import load_dit, save_vae
from salt_core.kv_cache import CachePolicy
from salt_core.sampling import ChunkLayout, Walk, sample_ar, sample_clip
from salt_core.schedules import resolve_grid
from salt_core.vae import WanVAE, vae_preset
from salt_core.video_io import write_mp4
from training.data import LatentDataset, ODEPairDataset

from _training_helpers import _one_thread, configs_dir, prompt_file, quiet, run, sets  # noqa: F401

LIMIT_S = 60.0


def cfg(name: str) -> str:
    return os.path.join(configs_dir(), f"{name}.yaml")


def timed(command: str, config: str, *args: str) -> float:
    t0 = time.perf_counter()
    assert run(command, cfg(config), *args) == 0
    elapsed = time.perf_counter() - t0
    assert elapsed < LIMIT_S, f"{command} ({config}) took {elapsed:.1f}s"
    return elapsed


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
    """Runs the whole tiny pipeline once: build-latents -> teacher (+AR) -> ode-pairs -> ode-init (+AR)
    -> dmd, sc-dmd, salt-ar -> export. Returns (root, {command: seconds})."""
    torch.set_num_threads(1)
    root = str(tmp_path_factory.mktemp("pipeline"))
    p = lambda *parts: os.path.join(root, *parts)  # noqa: E731
    prompts = prompt_file(p("prompts.txt"))
    times = {}
    times["build-latents (random)"] = timed("build-latents", "build-latents-random",
                                            *sets(build__output=p("latents"), build__limit=8))
    train = dict(run__save_every=2, run__probe_every=2)
    times["teacher"] = timed("teacher", "teacher", *quiet(p("teacher"), 2), *sets(data__path=p("latents"), **train))
    times["teacher (AR)"] = timed("teacher", "teacher-ar", *quiet(p("teacher_ar"), 2),
                                  *sets(data__path=p("latents"), **train))
    teacher = p("teacher", "model.safetensors")
    times["ode-pairs"] = timed("ode-pairs", "ode-pairs", *sets(run__output_dir=p("ode"), data__path=prompts,
                                                               teacher__init=teacher, ode__output=p("pairs"),
                                                               ode__num_samples=4, ode__teacher_steps=8))
    common = dict(teacher__init=teacher, **train)
    times["ode-init"] = timed("ode-init", "ode-init", *quiet(p("ode_init"), 2), *sets(data__path=p("pairs"), **common))
    times["ode-init (AR)"] = timed("ode-init", "ode-init-ar", *quiet(p("ode_init_ar"), 2),
                                   *sets(data__path=p("pairs"), **common))
    distill = dict(data__path=prompts, dmd__student_every=2, **common)
    times["dmd"] = timed("dmd", "dmd", *quiet(p("dmd"), 2),
                         *sets(student__init=p("ode_init", "model.safetensors"), **distill))
    times["sc-dmd"] = timed("sc-dmd", "sc-dmd", *quiet(p("sc_dmd"), 2),
                            *sets(student__init=p("ode_init", "model.safetensors"), grid__step_counts="[4,2]",
                                  **distill))
    times["salt-ar"] = timed("salt-ar", "salt-ar", *quiet(p("salt_ar"), 2),
                             *sets(student__init=p("ode_init_ar", "model.safetensors"), grid__step_counts="[4,2]",
                                   ar__cache_step_counts="[4,2]", ar__fa_high_steps=4, **distill))
    times["export"] = timed("export", "export", *sets(export__checkpoint=p("sc_dmd"),
                                                      export__output=p("exported.safetensors")))
    return root, times


def test_every_command_runs_under_a_minute(pipeline):
    root, times = pipeline
    print("\n" + "\n".join(f"  {k:24s} {v:6.1f} s" for k, v in times.items()))
    assert len(LatentDataset(os.path.join(root, "latents"))) == 8
    pairs = ODEPairDataset(os.path.join(root, "pairs"))
    assert len(pairs) == 4 and pairs.fields["states"][0] == 4  # one state per student level
    for run_dir in ("teacher", "teacher_ar", "ode_init", "ode_init_ar", "dmd", "sc_dmd", "salt_ar"):
        assert os.path.exists(os.path.join(root, run_dir, "checkpoints", "step-00000002.pt")), run_dir
        assert os.path.exists(os.path.join(root, run_dir, "metrics.jsonl")), run_dir


@pytest.mark.parametrize("run_dir,causal", [
    ("teacher", False), ("teacher_ar", True), ("ode_init", False), ("ode_init_ar", True),
    ("dmd", False), ("sc_dmd", False), ("salt_ar", True),
])
def test_exported_checkpoint_loads_and_samples(pipeline, run_dir, causal):
    root, _ = pipeline
    path = os.path.join(root, run_dir, "model.safetensors")
    _, info = load_dit(path)
    assert info.sampling.causal is causal
    assert info.metadata["salt_trainer_weights"] == "ema"
    sample_from(path)


def test_export_command_writes_the_ema_student_with_its_grid(pipeline):
    root, _ = pipeline
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
    timed("build-latents", "build-latents", *sets(build__path=str(clips), build__vae=vae_path,
                                                  build__output=str(tmp_path / "out"), run__device="cpu"))
    ds = LatentDataset(str(tmp_path / "out"))
    assert len(ds) == 2 and ds.latent_shape == (16, 3, 4, 4)  # 9 frames (4k+1 of 10) -> 3 latent frames
    assert ds[1]["prompt"] == "red circle moves left"
