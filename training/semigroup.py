"""The semigroup defect: the SC loss's quantity averaged over the student's own inference path.

At every step i of the sampling grid, from the state x_i the sampler actually visits:
    direct    Ψ^{σ_i→σ_{i+1}}(x_i)            (= the sampler's next state)
    composed  Ψ^{σ_m→σ_{i+1}}(Ψ^{σ_i→σ_m}(x_i))  with σ_m the midpoint on the grid's un-shifted scale
    defect_i  = mean‖direct − composed‖² / (mean‖composed − x_i‖² + ε)   (or un-normalised)
For renoise the same ε is used by both paths and by the sampler. Causal students are walked chunk by chunk
against their KV cache (context passes as in inference) and the defect is averaged over chunks too.
A consistent student has defect 0 at every step; evaluation reports the mean and the per-step values.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from salt_core.sampling import CausalSetup, Denoiser, StepEvent, Walk, draw, seeded_generator

from .losses.self_consistency import SCForm, composed_path, sc_loss, triplet_for_grid


@dataclass
class SemigroupDefect:
    mean: float  # over steps (and chunks, and the batch)
    per_step: list[float]  # step i -> defect, averaged over chunks and the batch

    def to_dict(self) -> dict:
        return {"semigroup_defect": self.mean, **{f"semigroup_defect_step{i}": d for i, d in enumerate(self.per_step)}}


class _DefectProbe:
    """A walk's step hook: at each step, the composed two-step path from the same state and ε, and its defect."""

    def __init__(self, walk: Walk, generator: torch.Generator, form: SCForm):
        self.walk, self.generator, self.form = walk, generator, form
        self.defects: list[float] = []

    def __call__(self, e: StepEvent) -> None:
        trip = triplet_for_grid(self.walk.grid, e.index)
        noise = e.noise
        if noise is None and self.walk.transition == "renoise":  # the last step: the walk itself draws no ε
            noise = draw(e.x.shape, self.generator, e.x.device)
        direct = e.x0 if e.x_next is None else e.x_next
        composed = composed_path(e.denoiser, e.x, e.x0, trip, self.walk.transition, noise)
        self.defects.append(sc_loss(direct, composed, e.x, self.form)[0].item())


@torch.no_grad()
def semigroup_defect(
    student: Denoiser,
    noise: torch.Tensor,
    walk: Walk,
    *,
    seed: int = 0,
    form: SCForm = SCForm(stop_grad="none"),
    causal: Optional[CausalSetup] = None,
) -> SemigroupDefect:
    """Semigroup defect on the probe batch `noise` [B, C, T, H, W] along `walk` (the inference grid and the
    student's transition; renoise draws from `seed`).

    student: a bidirectional Denoiser (the model under the probe prompt); ignored when `causal` is given: a causal
    student walked chunk by chunk under that setup (prompt, cache policy, chunk size), each finished chunk
    committed at the policy's context_t."""
    gen = seeded_generator(seed)
    if causal is None:
        probe = _DefectProbe(walk, gen, form)
        walk.run(student, noise.float(), gen, on_step=probe)
        per_step = probe.defects
        return SemigroupDefect(sum(per_step) / len(per_step), per_step)
    driver = causal.driver(noise)
    F, n = causal.chunk_frames, driver.layout.num_chunks
    rows = []
    for c in range(n):
        probe = _DefectProbe(walk, gen, form)
        driver.chunk(c, noise[:, :, c * F:(c + 1) * F].float(), walk, gen, on_step=probe)
        rows.append(probe.defects)
    per_step = [sum(r[i] for r in rows) / n for i in range(walk.steps)]
    return SemigroupDefect(sum(per_step) / len(per_step), per_step)
