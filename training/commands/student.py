"""What the student-training commands (ode-init, dmd, sc-dmd, salt-ar) share: building the student,
its export defaults and the semigroup-defect probe."""
from __future__ import annotations

from typing import Optional

import torch

from salt_core.config import DiTConfig, SamplingDefaults

from ..config import TrainConfig
from ..config_load import ConfigError
from ..semigroup import semigroup_defect
from ..task import Task
from .common import Data, probe_batch, student_grid


def student_sampling(cfg: TrainConfig, step: int) -> SamplingDefaults:
    return SamplingDefaults(
        causal=cfg.student.causal, chunk_frames=cfg.ar.chunk_frames, shift=cfg.grid.shift,
        timesteps=tuple(float(t) for t in cfg.grid.timesteps), transition=cfg.grid.transition,
        context_t=cfg.ar.cache.context_t, integer_timesteps=cfg.grid.integer_timesteps, train_iterations=step,
    )


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
        d = semigroup_defect(
            self.student, noise, ctx, student_grid(cfg), shift=cfg.grid.shift, transition=cfg.grid.transition,
            seed=cfg.run.seed, normalize=cfg.sc.normalise, eps=cfg.sc.eps,
            chunk_frames=cfg.ar.chunk_frames if cfg.student.causal else None, policy=cfg.ar.cache,
            integer_timesteps=cfg.grid.integer_timesteps,
        )
        return {"semigroup_defect": d.mean, **{f"semigroup_defect_step{i}": v for i, v in enumerate(d.per_step)}}

    def sampling_defaults(self, step: int) -> SamplingDefaults:
        return student_sampling(self.cfg, step)


def teacher_config_if_needed(cfg: TrainConfig, *roles: str) -> Optional[DiTConfig]:
    """The teacher's config when some network starts from it (init: teacher)."""
    from ..models import checkpoint_config

    if any(getattr(cfg, r).init == "teacher" for r in roles):
        if not cfg.teacher.init:
            raise ConfigError(f"{' / '.join(r for r in roles if getattr(cfg, r).init == 'teacher')}.init is "
                              "'teacher' but teacher.init (the teacher checkpoint) is empty")
        return checkpoint_config(cfg.teacher.init)
    return None
