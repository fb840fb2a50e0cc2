"""`dmd` (baseline) and `sc-dmd` (Salt) for bidirectional students.

Each step: the student is updated every `dmd.student_every` steps, the critic every step (Self Forcing's
order: student first). Student phase: roll the student out from noise with gradient on one random exit
step, L = L_DMD (teacher with CFG vs critic) [+ λ_SC·L_SC on the SC triplet of the sampled K-step grid,
from the rollout's own state]. Critic phase: a no-grad rollout, flow denoising loss of the critic.
An AR teacher (`teacher.causal`) and its critic (`critic.causal`) score each chunk given its clean past
(losses/causal_score.py); the critic then learns by the same teacher-forcing loss. `second_score` adds a
second frozen teacher with its own critic (phase `critic2`, on the critic phase's sample): L gains
λ·L_DMD against it, each score in its own form (whole clips or chunk by chunk).

Randomness: `shared` draws (K, exit step, SC pair) are the same on every rank; noise is per rank.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from salt_core.checkpoints import inspect_dit
from salt_core.sampling import Denoiser, Guidance, Walk, draw
from salt_core.schedules import StepGrid, timestep_convention

from ..config import ModelConfig, TrainConfig
from ..config_load import ConfigError
from ..distributed import DistContext
from ..trainer import MICRO_BATCH
from ..losses.causal_score import teacher_forced
from ..losses.critic import CausalTraining, flow_denoising_loss
from ..losses.dmd import dmd_term
from ..losses.self_consistency import SCForm, sc_term, sc_triplet
from ..losses.timesteps import NoiseLevels
from ..models import build, check_compatible, check_data_fits, checkpoint_config, load_teacher, resolve_config
from ..rollout.autoregressive import ChunkSteps
from ..rollout.bidirectional import rollout_bidirectional
from ..rollout.released import ShortcutProbe
from ..rollout.common import draw_exit_step, draw_step_count
from ..seeding import generator
from ..task import NetSpec
from .common import fsdp_or_plain, load_data, negative_context, pad_tokens, require_teacher, run_training, student_grid
from .student import StudentTask, check_grid


def check_distill(cfg: TrainConfig) -> None:
    d = cfg.dmd
    if d.student_every < 1:
        raise ConfigError(f"dmd.student_every must be >= 1, got {d.student_every}")
    if not 0.0 <= d.t_min <= d.t_max <= 1000.0:
        raise ConfigError(f"need 0 <= dmd.t_min <= dmd.t_max <= 1000, got {d.t_min}, {d.t_max}")
    if d.exit_step != "random" and d.exit_step < 0:
        raise ConfigError(f"dmd.exit_step must be 'random' or a step index >= 0, got {d.exit_step}")


def scoring_form(teacher: ModelConfig, critic: ModelConfig, where: str = "") -> Optional[CausalTraining]:
    """How a real score (`teacher`) and its critic score a student's clip: None = whole clips (a bidirectional
    teacher), else chunk by chunk given the clean past (`causal: true`, an AR teacher), in the chunks and cache
    policy the teacher's checkpoint records that it was trained under (teacher forcing, the form the critic then
    trains in too). `where` prefixes the option names in errors ("second_score."). Checked before weights load."""
    t, c = f"{where}teacher", f"{where}critic"
    sampling = inspect_dit(teacher.init).sampling
    if not teacher.causal:
        if sampling.causal:
            raise ConfigError(f"{t}.init {teacher.init} is an AR teacher (trained block-causally over chunks "
                              f"of {sampling.chunk_frames} latent frames): set {t}.causal: true (and "
                              f"{c}.causal: true) to score chunk by chunk, or give a bidirectional teacher")
        if critic.causal:
            raise ConfigError(f"{c}.causal must be false with a bidirectional teacher: the critic scores whole "
                              "clips, like the teacher")
        return None
    if not sampling.causal:
        raise ConfigError(f"{t}.causal is true but {t}.init {teacher.init} records a bidirectional "
                          f"model (sampling.causal false): give an AR teacher or set {t}.causal: false")
    if sampling.cache is None:
        raise ConfigError(f"{t}.init {teacher.init} records no cache policy, so the clean past each chunk "
                          "saw in training is not known; save it with the trainer's `teacher` command")
    if not critic.causal:
        raise ConfigError(f"{t}.causal is true, so {c}.causal must be true: the critic scores each chunk "
                          "given its clean past, like the teacher")
    return CausalTraining(sampling.chunk_frames, "teacher_forcing", sampling.cache)


def causal_scoring(cfg: TrainConfig) -> Optional[CausalTraining]:
    """The teacher's scoring form (`scoring_form`); TRD needs a whole-clip teacher."""
    form = scoring_form(cfg.teacher, cfg.critic)
    if form is not None and cfg.trd.weight > 0:
        raise ConfigError("trd.weight > 0 needs a bidirectional teacher: TRD's Gram features come from a "
                          "whole-clip teacher pass")
    return form


def second_scoring(cfg: TrainConfig) -> Optional[CausalTraining]:
    """The second real score's form; checked like the teacher's, after its own fields are."""
    s = cfg.second_score
    if not s.teacher.init:
        raise ConfigError(f"second_score.weight is {s.weight} but second_score.teacher.init is empty: give the "
                          "second teacher's checkpoint, or set second_score.weight: 0")
    if s.teacher.init == "teacher" or s.teacher.init == cfg.teacher.init:
        raise ConfigError(f"second_score.teacher.init ({s.teacher.init}) is the teacher itself: a second score "
                          "needs another teacher")
    return scoring_form(s.teacher, s.critic, "second_score.")


@dataclass
class RealScore:
    """A frozen teacher, its critic (trained in phase `phase`) and how both score a clip (None = whole clips)."""

    teacher: torch.nn.Module
    critic: torch.nn.Module
    form: Optional[CausalTraining]
    weight: float
    phase: str
    stats_prefix: str


class DistillTask(StudentTask):
    """Teacher (frozen), critic and student; shared by dmd, sc-dmd and salt-ar."""

    causal_student = False

    def __init__(self, cfg: TrainConfig, ctx: DistContext, command: str):
        self.cfg, self.ctx, self.command = cfg, ctx, command
        require_teacher(cfg)
        check_grid(cfg)
        check_distill(cfg)
        if cfg.student.causal != self.causal_student:
            want = "true" if self.causal_student else "false"
            raise ConfigError(f"`{command}` needs student.causal: {want}"
                              + (" (use salt-ar for causal students)" if cfg.student.causal else ""))
        if cfg.ar.rollout_frames and not self.causal_student:
            raise ConfigError(f"ar.rollout_frames={cfg.ar.rollout_frames} streams a causal student past the scored "
                              f"clip: it is a salt-ar option, `{command}` rolls out whole clips")
        if cfg.distributed.offload_teacher and not (cfg.distributed.strategy == "fsdp" and ctx.enabled):
            raise ConfigError("distributed.offload_teacher keeps the teacher's FSDP shards in CPU memory: it needs "
                              "distributed.strategy fsdp under torchrun with 2+ processes")
        tconfig = checkpoint_config(cfg.teacher.init)
        form = causal_scoring(cfg)
        s2 = cfg.second_score
        second = second_scoring(cfg) if s2.weight > 0 else None
        configs = {"teacher": tconfig, "student": resolve_config("student", cfg.student, tconfig),
                   "critic": resolve_config("critic", cfg.critic, tconfig)}
        chunks = {"student": cfg.ar.chunk_frames if self.causal_student else None}
        chunks["teacher"] = chunks["critic"] = form.chunk_frames if form is not None else None
        if s2.weight > 0:
            t2config = checkpoint_config(s2.teacher.init)
            configs["second_score.teacher"] = t2config
            configs["second_score.critic"] = resolve_config("second_score.critic", s2.critic, t2config)
            chunks["second_score.teacher"] = chunks["second_score.critic"] = \
                second.chunk_frames if second is not None else None
        check_compatible(configs)
        sconfig = configs["student"]
        self.data = load_data(cfg, ("prompts", "latents"), sconfig.in_dim, sconfig.text_dim)
        for role, c in configs.items():
            check_data_fits(c, self.data.latent_shape, self.data.text_dim, chunks[role],
                            f"data.path {cfg.data.path} ({role})")
        self.configs = configs
        self.check_extra()
        dev = ctx.device
        teacher = load_teacher(cfg.teacher.init, tconfig, dev,
                               gradient_checkpointing=cfg.teacher.gradient_checkpointing)
        self.student = fsdp_or_plain(build(sconfig, cfg.student, dev, teacher,
                                           convention=cfg.grid.timestep_convention), cfg, ctx)
        self.critic = fsdp_or_plain(build(configs["critic"], cfg.critic, dev, teacher,
                                          convention=timestep_convention(teacher)), cfg, ctx)
        self.teacher = self.frozen_teacher(teacher)
        self.scores = [RealScore(self.teacher, self.critic, form, 1.0, "critic", "")]
        if s2.weight > 0:
            teacher2 = load_teacher(s2.teacher.init, configs["second_score.teacher"], dev,
                                    gradient_checkpointing=s2.teacher.gradient_checkpointing)
            critic2 = fsdp_or_plain(build(configs["second_score.critic"], s2.critic, dev, teacher2,
                                          convention=timestep_convention(teacher2)), cfg, ctx)
            self.scores.append(RealScore(self.frozen_teacher(teacher2), critic2, second, s2.weight, "critic2",
                                         "second_"))
        if dev.type == "cuda" and cfg.run.precision in ("auto", "bf16"):
            self.student.cache_dtype = torch.bfloat16  # bf16 autocast computes the K/V in bf16 anyway
        self.w = 1.0 + cfg.dmd.guidance_scale
        self.neg = negative_context(cfg, tconfig.text_dim).to(dev) if self.w != 1.0 else None
        d = cfg.dmd
        self.levels = NoiseLevels(cfg.grid.shift, d.t_min, d.t_max)
        self._critic_samples: tuple[Optional[int], dict] = (None, {})  # (step, {micro-batch: (x, generator)})
        self._init_probe(dev)

    def frozen_teacher(self, teacher: torch.nn.Module) -> torch.nn.Module:
        """A frozen teacher placed for the run: under CUDA bf16 autocast its matmuls run in bf16 anyway, so it is
        kept in bf16 (after the fp32 copies the student and critic were built from) to halve it."""
        cfg = self.cfg
        if self.ctx.device.type == "cuda" and cfg.run.precision in ("auto", "bf16"):
            teacher.to(torch.bfloat16)
        return fsdp_or_plain(teacher, cfg, self.ctx, offload=cfg.distributed.offload_teacher)

    def check_extra(self) -> None:
        """Command-specific checks before any weights load."""

    def networks(self) -> dict[str, NetSpec]:
        o = self.cfg.optim
        nets = {"student": NetSpec(self.student, o.student, ema=True)}
        nets.update({r.phase: NetSpec(r.critic, o.critic) for r in self.scores})
        return nets

    def phases(self, step: int) -> list[str]:
        return (["student"] if step % self.cfg.dmd.student_every == 0 else []) + [r.phase for r in self.scores]

    # ---- helpers ----------------------------------------------------------------------------------
    def generators(self, step: int, phase: str, batch: dict) -> tuple[torch.Generator, torch.Generator]:
        """(shared across ranks and micro-batches, this rank's and this micro-batch's) generators of a phase: with
        gradient accumulation every micro-batch of a step shares K / exit / SC pair and gets its own noise. Every
        critic phase draws the rollout of phase "critic": the critics of one step learn from one student sample."""
        self._own = (self.ctx.rank, batch[MICRO_BATCH]) if batch.get(MICRO_BATCH) else (self.ctx.rank,)
        seed, phase = self.cfg.run.seed, "critic" if phase != "student" else phase
        return generator(seed, step, phase, "shared"), generator(seed, step, phase, "rank", *self._own)

    def term_generator(self, step: int, term: str) -> torch.Generator:
        """This rank's (and micro-batch's) own stream for one loss term ("dmd", "sc", "fa", "trd"), so that
        switching a term on or off (or how far the rollout walks for it) never changes another term's draws:
        ablations stay paired."""
        return generator(self.cfg.run.seed, step, "student", term, "rank", *self._own)

    def contexts(self, batch: dict) -> tuple[torch.Tensor, Guidance]:
        """The batch's prompts [B, L, D] and the teacher's guidance (its negative prompt padded alike)."""
        ctx = batch["context"].float()
        if self.neg is None:
            return ctx, Guidance()
        L = max(ctx.shape[1], self.neg.shape[1])
        return pad_tokens(ctx, L), Guidance(self.w, pad_tokens(self.neg, L).expand(ctx.shape[0], -1, -1))

    def exit_step(self, steps: int, g: torch.Generator) -> int:
        e = self.cfg.dmd.exit_step
        return draw_exit_step(steps, g) if e == "random" else min(int(e), steps - 1)

    def dmd(self, x: torch.Tensor, ctx, guidance: Guidance, step: int):
        """L_DMD on the student's clip x against each real score (the teacher, then `second_score` weighted),
        each drawing its noise levels from its own stream."""
        loss, stats = None, {}
        for r in self.scores:
            if r.form is None:
                real, fake = Denoiser.for_clip(r.teacher, ctx, guidance), Denoiser.for_clip(r.critic, ctx)
            else:
                real = teacher_forced(r.teacher, x, ctx, r.form, guidance)
                fake = teacher_forced(r.critic, x, ctx, r.form)
            term, term_stats = dmd_term(x, real, fake, self.levels, self.term_generator(step, r.stats_prefix + "dmd"))
            loss = r.weight * term if loss is None else loss + r.weight * term
            stats.update({r.stats_prefix + k: v for k, v in term_stats.items()})
        return loss, stats

    def critic_phase(self, phase: str, step: int, ctx: torch.Tensor, sample) -> tuple[torch.Tensor, dict]:
        """The flow denoising loss of the critic of `phase` on the student's no-grad sample of this step,
        `sample()` (rolled out once per step and micro-batch, shared by the critics), in its teacher's form.
        The first critic keeps drawing its noise from the rollout's generator; a second one has its own."""
        if self._critic_samples[0] != step:
            self._critic_samples = (step, {})
        samples = self._critic_samples[1]  # this step's, one per micro-batch
        if self._own not in samples:
            with torch.no_grad():
                x, g = sample()
            samples[self._own] = (x.detach(), g)
        x, g = samples[self._own]
        r = next(r for r in self.scores if r.phase == phase)
        if r.phase != "critic":
            g = generator(self.cfg.run.seed, step, phase, "rank", *self._own)
        return flow_denoising_loss(r.critic, x, ctx, levels=self.levels, generator=g, causal=r.form)

    def sc_transition(self) -> str:
        t = self.cfg.sc.transition
        return self.cfg.grid.transition if t == "student" else t

    def sc_form(self) -> SCForm:
        sc = self.cfg.sc
        return SCForm(sc.stop_grad, sc.normalise, sc.eps)

    def walk(self, grid: StepGrid) -> Walk:
        return Walk(grid, self.cfg.grid.transition)

    def draw_steps(self, g_shared: torch.Generator) -> int:
        """K of this iteration from grid.step_counts (with grid.step_probs when given) — the same on every rank."""
        g = self.cfg.grid
        return draw_step_count(g.step_counts, g_shared, weights=g.step_probs or None)

    def sc_on(self, K: int) -> bool:
        sc = self.cfg.sc
        return sc.weight > 0 and (not sc.step_counts or K in sc.step_counts)

    @property
    def released_sc(self) -> bool:
        """SC in the form of Salt's released code (on the exit forward) rather than ours (a rollout state)."""
        return self.cfg.sc.form != "semigroup"

    def shortcut_probe(self, chunks, step: int, shared: bool = True) -> ShortcutProbe:
        sc = self.cfg.sc
        return ShortcutProbe(chunks, sc.form, sc.time_rule, sc.num_segments, self.term_generator(step, "sc"),
                             shared=shared)

    def noise(self, batch: dict, g: torch.Generator) -> torch.Tensor:
        return draw((batch["context"].shape[0], *self.data.latent_shape), g, self.ctx.device)


class BidirectionalDistill(DistillTask):
    """dmd: the student's grid.timesteps; sc-dmd: a K-step grid (K from grid.step_counts) per step."""

    def grid_and_triplet(self, g_shared: torch.Generator):
        cfg = self.cfg
        if self.command != "sc-dmd":
            return student_grid(cfg), None
        K = self.draw_steps(g_shared)
        return StepGrid.uniform(K, cfg.grid.shift), sc_triplet(K, cfg.grid.shift, g_shared)

    def loss(self, phase: str, batch: dict, step: int):
        cfg = self.cfg
        g_shared, g = self.generators(step, phase, batch)
        ctx, guidance = self.contexts(batch)
        grid, trip = self.grid_and_triplet(g_shared)
        exit_step = self.exit_step(grid.steps, g_shared)
        noise = self.noise(batch, g)
        student = Denoiser.for_clip(self.student, ctx)
        if phase != "student":
            def sample():
                return rollout_bidirectional(student, noise, self.walk(grid), g, exit_step=exit_step, grad=False).x, g
            return self.critic_phase(phase, step, ctx, sample)
        sc_on = trip is not None and self.sc_on(grid.steps)
        ours = sc_on and not self.released_sc
        probe = self.shortcut_probe([ChunkSteps(self.walk(grid), exit_step)], step) if sc_on and not ours else None
        roll = rollout_bidirectional(student, noise, self.walk(grid), g, exit_step=exit_step,
                                     until=trip.index if ours else None,
                                     on_step=(lambda e: probe(0, e)) if probe is not None else None)
        loss, stats = self.dmd(roll.x, ctx, guidance, step)
        stats["exit_step"] = exit_step
        sc, sc_stats = None, {}
        if ours:
            sc, sc_stats = sc_term(student, roll.states[trip.index], trip, transition=self.sc_transition(),
                                   generator=self.term_generator(step, "sc"), form=self.sc_form())
        elif probe is not None:
            sc, sc_stats = probe.loss()
        if sc is not None:
            loss = loss + cfg.sc.weight * sc
            stats.update(sc_stats)
        return loss, stats


def run_distill(task_class: type, cfg: TrainConfig, command: str) -> dict:
    """Train a DistillTask subclass under the shared training loop."""
    def build_task(cfg, ctx):
        task = task_class(cfg, ctx, command)
        return task, task.data

    return run_training(cfg, command, build_task)


def run(cfg: TrainConfig, command: str = "dmd") -> dict:
    return run_distill(BidirectionalDistill, cfg, command)
