"""DMD against an AR teacher: every chunk scored given its clean past, by the teacher and by a critic trained the
same way (training/losses/causal_score.py), and the trainer's checks that teacher, critic and checkpoint agree."""
from __future__ import annotations

import pytest
import torch

from salt_core.config import SamplingDefaults
from salt_core.kv_cache import CachePolicy
from salt_core.sampling import Guidance
from training.commands import dmd as dmd_command
from training.losses.causal_score import teacher_forced
from training.losses.critic import CausalTraining

from conftest import rel_err
from _tiny_pipeline import config
from _training_helpers import _one_thread, prompt_file, quiet, run, sets, tiny_teacher  # noqa: F401
from test_training_errors import error_of, no_compute  # noqa: F401

POLICIES = [CachePolicy("full"), CachePolicy("window", window_frames=2),
            CachePolicy("sink_window", sink_frames=1, window_frames=2)]


def cached_x0(model, clean, x_t, sigma, ctx, policy, F, guidance=Guidance()):
    """The oracle: chunk-by-chunk inference whose cache holds the clean chunks; x̂0 = x_t − σ·v (with CFG)."""
    B, T, HW = clean.shape[0], clean.shape[2], tuple(clean.shape[3:])
    caches = []
    for prompt in [ctx] + ([guidance.negative] if guidance.active else []):
        cache = model.new_cache(policy, batch=B, latent_hw=HW, chunk_frames=F)
        model.set_prompt(cache, prompt)
        caches.append(cache)
    t = (1000.0 * sigma).view(B, 1).expand(B, F)
    out = []
    for c in range(T // F):
        idx = list(range(c * F, (c + 1) * F))
        vs = [model.forward_chunk(x_t[:, :, idx], t, cache, idx) for cache in caches]
        v = guidance.combine(vs[0], vs[1] if len(vs) > 1 else None)
        out.append(x_t[:, :, idx] - sigma.view(B, 1, 1, 1, 1) * v)
        for cache in caches:
            model.forward_chunk(clean[:, :, idx], torch.zeros(B), cache, idx, commit=True)
    return torch.cat(out, 2)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_teacher_forced_x0_equals_cached_generation_from_the_clean_past(tiny_dit, policy, scale):
    F, T, HW, B = 2, 6, (4, 4), 2
    g = torch.Generator().manual_seed(1)
    clean, x_t = torch.randn(B, 16, T, *HW, generator=g), torch.randn(B, 16, T, *HW, generator=g)
    ctx, neg = torch.randn(B, 5, 32, generator=g), torch.randn(B, 5, 32, generator=g)
    sigma = torch.tensor([0.8, 0.3])
    guidance = Guidance(scale, neg) if scale != 1.0 else Guidance()
    with torch.no_grad():
        got = teacher_forced(tiny_dit, clean, ctx, CausalTraining(F, "teacher_forcing", policy), guidance).x0(x_t, sigma)
        want = cached_x0(tiny_dit, clean, x_t, sigma, ctx, policy, F, guidance)
    assert rel_err(got, want) < 1e-5


def test_a_chunk_is_scored_from_its_own_noise_and_the_clean_past_only(tiny_dit):
    F, T = 2, 6
    g = torch.Generator().manual_seed(2)
    clean, x_t, ctx = torch.randn(1, 16, T, 4, 4, generator=g), torch.randn(1, 16, T, 4, 4, generator=g), \
        torch.randn(1, 5, 32, generator=g)
    scoring, sigma = CausalTraining(F, "teacher_forcing", CachePolicy("full")), torch.tensor([0.7])

    def x0(c, x):
        with torch.no_grad():
            return teacher_forced(tiny_dit, c, ctx, scoring).x0(x, sigma)

    base = x0(clean, x_t)
    later_clean, later_noise, first_clean = clean.clone(), x_t.clone(), clean.clone()
    later_clean[:, :, 2:] += 1.0   # the clean sample from chunk 1 on
    later_noise[:, :, 2:] += 1.0   # the noisy copy from chunk 1 on
    first_clean[:, :, :2] += 1.0   # the clean chunk 0
    assert torch.equal(x0(later_clean, x_t)[:, :, :2], base[:, :, :2])
    assert torch.equal(x0(clean, later_noise)[:, :, :2], base[:, :, :2])
    moved = x0(first_clean, x_t)
    assert torch.equal(moved[:, :, :2], base[:, :, :2])  # chunk 0's own clean copy is not its context
    assert (moved[:, :, 2:] - base[:, :, 2:]).abs().max() > 1e-3  # but it is chunk 1's and 2's past


def test_teacher_forced_refuses_a_clip_the_chunks_do_not_fill(tiny_dit):
    with pytest.raises(ValueError, match="5 latent frames are not a multiple of the teacher's chunk_frames=2"):
        teacher_forced(tiny_dit, torch.zeros(1, 16, 5, 4, 4), torch.zeros(1, 5, 32),
                       CausalTraining(2, "teacher_forcing", CachePolicy("full")))


AR_SAMPLING = SamplingDefaults(causal=True, chunk_frames=1, cache=CachePolicy("window", window_frames=2))


def distill_args(tmp_path, teacher: str, **extra) -> list[str]:
    prompts = prompt_file(str(tmp_path / "p.txt"))
    return sets(teacher__init=teacher, data__path=prompts, dmd__student_every=2, **extra)


@pytest.mark.parametrize("command", ["dmd", "salt-ar"])
def test_an_ar_teacher_and_its_critic_score_chunk_by_chunk_in_training(tmp_path, monkeypatch, command):
    """A dmd (bidirectional student) and a salt-ar run against an AR teacher: the critic is trained by teacher
    forcing under the teacher's recorded chunks and cache policy, and both scores run the teacher-forcing pass."""
    teacher = tiny_teacher(str(tmp_path / "ar.safetensors"), sampling=AR_SAMPLING)
    critic_forms, scored = [], []
    real_loss, real_forced = dmd_command.flow_denoising_loss, dmd_command.teacher_forced

    def spy_loss(*a, causal=None, **kw):
        critic_forms.append(causal)
        return real_loss(*a, causal=causal, **kw)

    def spy_forced(model, clean, ctx, scoring, *rest):
        scored.append((model, scoring))
        return real_forced(model, clean, ctx, scoring, *rest)

    monkeypatch.setattr(dmd_command, "flow_denoising_loss", spy_loss)
    monkeypatch.setattr(dmd_command, "teacher_forced", spy_forced)
    extra = dict(student__init=teacher, teacher__causal="true", critic__causal="true")
    if command == "salt-ar":
        extra.update(student__causal="true", grid__step_counts="[4,2]", ar__cache_step_counts="[4,2]",
                     ar__fa_high_steps=4)
    else:
        extra.update(student__init=tiny_teacher(str(tmp_path / "bi.safetensors"), seed=1))
    assert run(command, config(command), *distill_args(tmp_path, teacher, **extra), *quiet(str(tmp_path / "run"), 2)) == 0
    assert critic_forms and all(c == CausalTraining(1, "teacher_forcing", AR_SAMPLING.cache) for c in critic_forms)
    assert len(scored) >= 2 and all(s == CausalTraining(1, "teacher_forcing", AR_SAMPLING.cache) for _, s in scored)
    assert len({id(m) for m, _ in scored}) == 2  # the teacher and the critic


def test_teacher_and_critic_forms_must_agree_with_the_checkpoint(tmp_path, capsys, no_compute):
    ar = tiny_teacher(str(tmp_path / "ar.safetensors"), sampling=AR_SAMPLING)
    bi = tiny_teacher(str(tmp_path / "bi.safetensors"))
    msg = error_of(capsys, "dmd", None, *distill_args(tmp_path, ar, data__latent_shape="[3,4,4]"))
    assert f"teacher.init {ar} is an AR teacher" in msg and "set teacher.causal: true" in msg
    msg = error_of(capsys, "dmd", None, *distill_args(tmp_path, bi, data__latent_shape="[3,4,4]",
                                                      teacher__causal="true", critic__causal="true"))
    assert f"teacher.init {bi} records a bidirectional model" in msg
    msg = error_of(capsys, "dmd", None, *distill_args(tmp_path, ar, data__latent_shape="[3,4,4]",
                                                      teacher__causal="true"))
    assert "critic.causal must be true" in msg
    msg = error_of(capsys, "dmd", None, *distill_args(tmp_path, bi, data__latent_shape="[3,4,4]",
                                                      critic__causal="true"))
    assert "critic.causal must be false with a bidirectional teacher" in msg
    unknown = tiny_teacher(str(tmp_path / "nocache.safetensors"), sampling=SamplingDefaults(causal=True, chunk_frames=1))
    msg = error_of(capsys, "dmd", None, *distill_args(tmp_path, unknown, data__latent_shape="[3,4,4]",
                                                      teacher__causal="true", critic__causal="true"))
    assert "records no cache policy" in msg


def test_trd_needs_a_bidirectional_teacher(tmp_path, capsys, no_compute):
    ar = tiny_teacher(str(tmp_path / "ar.safetensors"), sampling=AR_SAMPLING)
    msg = error_of(capsys, "salt-ar", config("salt-ar"),
                   *distill_args(tmp_path, ar, teacher__causal="true", critic__causal="true", trd__weight=1.0,
                                 ar__step_lists="per_rollout"))
    assert "trd.weight > 0 needs a bidirectional teacher" in msg
