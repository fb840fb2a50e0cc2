"""Pieces every command uses: data loading with checks, the negative prompt, grids, the probe batch,
and `run_training` (process group -> resume check -> task -> trainer)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from salt_core.schedules import StepGrid

from ..config import TrainConfig
from ..config_load import ConfigError, config_hash
from ..data.latents import LatentDataset, ODEPairDataset
from ..data.loader import BatchLoader, collate
from ..data.prompts import PromptDataset, read_prompts
from ..data.shards import DatasetError
from ..data.text import build_text_encoder
from ..distributed import DistContext, setup, teardown
from ..seeding import generator, seed_step
from ..trainer import Trainer, check_accumulation, find_resume


@dataclass
class Data:
    dataset: object
    latent_shape: tuple[int, int, int, int]  # (C, T, H, W)
    text_dim: int


def load_data(cfg: TrainConfig, kinds: tuple[str, ...], channels: int, text_dim: int) -> Data:
    """The dataset of data.kind (one of `kinds`), with a clear error for missing paths and bad shapes."""
    d = cfg.data
    if d.kind not in kinds:
        raise ConfigError(f"data.kind {d.kind!r} does not fit this command; allowed: {list(kinds)}")
    if not d.path:
        raise ConfigError(f"data.path is empty: give the {d.kind} {'file' if d.kind == 'prompts' else 'folder'}")
    try:
        if d.kind == "prompts":
            if len(d.latent_shape) != 3:
                raise ConfigError("data.latent_shape must be [T, H, W] (latent frames, height, width) for prompt data")
            ds = PromptDataset(read_prompts(d.path), build_text_encoder(cfg.text, text_dim))
            return Data(ds, (channels, *d.latent_shape), text_dim)
        ds = LatentDataset(d.path) if d.kind == "latents" else ODEPairDataset(d.path)
    except DatasetError as e:
        raise ConfigError(f"data.path: {e}") from None
    shape = tuple(ds.latent_shape)
    if d.latent_shape and tuple(d.latent_shape) != shape[1:]:
        raise ConfigError(f"data.latent_shape {list(d.latent_shape)} disagrees with the dataset's "
                          f"[T, H, W] {list(shape[1:])}")
    return Data(ds, shape, ds.text_dim)


def negative_context(cfg: TrainConfig, text_dim: int) -> torch.Tensor:
    """[1, L, text_dim] embedding of text.negative_prompt."""
    return build_text_encoder(cfg.text, text_dim).encode([cfg.text.negative_prompt]).float()


def pad_tokens(a: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad context [B, L, D] to `length` tokens (what WanDiT does up to text_len anyway)."""
    if a.shape[1] >= length:
        return a
    return torch.cat([a, a.new_zeros(a.shape[0], length - a.shape[1], a.shape[2])], dim=1)


def student_grid(cfg: TrainConfig) -> StepGrid:
    return StepGrid.from_timesteps(cfg.grid.timesteps, cfg.grid.shift)


def probe_batch(cfg: TrainConfig, data: Data, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed (noise [P, C, T, H, W], context [P, L, D]): the first run.probe_batch samples, seeded noise."""
    n = max(1, min(cfg.run.probe_batch, len(data.dataset)))
    ctx = collate([data.dataset[i] for i in range(n)])["context"].float()
    noise = torch.randn((n, *data.latent_shape), generator=generator(cfg.run.seed, "probe"))
    return noise.to(device), ctx.to(device)


def check_steps(cfg: TrainConfig) -> None:
    r = cfg.run
    for key, value in (("run.steps", r.steps), ("run.log_every", r.log_every), ("run.save_every", r.save_every)):
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")


def apply_threads(cfg: TrainConfig) -> None:
    if cfg.run.threads < 0:
        raise ConfigError(f"run.threads must be >= 0, got {cfg.run.threads}")
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)


def run_training(cfg: TrainConfig, command: str, build_task: Callable[[TrainConfig, DistContext], tuple]) -> dict:
    """Join the process group, check a resume checkpoint against the config, build the task (which checks
    shapes and data before loading weights), then train."""
    check_steps(cfg)
    apply_threads(cfg)
    ctx = setup(cfg.run.device, cfg.distributed.strategy, cfg.distributed.backend)
    try:
        check_accumulation(cfg.data.batch_size, cfg.optim.accumulation, ctx.world_size)
        h = config_hash(cfg, command)
        resume = find_resume(cfg, command, h)
        seed_step(cfg.run.seed, -1, 0)  # fresh weights depend on the seed only (same on every rank)
        task, data = build_task(cfg, ctx)
        loader = BatchLoader(data.dataset, cfg.data.batch_size, world_size=ctx.world_size, rank=ctx.rank,
                             seed=cfg.run.seed, shuffle=cfg.data.shuffle)
        return Trainer(cfg, command, h, task, loader, ctx, resume).fit()
    finally:
        teardown(ctx)


def require_teacher(cfg: TrainConfig) -> None:
    if not cfg.teacher.init or cfg.teacher.init == "teacher":
        raise ConfigError("teacher.init must be the teacher checkpoint "
                          "(e.g. the `teacher` command's model.safetensors)")


def fsdp_or_plain(module, cfg: TrainConfig, ctx: DistContext, *, offload: bool = False):
    """FSDP2-sharded under distributed.strategy fsdp (offload: its shards kept in CPU memory), else as is."""
    if cfg.distributed.strategy == "fsdp" and ctx.enabled:
        from ..distributed import shard_module

        return shard_module(module, ctx, offload=offload)
    return module

