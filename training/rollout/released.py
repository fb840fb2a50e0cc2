"""The pieces of Salt's released recipe that hook into our rollouts (docs/salt_release.md says what the release
does and where): the shortcut-consistency term on every gradient chunk's exit forward, the record of the
student's re-noise draws, and the no-grad reference rollout of the TRD alignment.

The loss formulas are in training/losses/shortcut.py and gram_alignment.py; the step-list draws and the reference
path in training/losses/mixed_steps.py. Everything here drives salt_core's walk and chunk driver.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from salt_core.sampling import CausalSetup, Move, StepEvent, Walk

from ..losses.mixed_steps import reference_path
from ..losses.shortcut import shortcut_consistency_loss, shortcut_times
from .autoregressive import ChunkSteps


LEVEL_TOLERANCE = 1e-3  # model-timestep tolerance when matching a level of one list to another's


class ShortcutProbe:
    """A rollout step hook: at the exit forward of every chunk that carries gradient, the released SC loss from
    that forward's own state x_s and flow v₁ (with graph), v₂ from the same student against the same KV cache.

    chunks: the rollout's ChunkSteps (walk, exit step, grad) — one for a bidirectional rollout; rule /
    num_segments: how (t_m, t_e) are drawn (`shortcut_times`); shared: one draw for the whole rollout (the
    release's same_step_across_blocks) instead of one per chunk. `loss()` averages the chunks' terms."""

    def __init__(self, chunks: Sequence[ChunkSteps], form: str, rule: str, num_segments: int,
                 generator: Optional[torch.Generator], shared: bool = True):
        self.chunks, self.form, self.rule, self.num_segments = list(chunks), form, rule, num_segments
        self.generator, self.shared = generator, shared
        self.terms: list[tuple[torch.Tensor, dict]] = []
        self._times: Optional[tuple] = None
        self._drawn = False

    def _times_for(self, plan: ChunkSteps):
        if not (self.shared and self._drawn):
            self._times = shortcut_times(plan.walk.grid.timesteps, plan.exit_step, rule=self.rule,
                                         num_segments=self.num_segments, generator=self.generator)
            self._drawn = True
        return self._times

    def __call__(self, chunk: int, e: StepEvent) -> None:
        plan = self.chunks[chunk]
        if e.index != plan.exit_step or not plan.grad or not torch.is_grad_enabled():
            return
        times = self._times_for(plan)
        if times is None:  # the last step of the list: no SC there
            return

        def v2(x_m: torch.Tensor, t: float) -> torch.Tensor:
            return e.denoiser.velocity(x_m, t / 1000.0)

        self.terms.append(shortcut_consistency_loss(e.x, e.v, v2, *times, form=self.form))

    def loss(self) -> tuple[Optional[torch.Tensor], dict]:
        if not self.terms:
            return None, {}
        loss = torch.stack([term for term, _ in self.terms]).mean()
        first = self.terms[0][1]
        stats = {"sc_loss": loss.item(), "sc_chunks": len(self.terms),
                 **{k: first[k] for k in ("sc_weight", "sc_t_s", "sc_t_m", "sc_t_e")}}
        return loss, stats


class NoiseRecord:
    """A rollout step hook keeping the student's re-noise draws per chunk, keyed by the level they re-noise to."""

    def __init__(self):
        self.draws: dict[int, dict[float, torch.Tensor]] = {}

    def __call__(self, chunk: int, e: StepEvent) -> None:
        if e.noise is not None:
            self.draws.setdefault(chunk, {})[1000.0 * e.sigma_next] = e.noise

    def get(self, chunk: int, level: float) -> Optional[torch.Tensor]:
        for t, noise in self.draws.get(chunk, {}).items():
            if abs(t - level) < LEVEL_TOLERANCE:
                return noise
        return None


@torch.no_grad()
def reference_rollout(setup: CausalSetup, noise: torch.Tensor, student: Walk, exit_index: int, reference: Walk,
                      mode: str, student_noise: NoiseRecord, generator: Optional[torch.Generator]) -> torch.Tensor:
    """The reference samples of the TRD alignment: the same generator from the same initial noise [B, C, T, H, W]
    with its own KV cache, walking the `reference` list until the student's exit level (each chunk's x̂0 there is
    the reference sample, committed to the reference cache), re-noising per `mode` (`reference_path`)."""
    moves, t_stop = reference_path(reference.grid, student.grid, exit_index, mode=mode, transition=reference.transition)
    levels = list(reference.grid.timesteps)
    stop = next(i for i, t in enumerate(levels) if abs(t - t_stop) < LEVEL_TOLERANCE)
    driver = setup.driver(noise)
    F = setup.chunk_frames
    samples = []
    for c in range(driver.layout.num_chunks):
        chunk_moves = [Move(m.kind, student_noise.get(c, m.noise_from) if m.noise_from is not None else None)
                       for m in moves]
        res = driver.chunk(c, noise[:, :, c * F:(c + 1) * F].float(), reference, generator, exit_step=stop,
                           moves=chunk_moves or None)
        samples.append(res.sample)
    return torch.cat(samples, dim=2)
