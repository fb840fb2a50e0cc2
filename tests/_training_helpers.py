"""Tiny fixtures for the trainer tests: a random tiny teacher checkpoint, a random latent dataset, a
prompt file, and a way to run `python -m training` in-process."""
from __future__ import annotations

import os

import pytest
import torch

from salt_core.checkpoints import save_dit
from salt_core.config import DiTConfig, SamplingDefaults, dit_preset
from salt_core.dit import WanDiT
from training.cli import main
from training.data.random_source import write_random_latents

LATENT = (16, 3, 4, 4)  # C, T, H, W: 3 latent frames of 2x2 tokens
PROMPTS = ["red circle moves left", "blue square moves right", "green triangle moves up", "red square"]


def tiny_teacher(path: str, *, seed: int = 0, config: DiTConfig | None = None,
                 sampling: SamplingDefaults | None = None) -> str:
    """A random (perturbed, so nothing is zero) tiny WanDiT saved in our format (as a bidirectional teacher of
    the 4-point grid unless `sampling` says otherwise)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = WanDiT(config or dit_preset("tiny"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return save_dit(path, model, sampling or SamplingDefaults(causal=False, timesteps=(1000.0, 750.0, 500.0, 250.0)))


def latents(folder: str, count: int = 8) -> str:
    return write_random_latents(folder, count=count, latent_shape=LATENT, text_dim=32, max_tokens=8)


def prompt_file(path: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(PROMPTS) + "\n")
    return path


def sets(**kv) -> list[str]:
    """--set arguments from keyword pairs with '__' for '.', e.g. run__steps=2."""
    out = []
    for k, v in kv.items():
        out += ["--set", f"{k.replace('__', '.')}={v}"]
    return out


def run(command: str, config: str | None = None, *args: str) -> int:
    argv = [command] + (["--config", config] if config else []) + list(args)
    return main(argv)


def quiet(output_dir: str, steps: int) -> list[str]:
    """Common run settings for tests: no progress bar, log every step."""
    return sets(run__output_dir=output_dir, run__steps=steps, run__log_every=1, run__progress="false")


def configs_dir() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "training", "configs")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is fastest, and far faster on a loaded 2-core machine."""
    torch.set_num_threads(1)
