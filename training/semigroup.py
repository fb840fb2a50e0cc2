"""The semigroup defect: the SC loss's quantity averaged over the student's own inference path (DESIGN §6).

At every step i of the sampling grid, from the state x_i the sampler actually visits:
    direct    Ψ^{σ_i→σ_{i+1}}(x_i)            (= the sampler's next state)
    composed  Ψ^{σ_m→σ_{i+1}}(Ψ^{σ_i→σ_m}(x_i))  with σ_m the midpoint on the un-shifted scale
    defect_i  = mean‖direct − composed‖² / (mean‖composed − x_i‖² + ε)   (or un-normalised)
For renoise the same ε is used by both paths and by the sampler. Causal students are walked chunk by
chunk against their KV cache (context passes as in inference) and the defect is averaged over chunks too.
A consistent student has defect 0 at every step; evaluation reports the mean and the per-step values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from salt_core.kv_cache import CachePolicy
from salt_core.sampling.clip import draw, seeded_generator
from salt_core.sampling.transitions import check_transition
from salt_core.schedules import StepGrid
from salt_core.validation import check_chunking

from .losses.self_consistency import sc_loss, sc_paths, triplet_for_grid
from .rollout.common import CachedChunk


@dataclass
class SemigroupDefect:
    mean: float  # over steps (and chunks, and the batch)
    per_step: list[float]  # step i -> defect, averaged over chunks and the batch

    def to_dict(self) -> dict:
        return {"semigroup_defect": self.mean, **{f"semigroup_defect_step{i}": d for i, d in enumerate(self.per_step)}}


def _walk(denoise, x: torch.Tensor, ctx, grid: StepGrid, *, shift, transition, gen, normalize, eps, integer_timesteps):
    """Per-step defects along one path; returns (per-step list, final sample)."""
    defects = []
    for i in range(grid.steps):
        trip = triplet_for_grid(grid, i, shift)
        noise = draw(x.shape, gen, x.device) if transition == "renoise" else None
        direct, composed = sc_paths(
            denoise, x, trip, ctx, transition=transition, noise=noise, stop_grad="none",
            integer_timesteps=integer_timesteps,
        )
        d, _ = sc_loss(direct, composed, x, stop_grad="none", normalize=normalize, eps=eps)
        defects.append(d.item())
        x = direct
    return defects, x


@torch.no_grad()
def semigroup_defect(
    student,
    noise: torch.Tensor,
    ctx: torch.Tensor,
    grid: StepGrid,
    *,
    shift: float = 5.0,
    transition: str = "renoise",
    seed: int = 0,
    normalize: str = "displacement",
    eps: float = 1e-6,
    chunk_frames: Optional[int] = None,
    policy: CachePolicy = CachePolicy(),
    integer_timesteps: bool = False,
) -> SemigroupDefect:
    """Semigroup defect of `student` on the probe batch `noise` [B, C, T, H, W] with prompt ctx [B, L, text_dim].

    grid: the inference grid walked; shift: the flow shift used to place midpoints (the grid's own);
    transition: the student's sampling rule; seed: renoise draws; normalize/eps: as `sc_loss`.
    chunk_frames: None = bidirectional student `student(x, t, ctx)`; an int = causal WanDiT walked chunk
    by chunk under cache `policy` (each finished chunk committed at policy.context_t).
    """
    check_transition(transition)
    gen = seeded_generator(seed)
    kw = dict(shift=shift, transition=transition, gen=gen, normalize=normalize, eps=eps, integer_timesteps=integer_timesteps)
    if chunk_frames is None:
        per_step, _ = _walk(student, noise.float(), ctx, grid, **kw)
        return SemigroupDefect(sum(per_step) / len(per_step), per_step)
    n = check_chunking(noise.shape[2], chunk_frames)
    B = noise.shape[0]
    cache = student.new_cache(policy, batch=B, latent_hw=tuple(noise.shape[3:]), chunk_frames=chunk_frames)
    student.set_prompt(cache, ctx)
    t_ctx = torch.full((B,), policy.context_t, device=noise.device)
    rows = []
    for c in range(n):
        idx = list(range(c * chunk_frames, (c + 1) * chunk_frames))
        per_step, x = _walk(CachedChunk(student, cache, idx), noise[:, :, idx].float(), None, grid, **kw)
        rows.append(per_step)
        student.forward_chunk(x, t_ctx, cache, idx, commit=True)
    per_step = [sum(r[i] for r in rows) / n for i in range(grid.steps)]
    return SemigroupDefect(sum(per_step) / len(per_step), per_step)
