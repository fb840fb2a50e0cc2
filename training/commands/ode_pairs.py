"""`ode-pairs`: integrate the teacher's probability-flow ODE (with CFG) from seeded noise and store, per
sample, the noise, the states at the student's grid levels and the clean end point x0.

The teacher grid is `ode.teacher_steps` uniform steps with the student's timesteps inserted, so the
recorded states lie exactly on the trajectory. A causal teacher (teacher.causal) integrates chunk by
chunk against its KV cache (context pass of each finished chunk), as Causal Forcing does. Samples are
split over ranks (sample i on rank i mod world); each rank writes its own shards, rank 0 the index.
"""
from __future__ import annotations

import os
from typing import Callable

import torch

from salt_core.checkpoints import load_dit
from salt_core.sampling.clip import guided
from salt_core.sampling.transitions import model_timestep, predict_x0, transition_step
from salt_core.schedules import StepGrid, uniform_timesteps

from ..config import TrainConfig
from ..config_load import ConfigError
from ..data.shards import INDEX, ShardWriter, write_index
from ..distributed import setup, teardown
from ..models import check_data_fits, checkpoint_config, frozen
from ..rollout.common import CachedChunk
from ..seeding import generator
from .common import apply_threads, load_data, negative_context, pad_tokens, require_teacher

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def teacher_grid(cfg: TrainConfig) -> tuple[StepGrid, list[int]]:
    """The fine teacher grid (student timesteps inserted) and the indices of the student's levels in it."""
    student = [round(float(t), 6) for t in cfg.grid.timesteps]
    fine = [round(t, 6) for t in uniform_timesteps(cfg.ode.teacher_steps)]
    union = sorted(set(fine) | set(student), reverse=True)
    return StepGrid.from_timesteps(union, cfg.grid.shift), [union.index(t) for t in student]


@torch.no_grad()
def integrate(cond: Denoiser, uncond: Denoiser | None, x: torch.Tensor, grid: StepGrid, record: list[int],
              guidance: float, integer: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Euler steps of the flow ODE from x (level grid[0]); returns (states [B, S, ...] at `record`, x0)."""
    sig = grid.with_terminal()
    states = {}
    for i in range(grid.steps):
        if i in record:
            states[i] = x
        t = torch.full((x.shape[0],), model_timestep(sig[i], integer), device=x.device)
        v = cond(x, t)
        if uncond is not None:
            v = guided(v, uncond(x, t), guidance)
        x = transition_step(x, predict_x0(x, v, sig[i]), sig[i], sig[i + 1], "ode")
    return torch.stack([states[i] for i in record], dim=1), x


@torch.no_grad()
def trajectories(model, noise, ctx, neg, cfg: TrainConfig, grid, record, w: float):
    integer = cfg.grid.integer_timesteps
    if not cfg.teacher.causal:
        uncond = (lambda x, t: model(x, t, neg)) if neg is not None else None
        return integrate(lambda x, t: model(x, t, ctx), uncond, noise, grid, record, w, integer)
    F, policy = cfg.ar.chunk_frames, cfg.ar.cache
    B = noise.shape[0]
    caches = []
    for c in (ctx, neg):
        if c is None:
            caches.append(None)
            continue
        cache = model.new_cache(policy, batch=B, latent_hw=tuple(noise.shape[3:]), chunk_frames=F)
        model.set_prompt(cache, c)
        caches.append(cache)
    t_ctx = torch.full((B,), policy.context_t, device=noise.device)
    states, outs = [], []
    for start in range(0, noise.shape[2], F):
        idx = list(range(start, start + F))
        cond = CachedChunk(model, caches[0], idx)
        uncond = CachedChunk(model, caches[1], idx) if caches[1] is not None else None
        s, x0 = integrate(lambda x, t: cond(x, t), (lambda x, t: uncond(x, t)) if uncond else None,
                          noise[:, :, idx], grid, record, w, integer)
        for cache in caches:
            if cache is not None:
                model.forward_chunk(x0, t_ctx, cache, idx, commit=True)
        states.append(s)
        outs.append(x0)
    return torch.cat(states, dim=3), torch.cat(outs, dim=2)


def run(cfg: TrainConfig, command: str = "ode-pairs") -> dict:
    require_teacher(cfg)
    config = checkpoint_config(cfg.teacher.init)
    data = load_data(cfg, ("prompts", "latents"), config.in_dim, config.text_dim)
    check_data_fits(config, data.latent_shape, data.text_dim, cfg.ar.chunk_frames if cfg.teacher.causal else None,
                    f"data.path {cfg.data.path}")
    out = cfg.ode.output or os.path.join(cfg.run.output_dir, "ode_pairs")
    if os.path.exists(os.path.join(out, INDEX)):
        raise ConfigError(f"ode.output {out!r} already holds a dataset; remove it or choose another folder")
    if cfg.ode.num_samples < 1 or cfg.ode.teacher_steps < 1:
        raise ConfigError("ode.num_samples and ode.teacher_steps must be >= 1")
    grid, record = teacher_grid(cfg)
    apply_threads(cfg)
    ctx_ = setup(cfg.run.device, "ddp", cfg.distributed.backend)
    try:
        model, _ = load_dit(cfg.teacher.init, device=ctx_.device, dtype=torch.float32, config=config)
        model = frozen(model)
        w = 1.0 + cfg.ode.guidance_scale
        neg1 = negative_context(cfg, config.text_dim).to(ctx_.device) if w != 1.0 else None
        prefix = "shard" if ctx_.world_size == 1 else f"shard-r{ctx_.rank:03d}"
        writer = ShardWriter(out, samples_per_shard=cfg.ode.samples_per_shard, prefix=prefix)
        mine = list(range(ctx_.rank, cfg.ode.num_samples, ctx_.world_size))
        bs = max(1, cfg.data.batch_size // ctx_.world_size)
        for k in range(0, len(mine), bs):
            ids = mine[k: k + bs]
            items = [data.dataset[i % len(data.dataset)] for i in ids]
            ctx = torch.stack([it["context"] for it in items]).float().to(ctx_.device)
            noise = torch.stack([torch.randn(data.latent_shape, generator=generator(cfg.run.seed, "ode-noise", i))
                                 for i in ids]).to(ctx_.device)
            neg = None
            if neg1 is not None:
                L = max(ctx.shape[1], neg1.shape[1])
                ctx, neg = pad_tokens(ctx, L), pad_tokens(neg1, L).expand(len(ids), -1, -1)
            states, x0 = trajectories(model, noise, ctx, neg, cfg, grid, record, w)
            for j, it in enumerate(items):
                writer.add({"noise": noise[j], "states": states[j], "x0": x0[j], "context": ctx[j]}, it["prompt"])
        writer.flush()
        ctx_.barrier()
        if ctx_.is_main:
            meta = {"timesteps": [grid.timesteps[i] for i in record], "grid_timesteps": list(cfg.grid.timesteps),
                    "shift": cfg.grid.shift, "causal": cfg.teacher.causal, "chunk_frames": cfg.ar.chunk_frames,
                    "teacher": os.path.abspath(cfg.teacher.init), "guidance_scale": cfg.ode.guidance_scale,
                    "teacher_steps": grid.steps, "seed": cfg.run.seed}
            write_index(out, "ode_pairs", meta)
            print(f"wrote {cfg.ode.num_samples} ODE pairs to {out}")
        return {"output": out, "count": cfg.ode.num_samples}
    finally:
        teardown(ctx_)
