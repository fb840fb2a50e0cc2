"""`salt-ar`: Salt for autoregressive students — SC-DMD plus cache-distribution-aware training.

Student phase:
* Self Forcing rollout of the causal student, chunk by chunk against a KV cache under `ar.cache`;
  every previous chunk walks a K-step grid with K drawn from `ar.cache_step_counts` (mixed-quality
  caches), the current (last) chunk the K-step grid of the SC triplet (K from `grid.step_counts`);
  gradient only on each chunk's exit forward, context passes without gradient.
* L_DMD on the whole clip (bidirectional teacher with CFG vs critic);
* λ_SC·L_SC on the current chunk, from its own rollout state, against the rollout's cache;
* λ_FA·L_FA: the current chunk's input under C_low (K = ar.fa_low_steps) pulled toward C_high
  (K = ar.fa_high_steps) on blocks `ar.fa_layers` and/or x̂0 (clips of at least two chunks).
Critic phase: a no-grad rollout, flow denoising loss of the (bidirectional) critic.
"""
from __future__ import annotations

import torch

from salt_core.sampling import CausalSetup
from salt_core.schedules import StepGrid

from ..config import TrainConfig
from ..config_load import ConfigError
from ..losses.self_consistency import sc_term, sc_triplet
from ..rollout.autoregressive import plan_chunks, rollout_ar
from ..rollout.cache_aware import CacheAlignment, cache_alignment_term
from ..rollout.common import draw_exit_step, draw_step_count, mixed_step_grids
from .dmd import DistillTask, run_distill


class SaltARTask(DistillTask):
    causal_student = True

    def check_extra(self) -> None:
        a, T = self.cfg.ar, self.data.latent_shape[1]
        if a.chunk_frames < 1:
            raise ConfigError(f"ar.chunk_frames must be >= 1, got {a.chunk_frames}")
        if not a.cache_step_counts or min(a.cache_step_counts) < 1:
            raise ConfigError(f"ar.cache_step_counts must be positive step counts, got {list(a.cache_step_counts)}")
        if a.fa_weight > 0 and not a.fa_layers and not a.fa_x0:
            raise ConfigError("ar.fa_weight > 0 but nothing to align: set ar.fa_layers and/or ar.fa_x0")
        if a.fa_layers:
            layers = self.configs["student"].num_layers
            bad = [i for i in a.fa_layers if not 0 <= i < layers]
            if bad:
                raise ConfigError(f"ar.fa_layers {bad} outside the student's blocks 0..{layers - 1}")
        self.chunks = T // a.chunk_frames

    def rollout_plan(self, g_shared: torch.Generator):
        """(per-chunk walks and exits, SC triplet) — the same on every rank."""
        cfg = self.cfg
        K = draw_step_count(cfg.grid.step_counts, g_shared)
        trip = sc_triplet(K, cfg.grid.shift, g_shared)
        grids = mixed_step_grids(self.chunks, choices=cfg.ar.cache_step_counts, shift=cfg.grid.shift,
                                 generator=g_shared, current=K)
        exits = [self.exit_step(gr.steps, g_shared) for gr in grids]
        return plan_chunks(grids, cfg.grid.transition, exit_steps=exits), trip

    def setup(self, ctx) -> CausalSetup:
        return CausalSetup(self.student, ctx, self.cfg.ar.cache, self.cfg.ar.chunk_frames)

    def alignment(self) -> CacheAlignment:
        a, shift = self.cfg.ar, self.cfg.grid.shift
        return CacheAlignment(self.walk(StepGrid.uniform(a.fa_low_steps, shift)),
                              self.walk(StepGrid.uniform(a.fa_high_steps, shift)), tuple(a.fa_layers), a.fa_x0)

    def loss(self, phase: str, batch: dict, step: int):
        cfg = self.cfg
        g_shared, g = self.generators(step, phase)
        ctx, guidance = self.contexts(batch)
        chunks, trip = self.rollout_plan(g_shared)
        noise = self.noise(batch, g)
        setup = self.setup(ctx)
        if phase == "critic":
            with torch.no_grad():
                roll = rollout_ar(setup.driver(noise), noise, chunks, g)
            return self.critic_loss(roll.x, ctx, g)
        sc_on = cfg.sc.weight > 0
        roll = rollout_ar(setup.driver(noise), noise, chunks, g, until_last=trip.index if sc_on else None)
        loss, stats = self.dmd(roll.x, ctx, guidance, self.term_generator(step, "dmd"))
        stats["exit_step_current"] = chunks[-1].exit_step
        stats["cache_steps_mean"] = sum(c.walk.steps for c in chunks[:-1]) / max(1, len(chunks) - 1)
        if sc_on:
            sc, sc_stats = sc_term(roll.current(), roll.chunks[-1].states[trip.index], trip,
                                   transition=self.sc_transition(), generator=self.term_generator(step, "sc"),
                                   form=self.sc_form())
            loss = loss + cfg.sc.weight * sc
            stats.update(sc_stats)
        if cfg.ar.fa_weight > 0 and self.chunks >= 2:
            fa, fa_stats = cache_alignment_term(
                setup, noise, self.walk(StepGrid.uniform(trip.steps, cfg.grid.shift)), self.alignment(),
                self.term_generator(step, "fa"),
                step_index=draw_exit_step(trip.steps, g_shared))  # same on every rank (FSDP: same forwards)
            loss = loss + cfg.ar.fa_weight * fa
            stats.update(fa_stats)
        return loss, stats


def run(cfg: TrainConfig, command: str = "salt-ar") -> dict:
    return run_distill(SaltARTask, cfg, command)
