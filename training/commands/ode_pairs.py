"""`ode-pairs`: integrate the teacher's probability-flow ODE (with CFG) from seeded noise and store, per
sample, the noise, the states at the student's grid levels and the clean end point x0.

The teacher grid is `ode.teacher_steps` uniform steps with the student's timesteps inserted, so the
recorded states lie exactly on the trajectory. A causal teacher (teacher.causal) integrates chunk by
chunk against its KV cache (context pass of each finished chunk), as Causal Forcing does. Samples are
split over ranks (sample i on rank i mod world); each rank writes its own shards, rank 0 the index.
"""
from __future__ import annotations

import os

import torch

from salt_core.checkpoints import load_dit
from salt_core.sampling import CausalSetup, Denoiser, Guidance, Walk
from salt_core.schedules import StepGrid, uniform_timesteps

from ..config import TrainConfig
from ..config_load import ConfigError
from ..data.shards import INDEX, ShardWriter, write_index
from ..distributed import setup, teardown
from ..models import check_data_fits, checkpoint_config, frozen
from ..seeding import generator
from .common import apply_threads, load_data, negative_context, pad_tokens, require_teacher


def teacher_grid(cfg: TrainConfig) -> tuple[StepGrid, list[int]]:
    """The fine teacher grid (student timesteps inserted) and the indices of the student's levels in it."""
    student = [round(float(t), 6) for t in cfg.grid.timesteps]
    fine = [round(t, 6) for t in uniform_timesteps(cfg.ode.teacher_steps)]
    union = sorted(set(fine) | set(student), reverse=True)
    return StepGrid.from_timesteps(union, cfg.grid.shift), [union.index(t) for t in student]


@torch.no_grad()
def trajectories(model, noise, ctx, guidance: Guidance, cfg: TrainConfig, grid: StepGrid, record: list[int]):
    """The teacher's probability-flow ODE (Euler steps along `grid`, CFG) from noise [B, C, T, H, W]; a causal
    teacher chunk by chunk against its KV caches. Returns (states [B, S, C, T, H, W] at `record`, x0)."""
    walk = Walk(grid, "ode")

    def integrate(run, x):
        res = run(x)
        return torch.stack([res.states[i] for i in record], dim=1), res.sample

    if not cfg.teacher.causal:
        return integrate(lambda x: walk.run(Denoiser.for_clip(model, ctx, guidance), x, record=record), noise)
    F = cfg.ar.chunk_frames
    driver = CausalSetup(model, ctx, cfg.ar.cache, F, guidance).driver(noise)
    states, outs = [], []
    for c in range(driver.layout.num_chunks):
        s, x0 = integrate(lambda x: driver.chunk(c, x, walk, record=record), noise[:, :, c * F:(c + 1) * F])
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
            guidance = Guidance()
            if neg1 is not None:
                L = max(ctx.shape[1], neg1.shape[1])
                ctx = pad_tokens(ctx, L)
                guidance = Guidance(w, pad_tokens(neg1, L).expand(len(ids), -1, -1))
            states, x0 = trajectories(model, noise, ctx, guidance, cfg, grid, record)
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
