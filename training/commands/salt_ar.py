"""`salt-ar`: Salt for autoregressive students — SC-DMD plus cache-distribution-aware training.

Student phase:
* Self Forcing rollout of the causal student, chunk by chunk against a KV cache under `ar.cache`; gradient only
  on each chunk's exit forward, context passes without gradient. The prompt's cross-attention K/V are computed
  once per rollout with their graph, so every exit forward also trains the text embedding and the cross-attention
  K/V projections (Self Forcing's cross-attention cache is filled by the rollout's first forward, which has
  gradient only when the first chunk exits at its first step). Step lists (`ar.step_lists`): 'per_chunk'
  (ours) — every previous chunk walks a K-step grid with K drawn from `ar.cache_step_counts` (mixed-quality
  caches), the current chunk K from `grid.step_counts`; 'per_rollout' (Salt's release) — one K from
  `grid.step_counts` / `grid.step_probs` and one exit index for every chunk.
* L_DMD on the whole clip (the teacher with CFG vs critic; an AR teacher and its critic score each chunk given
  its clean past, `teacher.causal`), plus λ·L_DMD against `second_score`'s teacher and critic when set;
* λ_SC·L_SC: `sc.form` 'semigroup' (ours) on the current chunk from its own rollout state against the rollout's
  cache; 'endpoint' / 'average_velocity' (the release's) on every gradient chunk's exit forward;
* λ_FA·L_FA (ours): the current chunk's input under C_low (K = ar.fa_low_steps) pulled toward C_high
  (K = ar.fa_high_steps) on blocks `ar.fa_layers` and/or x̂0 (clips of at least two chunks);
* λ_TRD·L_TRD (the release's, `trd.*`): the clip vs a no-grad reference rollout at more steps, frame Gram matrices
  of a frozen-teacher block.
Critic phase(s): a no-grad rollout, flow denoising loss of the critic (and of `second_score`'s, `critic2`, on
the same sample), each in its teacher's form.
"""
from __future__ import annotations

import dataclasses

import torch

from salt_core.sampling import CausalSetup, draw
from salt_core.schedules import StepGrid

from ..config import TrainConfig
from ..config_load import ConfigError
from ..losses.gram_alignment import GramAlignment, check_feature_block, gram_alignment_term
from ..losses.mixed_steps import StepListDraw, reference_steps
from ..losses.self_consistency import sc_term, sc_triplet
from ..rollout.autoregressive import plan_chunks, rollout_ar
from ..rollout.cache_aware import CacheAlignment, cache_alignment_term
from ..rollout.common import draw_exit_step, mixed_step_grids
from ..rollout.released import NoiseRecord, reference_rollout
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
        R = a.rollout_frames or T
        if R < T or R % a.chunk_frames:
            raise ConfigError(f"ar.rollout_frames={R} must be at least data.latent_shape's {T} latent frames (the "
                              f"scored clip) and a multiple of ar.chunk_frames={a.chunk_frames}")
        if R > T and (self.cfg.trd.weight > 0 or a.fa_weight > 0 or self.released_sc):
            raise ConfigError(f"ar.rollout_frames={R} > {T} (streaming long tuning) scores the last {T} frames with "
                              "L_DMD and our SC only: set trd.weight and ar.fa_weight to 0 and sc.form: semigroup")
        self.chunks = R // a.chunk_frames
        self.scored_chunks = T // a.chunk_frames
        trd = self.cfg.trd
        if trd.weight > 0:
            if a.step_lists != "per_rollout":
                raise ConfigError("trd.weight > 0 needs ar.step_lists: per_rollout (the reference rollout stops at "
                                  "the one exit index every chunk shares)")
            try:
                check_feature_block(trd.block, self.configs["teacher"].num_layers)
            except ValueError as e:
                raise ConfigError(str(e)) from None

    def rollout_plan(self, g_shared: torch.Generator):
        """(per-chunk walks and exits, SC triplet) — the same on every rank."""
        cfg = self.cfg
        K = self.draw_steps(g_shared)
        trip = sc_triplet(K, cfg.grid.shift, g_shared)
        if cfg.ar.step_lists == "per_rollout":
            exit_step = self.exit_step(K, g_shared)
            grids = [StepGrid.uniform(K, cfg.grid.shift)] * self.chunks
            return self.unscored_without_grad(plan_chunks(grids, cfg.grid.transition,
                                                          exit_steps=[exit_step] * self.chunks)), trip
        grids = mixed_step_grids(self.chunks, choices=cfg.ar.cache_step_counts, shift=cfg.grid.shift,
                                 generator=g_shared, current=K)
        exits = [self.exit_step(gr.steps, g_shared) for gr in grids]
        return self.unscored_without_grad(plan_chunks(grids, cfg.grid.transition, exit_steps=exits)), trip

    def unscored_without_grad(self, chunks: list) -> list:
        """A rollout longer than the scored clip: its chunks before the scored ones carry no gradient."""
        lead = self.chunks - self.scored_chunks
        return [dataclasses.replace(c, grad=False) for c in chunks[:lead]] + list(chunks[lead:])

    def scored(self, x: torch.Tensor) -> torch.Tensor:
        """The last T latent frames of a rollout [B, C, R, H, W]: what the teachers and critics see."""
        return x[:, :, -self.data.latent_shape[1]:]

    def noise(self, batch: dict, g: torch.Generator) -> torch.Tensor:
        C, T, H, W = self.data.latent_shape
        return draw((batch["context"].shape[0], C, self.chunks * self.cfg.ar.chunk_frames, H, W), g, self.ctx.device)

    def setup(self, ctx) -> CausalSetup:
        return CausalSetup(self.student, ctx, self.cfg.ar.cache, self.cfg.ar.chunk_frames)

    def alignment(self) -> CacheAlignment:
        a, shift = self.cfg.ar, self.cfg.grid.shift
        return CacheAlignment(self.walk(StepGrid.uniform(a.fa_low_steps, shift)),
                              self.walk(StepGrid.uniform(a.fa_high_steps, shift)), tuple(a.fa_layers), a.fa_x0)

    def loss(self, phase: str, batch: dict, step: int):
        cfg = self.cfg
        g_shared, g = self.generators(step, phase, batch)
        ctx, guidance = self.contexts(batch)
        chunks, trip = self.rollout_plan(g_shared)
        noise = self.noise(batch, g)
        setup = self.setup(ctx)
        if phase != "student":
            return self.critic_phase(phase, step, ctx,
                                     lambda: (self.scored(rollout_ar(setup.driver(noise), noise, chunks, g).x), g))
        K = chunks[-1].walk.steps
        sc_on = self.sc_on(K)
        ours = sc_on and not self.released_sc
        probe = self.shortcut_probe(chunks, step, shared=cfg.ar.step_lists == "per_rollout") \
            if sc_on and not ours else None
        reference_k = self.reference_steps(chunks, step)
        noises = NoiseRecord() if reference_k is not None else None
        hooks = [h for h in (probe, noises) if h is not None]
        student = setup.driver(noise, prompt_grad=True)  # the prompt's K/V keep their graph: the text path learns
        roll = rollout_ar(student, noise, chunks, g, until_last=trip.index if ours else None,
                          on_step=(lambda c, e: [h(c, e) for h in hooks]) if hooks else None)
        loss, stats = self.dmd(self.scored(roll.x), ctx, guidance, step)
        stats["exit_step_current"] = chunks[-1].exit_step
        stats["cache_steps_mean"] = sum(c.walk.steps for c in chunks[:-1]) / max(1, len(chunks) - 1)
        sc, sc_stats = None, {}
        if ours:
            sc, sc_stats = sc_term(roll.current(), roll.chunks[-1].states[trip.index], trip,
                                   transition=self.sc_transition(), generator=self.term_generator(step, "sc"),
                                   form=self.sc_form())
        elif probe is not None:
            sc, sc_stats = probe.loss()
        if sc is not None:
            loss = loss + cfg.sc.weight * sc
            stats.update(sc_stats)
        if cfg.ar.fa_weight > 0 and self.chunks >= 2:
            fa, fa_stats = cache_alignment_term(
                setup, noise, self.walk(StepGrid.uniform(trip.steps, cfg.grid.shift)), self.alignment(),
                self.term_generator(step, "fa"),
                step_index=draw_exit_step(trip.steps, g_shared))  # same on every rank (FSDP: same forwards)
            loss = loss + cfg.ar.fa_weight * fa
            stats.update(fa_stats)
        if reference_k is not None:
            trd, trd_stats = self.trd_term(setup, noise, chunks[-1], reference_k, noises, roll.x, ctx, step)
            loss = loss + cfg.trd.weight * trd
            stats.update(trd_stats)
        return loss, stats

    def reference_steps(self, chunks, step: int):
        """K of the TRD reference rollout this iteration, or None (TRD off, before its start, or not this draw)."""
        trd = self.cfg.trd
        if trd.weight <= 0 or step < trd.start_step:
            return None
        last = chunks[-1]
        return reference_steps(StepListDraw(last.walk.steps, last.exit_step), trd.reference_pairs)

    def trd_term(self, setup, noise, plan, reference_k: int, noises, x_student, ctx, step: int):
        """The released TRD: a no-grad reference rollout at reference_k steps (same generator, same initial noise,
        its own cache, to the student's exit level), then frame Gram alignment through the frozen teacher."""
        cfg, trd = self.cfg, self.cfg.trd
        reference = self.walk(StepGrid.uniform(reference_k, cfg.grid.shift))
        x_ref = reference_rollout(setup, noise, plan.walk, plan.exit_step, reference, trd.noise_mode, noises,
                                  self.term_generator(step, "trd-reference"))
        settings = GramAlignment(block=trd.block, margin=trd.margin, t_low=trd.t_low, t_high=trd.t_high,
                                 shift=cfg.grid.shift, first_frames=trd.first_frames or None)
        loss, stats = gram_alignment_term(self.teacher, x_student, x_ref, ctx, settings,
                                          generator=self.term_generator(step, "trd"))
        stats["trd_reference_steps"] = reference_k
        return loss, stats


def run(cfg: TrainConfig, command: str = "salt-ar") -> dict:
    return run_distill(SaltARTask, cfg, command)
