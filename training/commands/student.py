"""What the student-training commands (ode-init, dmd, sc-dmd, salt-ar) share: building the student,
its export defaults and the semigroup-defect probe."""
from __future__ import annotations

from typing import Optional

import torch

from salt_core.config import DiTConfig, SamplingDefaults
from salt_core.sampling import CausalSetup, Denoiser, Walk
from salt_core.validation import VAE_SPACE

from ..config import TrainConfig
from ..config_load import ConfigError
from ..losses.self_consistency import SCForm
from ..semigroup import semigroup_defect
from ..task import Task
from .common import Data, probe_batch, student_grid


def student_sampling(cfg: TrainConfig, step: int, latent_shape=None) -> SamplingDefaults:
    """What the exported student was trained for; latent_shape (C, T, H, W) of the data gives its resolution."""
    return SamplingDefaults(
        causal=cfg.student.causal, chunk_frames=cfg.ar.chunk_frames, shift=cfg.grid.shift,
        timesteps=tuple(float(t) for t in cfg.grid.timesteps), transition=cfg.grid.transition,
        integer_timesteps=cfg.grid.integer_timesteps, cache=cfg.ar.cache if cfg.student.causal else None,
        resolution=trained_resolution(latent_shape), train_iterations=step,
    )


def trained_resolution(latent_shape) -> Optional[tuple[int, int]]:
    """Pixel (height, width) of latents (C, T, h, w) for Wan's 8x VAE; None when unknown."""
    if not latent_shape:
        return None
    return VAE_SPACE * int(latent_shape[-2]), VAE_SPACE * int(latent_shape[-1])


def check_grid(cfg: TrainConfig) -> None:
    g = cfg.grid
    if not g.timesteps:
        raise ConfigError("grid.timesteps is empty: give the student's few-step grid, e.g. [1000, 750, 500, 250]")
    try:
        student_grid(cfg)
    except ValueError as e:
        raise ConfigError(f"grid.timesteps: {e}") from None
    if any(k < 1 for k in g.step_counts):
        raise ConfigError(f"grid.step_counts must be positive, got {list(g.step_counts)}")


class StudentTask(Task):
    """Sets up the probe batch; subclasses provide `self.student`, `self.data`, `self.cfg`."""

    primary = "student"
    cfg: TrainConfig
    data: Data
    student: torch.nn.Module

    def _init_probe(self, device) -> None:
        self._probe: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        if self.cfg.run.probe_every:
            self._probe = probe_batch(self.cfg, self.data, device)

    def probe(self, step: int) -> dict:
        if self._probe is None:
            return {}
        cfg = self.cfg
        noise, ctx = self._probe
        causal = CausalSetup(self.student, ctx, cfg.ar.cache, cfg.ar.chunk_frames) if cfg.student.causal else None
        d = semigroup_defect(Denoiser.for_clip(self.student, ctx), noise, Walk(student_grid(cfg), cfg.grid.transition),
                             seed=cfg.run.seed, form=SCForm("none", cfg.sc.normalise, cfg.sc.eps), causal=causal)
        return d.to_dict()

    def sampling_defaults(self, step: int) -> SamplingDefaults:
        return student_sampling(self.cfg, step, self.data.latent_shape)


def teacher_config_if_needed(cfg: TrainConfig, *roles: str) -> Optional[DiTConfig]:
    """The teacher's config when some network starts from it (init: teacher)."""
    from ..models import checkpoint_config

    if any(getattr(cfg, r).init == "teacher" for r in roles):
        if not cfg.teacher.init:
            raise ConfigError(f"{' / '.join(r for r in roles if getattr(cfg, r).init == 'teacher')}.init is "
                              "'teacher' but teacher.init (the teacher checkpoint) is empty")
        return checkpoint_config(cfg.teacher.init)
    return None
