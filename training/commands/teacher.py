"""`teacher`: flow-matching pre-training of a Wan DiT on latent data, bidirectional or AR.

AR (teacher.causal): one pass with a block-causal frame mask of ar.cache over chunks of ar.chunk_frames,
teacher forcing (clean context) or diffusion forcing (flow.ar_mode). Every random draw (noise level,
noise, prompt dropout) is per sample, keyed by the sample's stream position, so the update does not
depend on how the global batch is split over ranks.
"""
from __future__ import annotations

import torch

from salt_core.config import SamplingDefaults
from salt_core.schedules import shift_sigma, uniform_timesteps

from ..config import TrainConfig
from ..config_load import ConfigError
from ..distributed import DistContext
from ..losses.critic import CausalTraining, flow_denoising_loss
from ..models import build, check_data_fits, resolve_config
from ..seeding import per_sample, per_sample_randn
from ..task import NetSpec, Task
from .common import fsdp_or_plain, load_data, negative_context, pad_tokens, run_training
from .student import trained_resolution


def draw_sigma(g: torch.Generator, n: int, kind: str, shift: float) -> torch.Tensor:
    """n noise levels in (0, 1): uniform or logit-normal, then shifted."""
    u = torch.rand(n, generator=g) if kind == "uniform" else torch.sigmoid(torch.randn(n, generator=g))
    u = u.clamp(1e-4, 1.0)
    return torch.tensor([shift_sigma(float(x), shift) for x in u])


class TeacherTask(Task):
    primary = "teacher"

    def __init__(self, cfg: TrainConfig, ctx: DistContext):
        self.cfg, self.ctx = cfg, ctx
        config = resolve_config("teacher", cfg.teacher)
        if cfg.data.kind != "latents":
            raise ConfigError(f"`teacher` trains on latent data: set data.kind to 'latents' (got {cfg.data.kind!r})")
        self.data = load_data(cfg, ("latents",), config.in_dim, config.text_dim)
        self.chunk = cfg.ar.chunk_frames if cfg.teacher.causal else None
        check_data_fits(config, self.data.latent_shape, self.data.text_dim, self.chunk, f"data.path {cfg.data.path}")
        if not 0.0 <= cfg.flow.cond_dropout < 1.0:
            raise ConfigError(f"flow.cond_dropout must be in [0, 1), got {cfg.flow.cond_dropout}")
        self.model = fsdp_or_plain(build(config, cfg.teacher, ctx.device, convention=cfg.grid.timestep_convention),
                                   cfg, ctx)
        self.neg = negative_context(cfg, config.text_dim).to(ctx.device) if cfg.flow.cond_dropout > 0 else None

    def networks(self) -> dict[str, NetSpec]:
        return {"teacher": NetSpec(self.model, self.cfg.optim.teacher, ema=True)}

    def phases(self, step: int) -> list[str]:
        return ["teacher"]

    def loss(self, phase: str, batch: dict, step: int):
        cfg, ids = self.cfg, batch["sample_id"].tolist()
        x0, ctx = batch["latents"].float(), batch["context"].float()
        B, T = x0.shape[0], x0.shape[2]
        levels = T // self.chunk if self.chunk else 1
        seed = cfg.run.seed
        sigma = per_sample(seed, step, ids, "sigma",
                           lambda g: draw_sigma(g, levels, cfg.flow.t_sampling, cfg.flow.shift)).to(x0.device)
        noise = per_sample_randn(seed, step, ids, "noise", x0.shape[1:]).to(x0.device)
        if self.neg is not None:
            u = per_sample(seed, step, ids, "dropout", lambda g: torch.rand(1, generator=g))[:, 0]
            drop = u < cfg.flow.cond_dropout
            if drop.any():
                L = max(ctx.shape[1], self.neg.shape[1])
                ctx, neg = pad_tokens(ctx, L), pad_tokens(self.neg, L).expand(B, -1, -1)
                ctx = torch.where(drop.to(ctx.device)[:, None, None], neg, ctx)
        loss, stats = flow_denoising_loss(
            self.model, x0, ctx, sigma=sigma if self.chunk else sigma[:, 0], noise=noise,
            causal=CausalTraining(self.chunk, cfg.flow.ar_mode, cfg.ar.cache) if self.chunk else None,
        )
        return loss, stats

    def sampling_defaults(self, step: int) -> SamplingDefaults:
        c = self.cfg
        return SamplingDefaults(
            causal=c.teacher.causal, chunk_frames=c.ar.chunk_frames, shift=c.grid.shift,
            timesteps=tuple(round(t, 6) for t in uniform_timesteps(c.flow.sample_steps)), transition="ode",
            integer_timesteps=c.grid.integer_timesteps, cache=c.ar.cache if c.teacher.causal else None,
            resolution=trained_resolution(self.data.latent_shape), train_iterations=step,
        )


def run(cfg: TrainConfig, command: str = "teacher") -> dict:
    def build_task(cfg, ctx):
        task = TeacherTask(cfg, ctx)
        return task, task.data

    return run_training(cfg, "teacher", build_task)
