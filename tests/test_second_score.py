"""`second_score`: a second frozen teacher with its own critic beside the teacher's (training/commands/dmd.py).
The student's loss is L_DMD(teacher) + λ·L_DMD(second), each score in its own form (whole clips, or chunk by
chunk given the clean past for an AR teacher); both critics learn from one student sample per step; the run
resumes bit for bit; wrong combinations are refused before any weights load."""
from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from salt_core.config import SamplingDefaults
from salt_core.kv_cache import CachePolicy
from training.checkpoint import checkpoint_path, load_checkpoint
from training.commands import dmd as dmd_command
from training.losses.critic import CausalTraining
from training.metrics import read_metrics

from _tiny_pipeline import config
from _training_helpers import _one_thread, prompt_file, quiet, run, sets, tiny_teacher  # noqa: F401
from test_training_errors import error_of, no_compute  # noqa: F401
from test_training_resume import compare_states, metrics_without_time

AR_SAMPLING = SamplingDefaults(causal=True, chunk_frames=1, cache=CachePolicy("window", window_frames=2))
AR_FORM = CausalTraining(1, "teacher_forcing", AR_SAMPLING.cache)


@pytest.fixture
def teachers(tmp_path):
    return {"bi": tiny_teacher(str(tmp_path / "bi.safetensors")),
            "ar": tiny_teacher(str(tmp_path / "ar.safetensors"), seed=3, sampling=AR_SAMPLING),
            "prompts": prompt_file(str(tmp_path / "p.txt"))}


def two_score_args(teachers, command: str, weight: float = 0.5, **extra) -> list[str]:
    """The bidirectional teacher first, the AR teacher second (scored chunk by chunk)."""
    kv = dict(teacher__init=teachers["bi"], student__init=teachers["bi"], data__path=teachers["prompts"],
              dmd__student_every=2,
              second_score__weight=weight, second_score__teacher__init=teachers["ar"],
              second_score__teacher__causal="true", second_score__critic__causal="true")
    if command == "salt-ar":
        kv.update(student__causal="true", grid__step_counts="[4,2]", ar__cache_step_counts="[4,2]",
                  ar__fa_high_steps=4)
    kv.update(extra)
    return sets(**kv)


@pytest.mark.parametrize("command", ["dmd", "salt-ar"])
def test_both_scores_train_and_their_critics_learn_in_their_teachers_form(tmp_path, monkeypatch, teachers, command):
    critic_calls, whole, forced = [], [], []
    real_loss, real_forced, real_for_clip = dmd_command.flow_denoising_loss, dmd_command.teacher_forced, \
        dmd_command.Denoiser.for_clip

    def spy_loss(model, x, *a, causal=None, **kw):
        critic_calls.append((model, x.clone(), causal))
        return real_loss(model, x, *a, causal=causal, **kw)

    def spy_forced(model, clean, ctx, scoring, *rest):
        forced.append((model, scoring))
        return real_forced(model, clean, ctx, scoring, *rest)

    def spy_for_clip(model, *a, **kw):
        whole.append(model)
        return real_for_clip(model, *a, **kw)

    monkeypatch.setattr(dmd_command, "flow_denoising_loss", spy_loss)
    monkeypatch.setattr(dmd_command, "teacher_forced", spy_forced)
    monkeypatch.setattr(dmd_command.Denoiser, "for_clip", staticmethod(spy_for_clip))
    out = str(tmp_path / "run")
    assert run(command, config(command), *two_score_args(teachers, command), *quiet(out, 2)) == 0

    # every step trains the teacher's critic on whole clips, then the second critic by teacher forcing under
    # the AR teacher's recorded chunks and policy, on the very same student sample
    assert [c for _, _, c in critic_calls] == [None, AR_FORM, None, AR_FORM]
    assert critic_calls[0][0] is not critic_calls[1][0]
    for first, second in (critic_calls[0:2], critic_calls[2:4]):
        assert torch.equal(first[1], second[1])
    assert not torch.equal(critic_calls[0][1], critic_calls[2][1])  # a fresh sample each step
    # the student's step (step 0) scores against both: the teacher and its critic on whole clips, the second
    # teacher and its critic through teacher forcing in the second teacher's form
    first_critic, second_critic = critic_calls[0][0], critic_calls[1][0]
    assert first_critic in whole and second_critic not in whole
    assert [m for m, _ in forced] == [m for m, _ in forced if m is not first_critic] and len(forced) == 2
    assert forced[1][0] is second_critic and forced[0][0] not in whole and all(f == AR_FORM for _, f in forced)
    frozen_whole = {id(m) for m in whole if not any(p.requires_grad for p in m.parameters())}
    assert len(frozen_whole) == 1 and id(forced[0][0]) not in frozen_whole  # the teacher, not the second one

    state = load_checkpoint(checkpoint_path(out, 2))
    assert set(state["nets"]) == {"student", "critic", "critic2"}
    for net in ("critic", "critic2"):
        assert state["nets"][net]["updates"] == 2
    row = read_metrics(os.path.join(out, "metrics.jsonl"))[0]
    assert {"student/dmd_loss", "student/second_dmd_loss", "critic2/loss"} <= set(row)


def test_the_students_loss_is_the_first_term_plus_lambda_times_the_second(tmp_path, teachers):
    out = str(tmp_path / "run")
    assert run("dmd", config("dmd"), *two_score_args(teachers, "dmd", weight=0.25), *quiet(out, 1)) == 0
    row = read_metrics(os.path.join(out, "metrics.jsonl"))[0]
    assert row["student/second_dmd_loss"] > 0 and row["student/dmd_loss"] > 0
    want = row["student/dmd_loss"] + 0.25 * row["student/second_dmd_loss"]
    assert row["student/loss"] == pytest.approx(want, rel=1e-5)


def test_a_zero_weight_leaves_the_run_as_it_was(tmp_path, teachers):
    """second_score off (weight 0, its teacher still named) trains exactly the one-score run: no second
    critic, the same draws."""
    plain, off = str(tmp_path / "plain"), str(tmp_path / "off")
    base = sets(teacher__init=teachers["bi"], student__init=teachers["bi"], data__path=teachers["prompts"],
                dmd__student_every=2)
    assert run("dmd", config("dmd"), *base, *quiet(plain, 2)) == 0
    assert run("dmd", config("dmd"), *two_score_args(teachers, "dmd", weight=0.0), *quiet(off, 2)) == 0
    a, b = load_checkpoint(checkpoint_path(plain, 2)), load_checkpoint(checkpoint_path(off, 2))
    assert set(b["nets"]) == {"student", "critic"}
    compare_states(a, b)


def test_a_two_score_run_resumes_bit_for_bit(tmp_path, teachers):
    args = two_score_args(teachers, "salt-ar", ema__start_step=1, optim__student__lr=1e-3,
                          optim__critic__lr=1e-3, run__save_every=100)
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    assert run("salt-ar", config("salt-ar"), *args, *quiet(straight, 4)) == 0
    assert run("salt-ar", config("salt-ar"), *args, *quiet(split, 2)) == 0
    assert run("salt-ar", config("salt-ar"), *args, *quiet(split, 4)) == 0
    compare_states(load_checkpoint(checkpoint_path(straight, 4)), load_checkpoint(checkpoint_path(split, 4)))
    assert metrics_without_time(os.path.join(straight, "metrics.jsonl")) == \
        metrics_without_time(os.path.join(split, "metrics.jsonl"))


def test_second_score_mistakes_are_named_before_weights_load(tmp_path, capsys, no_compute, teachers):
    msg = error_of(capsys, "dmd", config("dmd"), *two_score_args(teachers, "dmd", second_score__teacher__init=""))
    assert "second_score.teacher.init is empty" in msg
    msg = error_of(capsys, "dmd", config("dmd"),
                   *two_score_args(teachers, "dmd", second_score__teacher__init=teachers["bi"],
                                   second_score__teacher__causal="false", second_score__critic__causal="false"))
    assert "is the teacher itself" in msg
    msg = error_of(capsys, "dmd", config("dmd"),
                   *two_score_args(teachers, "dmd", second_score__teacher__causal="false",
                                   second_score__critic__causal="false"))
    assert f"second_score.teacher.init {teachers['ar']} is an AR teacher" in msg
    assert "set second_score.teacher.causal: true" in msg
    msg = error_of(capsys, "dmd", config("dmd"), *two_score_args(teachers, "dmd", second_score__critic__causal="false"))
    assert "second_score.critic.causal must be true" in msg
    wide = tiny_teacher(str(tmp_path / "wide.safetensors"), sampling=AR_SAMPLING,
                        config=dataclasses.replace(dmd_command.checkpoint_config(teachers["bi"]), text_dim=48))
    msg = error_of(capsys, "dmd", config("dmd"), *two_score_args(teachers, "dmd", second_score__teacher__init=wide))
    assert "text_dim differs" in msg and "second_score.teacher=48" in msg


def test_with_gradient_accumulation_each_micro_batch_shares_its_sample_between_the_critics(tmp_path, monkeypatch,
                                                                                           teachers):
    samples = []
    real_loss = dmd_command.flow_denoising_loss

    def spy_loss(model, x, *a, causal=None, **kw):
        samples.append((causal, x.clone()))
        return real_loss(model, x, *a, causal=causal, **kw)

    monkeypatch.setattr(dmd_command, "flow_denoising_loss", spy_loss)
    args = two_score_args(teachers, "dmd", data__batch_size=2, optim__accumulation=2, dmd__student_every=5)
    assert run("dmd", config("dmd"), *args, *quiet(str(tmp_path / "run"), 2)) == 0
    assert [c for c, _ in samples] == [None, None, AR_FORM, AR_FORM] * 2  # per step: critic's parts, critic2's
    for step in (samples[0:4], samples[4:8]):
        (_, a0), (_, a1), (_, b0), (_, b1) = step
        assert a0.shape[0] == 1 and torch.equal(a0, b0) and torch.equal(a1, b1) and not torch.equal(a0, a1)


def test_a_long_rollout_is_scored_on_its_last_clip_and_its_earlier_chunks_carry_no_gradient(tmp_path, monkeypatch,
                                                                                          teachers):
    """ar.rollout_frames (streaming long tuning): the student streams 3x the data's latent frames under its cache
    policy; both scores and both critics see the last T frames only; the chunks before them run without grad."""
    from training.commands import salt_ar as salt_ar_command

    rolled, scored = [], []
    real_rollout, real_loss = salt_ar_command.rollout_ar, dmd_command.flow_denoising_loss

    def spy_rollout(driver, noise, chunks, *a, **kw):
        rolled.append((noise.shape[2], [c.grad for c in chunks], torch.is_grad_enabled()))
        return real_rollout(driver, noise, chunks, *a, **kw)

    def spy_loss(model, x, *a, **kw):
        scored.append(x.shape[2])
        return real_loss(model, x, *a, **kw)

    monkeypatch.setattr(salt_ar_command, "rollout_ar", spy_rollout)
    monkeypatch.setattr(dmd_command, "flow_denoising_loss", spy_loss)
    spy_term_shapes = []
    real_term = dmd_command.dmd_term
    monkeypatch.setattr(dmd_command, "dmd_term", lambda x, *a, **kw: spy_term_shapes.append(x.shape[2])
                        or real_term(x, *a, **kw))
    args = two_score_args(teachers, "salt-ar", data__latent_shape="[3,4,4]", ar__chunk_frames=1,
                          ar__cache="{kind: sink_window, sink_frames: 1, window_frames: 1}", ar__rollout_frames=9,
                          ar__fa_weight=0)
    assert run("salt-ar", config("salt-ar"), *args, *quiet(str(tmp_path / "run"), 2)) == 0
    student = [r for r in rolled if r[2]]
    assert student and all(n == 9 and grads == [False] * 6 + [True] * 3 for n, grads, _ in student)
    assert all(n == 9 for n, _, _ in rolled)
    assert scored and set(scored) == {3} and set(spy_term_shapes) == {3}


def test_long_rollout_mistakes_are_named_before_weights_load(tmp_path, capsys, no_compute, teachers):
    base = dict(data__latent_shape="[3,4,4]", ar__chunk_frames=1, ar__fa_weight=0)
    msg = error_of(capsys, "salt-ar", config("salt-ar"), *two_score_args(teachers, "salt-ar", ar__rollout_frames=2,
                                                                          **base))
    assert "ar.rollout_frames=2 must be at least data.latent_shape's 3 latent frames" in msg
    msg = error_of(capsys, "salt-ar", config("salt-ar"),
                   *two_score_args(teachers, "salt-ar", ar__rollout_frames=9, sc__form="endpoint", **base))
    assert "sc.form: semigroup" in msg
    msg = error_of(capsys, "dmd", config("dmd"), *two_score_args(teachers, "dmd", ar__rollout_frames=6))
    assert "ar.rollout_frames=6 streams a causal student" in msg and "`dmd` rolls out whole clips" in msg
