"""`ode-init`: initialise a few-step student by regression on teacher ODE pairs.

For each sample a level k of the student grid is drawn (one per chunk for a causal student); the
student sees the teacher's state x_k and regresses x̂0 = x_k − σ_k·v onto the trajectory's end point x0.
A causal student runs one block-causal pass with clean context (teacher forcing: the clean x0 of
earlier chunks at context_t), matching chunk-by-chunk inference against a clean KV cache.
"""
from __future__ import annotations

import math

import torch

from salt_core.schedules import StepGrid, timestep_convention

from ..config import TrainConfig
from ..config_load import ConfigError
from ..distributed import DistContext
from ..losses.critic import teacher_forcing_inputs
from ..models import build, check_data_fits, load_teacher, resolve_config
from ..seeding import per_sample
from ..task import NetSpec
from .common import fsdp_or_plain, load_data, run_training
from .student import StudentTask, check_grid, teacher_config_if_needed


def check_pairs_match_grid(cfg: TrainConfig, meta: dict, path: str) -> None:
    want = StepGrid.from_timesteps(cfg.grid.timesteps, cfg.grid.shift).timesteps
    got = [float(t) for t in meta.get("timesteps", [])]
    if len(got) != len(want) or any(not math.isclose(a, b, rel_tol=0, abs_tol=1e-3) for a, b in zip(got, want)):
        raise ConfigError(f"data.path {path}: ODE pairs hold states at t={[round(t, 2) for t in got]}, but "
                          f"grid.timesteps {list(cfg.grid.timesteps)} with shift {cfg.grid.shift} gives "
                          f"{[round(t, 2) for t in want]}; regenerate the pairs or match the grid")


class ODEInitTask(StudentTask):
    def __init__(self, cfg: TrainConfig, ctx: DistContext):
        self.cfg, self.ctx = cfg, ctx
        check_grid(cfg)
        tconfig = teacher_config_if_needed(cfg, "student")
        config = resolve_config("student", cfg.student, tconfig)
        self.data = load_data(cfg, ("ode_pairs",), config.in_dim, config.text_dim)
        check_pairs_match_grid(cfg, self.data.dataset.meta, cfg.data.path)
        self.chunk = cfg.ar.chunk_frames if cfg.student.causal else None
        check_data_fits(config, self.data.latent_shape, self.data.text_dim, self.chunk, f"data.path {cfg.data.path}")
        teacher = load_teacher(cfg.teacher.init, tconfig, ctx.device) if tconfig is not None else None
        self.student = fsdp_or_plain(build(config, cfg.student, ctx.device, teacher,
                                           convention=cfg.grid.timestep_convention), cfg, ctx)
        self.sigmas = torch.tensor(self.data.dataset.timesteps) / 1000.0  # [S]
        self._init_probe(ctx.device)

    def networks(self) -> dict[str, NetSpec]:
        return {"student": NetSpec(self.student, self.cfg.optim.student, ema=True)}

    def phases(self, step: int) -> list[str]:
        return ["student"]

    def loss(self, phase: str, batch: dict, step: int):
        states, x0, ctx = batch["states"].float(), batch["x0"].float(), batch["context"].float()
        B, S, C, T, H, W = states.shape
        levels = T // self.chunk if self.chunk else 1
        k = per_sample(self.cfg.run.seed, step, batch["sample_id"].tolist(), "level",
                       lambda g: torch.randint(0, S, (levels,), generator=g)).to(states.device)  # [B, levels]
        k_frames = k.repeat_interleave(T // levels, dim=1)  # [B, T]
        pick = k_frames[:, None, None, :, None, None].expand(B, 1, C, T, H, W)
        x_t = states.gather(1, pick)[:, 0]  # [B, C, T, H, W]
        sigma = self.sigmas.to(states.device)[k_frames]  # [B, T]
        s = sigma[:, None, :, None, None]
        t = timestep_convention(self.student).batch(sigma, B, states.device)  # [B, T]
        if self.chunk is None:
            v = self.student(x_t, t[:, 0], ctx)
        else:
            x_in, t_in, mask, pos = teacher_forcing_inputs(x0, x_t, t, chunk_frames=self.chunk,
                                                           policy=self.cfg.ar.cache)
            v = self.student(x_in, t_in, ctx, frame_mask=mask, frame_positions=pos)[:, :, T:]
        x0_hat = x_t - s * v.float()
        loss = (x0_hat - x0).square().mean()
        return loss, {"ode_loss": loss.item(), "ode_t_mean": (1000.0 * sigma).mean().item()}


def run(cfg: TrainConfig, command: str = "ode-init") -> dict:
    def build_task(cfg, ctx):
        task = ODEInitTask(cfg, ctx)
        return task, task.data

    return run_training(cfg, command, build_task)
