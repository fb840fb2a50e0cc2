"""Salt's released recipe inside our trainer: the endpoint SC on every gradient chunk's exit forward, one step list
and exit per rollout, and the TRD alignment against a no-grad reference rollout (docs/salt_release.md)."""
import os

import pytest
import torch

from _training_helpers import configs_dir, prompt_file, sets, tiny_teacher
from salt_core.kv_cache import CachePolicy
from salt_core.sampling import CausalSetup, Walk
from salt_core.schedules import StepGrid
from training.config_load import ConfigError, load_config
from training.data.loader import collate
from training.distributed import DistContext
from training.losses.shortcut import shortcut_consistency_loss, shortcut_times
from training.rollout import plan_chunks, rollout_ar
from training.rollout.released import NoiseRecord, ShortcutProbe, reference_rollout


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    return str(root), tiny_teacher(str(root / "teacher.safetensors")), prompt_file(str(root / "prompts.txt"))


def task_of(files, command: str, **overrides):
    from training.commands.dmd import BidirectionalDistill
    from training.commands.salt_ar import SaltARTask

    root, teacher, prompts = files
    base = dict(teacher__init=teacher, student__init="teacher", data__path=prompts, data__batch_size=2,
                run__device="cpu", run__output_dir=os.path.join(root, "run"), grid__step_counts="[4]",
                ar__fa_weight=0)
    base.update(overrides)
    name = {"salt-ar": "salt-ar.yaml", "sc-dmd": "sc-dmd.yaml"}[command]
    cfg = load_config(os.path.join(configs_dir(), name), sets(**base)[1::2])
    cls = SaltARTask if command == "salt-ar" else BidirectionalDistill
    task = cls(cfg, DistContext(), command)
    return task, collate([task.data.dataset[i] for i in range(2)])


def test_per_rollout_step_lists_share_one_k_and_one_exit_over_every_chunk(files):
    task, _ = task_of(files, "salt-ar", ar__step_lists="per_rollout", grid__step_counts="[8,4,2]",
                      grid__step_probs="[0.4,0.4,0.2]")
    seen = set()
    for s in range(20):
        chunks, _ = task.rollout_plan(torch.Generator().manual_seed(s))
        assert len({c.walk.steps for c in chunks}) == 1 and len({c.exit_step for c in chunks}) == 1
        seen.add(chunks[0].walk.steps)
    assert seen == {8, 4, 2}


def test_released_sc_is_taken_on_every_gradient_chunks_exit_forward(files):
    """The salt-ar loss with sc.form endpoint is DMD + λ·mean over chunks of the released SC of each chunk's own
    exit forward (state, flow, same KV cache); none when the exit is the list's last step."""
    task, batch = task_of(files, "salt-ar", ar__step_lists="per_rollout", sc__form="endpoint", sc__weight=0.2)
    for step in range(6):
        loss, stats = task.loss("student", batch, step)
        chunks, _ = task.rollout_plan(task.generators(step, "student", batch)[0])
        if chunks[0].exit_step == chunks[0].walk.steps - 1:
            assert "sc_loss" not in stats and loss.item() == pytest.approx(stats["dmd_loss"], rel=1e-6)
            continue
        assert stats["sc_chunks"] == task.chunks
        assert stats["sc_t_s"] == pytest.approx(chunks[0].walk.grid.timesteps[chunks[0].exit_step])
        assert loss.item() == pytest.approx(stats["dmd_loss"] + 0.2 * stats["sc_loss"], rel=1e-5)
        return
    pytest.fail("no draw with an exit before the last step in 6 steps")


def test_the_probe_equals_the_released_loss_computed_by_hand(tiny_dit):
    ctx, noise = torch.randn(1, 5, 32), torch.randn(1, 16, 4, 4, 4)
    setup = CausalSetup(tiny_dit, ctx, CachePolicy("window", window_frames=2), 2)
    chunks = plan_chunks([StepGrid.uniform(8, 5.0)] * 2, "renoise", exit_steps=[2, 2])
    states = {}

    def keep(c, e):
        if e.index == 2:
            states[c] = (e.x, e.v, e.denoiser)

    probe = ShortcutProbe(chunks, "endpoint", "segments", 4, torch.Generator().manual_seed(3))
    rollout_ar(setup.driver(noise), noise, chunks, torch.Generator().manual_seed(1),
               on_step=lambda c, e: (probe(c, e), keep(c, e)))
    loss, stats = probe.loss()
    t = shortcut_times(StepGrid.uniform(8, 5.0).timesteps, 2, generator=torch.Generator().manual_seed(3))
    by_hand = [shortcut_consistency_loss(x, v, lambda xm, tm, d=d: d.velocity(xm, tm / 1000), *t)[0]
               for x, v, d in (states[0], states[1])]
    assert stats["sc_chunks"] == 2 and (stats["sc_t_s"], stats["sc_t_m"], stats["sc_t_e"]) == t
    torch.testing.assert_close(loss, torch.stack(by_hand).mean())
    loss.backward()
    assert tiny_dit.blocks[0].self_attn.q.weight.grad.abs().sum() > 0


def test_an_aligned_reference_on_the_students_own_list_retraces_the_student_exactly(tiny_dit):
    """noise_aligned_b re-noises with the student's own draws at the student's levels: on the same list the
    reference rollout is the student's rollout, bit for bit; independent noise gives another sample."""
    ctx, noise = torch.randn(1, 5, 32), torch.randn(1, 16, 6, 4, 4)
    setup = CausalSetup(tiny_dit, ctx, CachePolicy("window", window_frames=2), 2)
    walk = Walk(StepGrid.uniform(4, 5.0))
    chunks = plan_chunks([walk.grid] * 3, "renoise", exit_steps=[2, 2, 2], grad_chunks=())
    record = NoiseRecord()
    with torch.no_grad():
        roll = rollout_ar(setup.driver(noise), noise, chunks, torch.Generator().manual_seed(4), on_step=record)
    same = reference_rollout(setup, noise, walk, 2, walk, "noise_aligned_b", record, torch.Generator().manual_seed(9))
    assert torch.equal(same, roll.x)
    other = reference_rollout(setup, noise, walk, 2, walk, "independent", record, torch.Generator().manual_seed(9))
    assert not torch.allclose(other, roll.x)
    finer = reference_rollout(setup, noise, Walk(StepGrid.uniform(2, 5.0)), 1, walk, "noise_aligned_b", record,
                              torch.Generator().manual_seed(9))
    assert finer.shape == roll.x.shape and torch.isfinite(finer).all()


def test_trd_adds_its_term_on_two_step_draws_through_the_frozen_teacher(files):
    task, batch = task_of(files, "salt-ar", ar__step_lists="per_rollout", grid__step_counts="[2]", sc__weight=0,
                          trd__weight=0.1, trd__block=1, trd__start_step=0)
    for step in range(8):
        loss, stats = task.loss("student", batch, step)
        if "trd_loss" in stats:
            assert stats["trd_reference_steps"] == 4
            assert loss.item() == pytest.approx(stats["dmd_loss"] + 0.1 * stats["trd_loss"], rel=1e-5)
            loss.backward()
            assert all(p.grad is None for p in task.teacher.parameters())
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in task.student.parameters())
            return
        assert "trd_loss" not in stats  # exit index 0: no reference, as released
    pytest.fail("no 2-step draw with a non-zero exit index in 8 steps")


def test_trd_settings_the_rollout_cannot_run_are_refused_before_any_weight_loads(files):
    with pytest.raises(ConfigError, match="trd.weight > 0 needs ar.step_lists: per_rollout"):
        task_of(files, "salt-ar", trd__weight=0.1, trd__block=1)
    with pytest.raises(ConfigError, match=r"trd.block=5 is outside the teacher's blocks 0..1"):
        task_of(files, "salt-ar", ar__step_lists="per_rollout", trd__weight=0.1, trd__block=5)


def test_bidirectional_sc_dmd_takes_the_released_sc_on_its_exit_forward(files):
    task, batch = task_of(files, "sc-dmd", sc__form="endpoint", sc__weight=0.5, grid__step_counts="[8]",
                          sc__step_counts="[8]")
    for step in range(6):
        loss, stats = task.loss("student", batch, step)
        if "sc_loss" in stats:
            assert stats["sc_chunks"] == 1
            assert loss.item() == pytest.approx(stats["dmd_loss"] + 0.5 * stats["sc_loss"], rel=1e-5)
            return
    pytest.fail("no SC term in 6 steps")


def test_micro_batches_of_one_step_share_the_step_list_and_draw_their_own_noise(files):
    """With optim.accumulation, every micro-batch of a step keeps the step's K / exit (one list per iteration)
    but gets its own noise and DMD level — not the same draws N times over."""
    from training.trainer import micro_batches

    task, batch = task_of(files, "salt-ar", ar__step_lists="per_rollout", sc__weight=0, grid__step_counts="[4,2]")
    a, b = micro_batches(batch, 2)
    plans = [task.rollout_plan(task.generators(3, "student", part)[0])[0] for part in (a, b)]
    assert [(c.walk.steps, c.exit_step) for c in plans[0]] == [(c.walk.steps, c.exit_step) for c in plans[1]]
    noises = [task.noise(part, task.generators(3, "student", part)[1]) for part in (a, b)]
    assert not torch.equal(noises[0], noises[1])
    _, sa = task.loss("student", a, 3)
    _, sb = task.loss("student", b, 3)
    assert sa["exit_step_current"] == sb["exit_step_current"] and sa["dmd_t_mean"] != sb["dmd_t_mean"]
