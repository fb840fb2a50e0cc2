"""Training rollouts: gradient only through the exit-step forward, reproducible from a seed."""
import pytest
import torch

from salt_core.kv_cache import CachePolicy
from salt_core.sampling import CausalSetup, ChunkLayout, Denoiser, Walk, draw, sample_ar, seeded_generator
from salt_core.schedules import StepGrid
from training.rollout import (draw_step_count, mixed_step_grids, plan_chunks, rollout_ar,
                              rollout_bidirectional)

F, T, HW = 2, 6, (4, 4)  # 3 chunks of 2 latent frames, 2x2 tokens per frame


class ForwardLog:
    """Records, for every model forward (the head runs once per forward), whether it built a graph."""

    def __init__(self, model):
        self.graph = []
        self.handle = model.head.register_forward_hook(lambda m, i, o: self.graph.append(o.requires_grad))

    def close(self):
        self.handle.remove()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def walk(K, transition="renoise"):
    return Walk(StepGrid.uniform(K, 5.0), transition)


def bi(model, ctx):
    return Denoiser.for_clip(model, ctx)


def ar_driver(model, noise, ctx, policy=CachePolicy()):
    return CausalSetup(model, ctx, policy, F).driver(noise)


def test_bidirectional_rollout_has_one_graph_forward_at_the_exit_step(tiny_dit):
    log = ForwardLog(tiny_dit)
    roll = rollout_bidirectional(bi(tiny_dit, torch.randn(1, 5, 32)), torch.randn(1, 16, 2, *HW), walk(4), gen(),
                                 exit_step=2)
    assert log.graph == [False, False, True]
    assert roll.x.requires_grad and sorted(roll.states) == [0, 1, 2]
    roll.x.square().mean().backward()
    assert tiny_dit.patch_embedding.weight.grad.abs().sum() > 0


def test_bidirectional_rollout_records_states_past_the_exit_without_gradient(tiny_dit):
    log = ForwardLog(tiny_dit)
    roll = rollout_bidirectional(bi(tiny_dit, torch.randn(1, 5, 32)), torch.randn(1, 16, 2, *HW), walk(4), gen(),
                                 exit_step=0, until=3)
    assert log.graph == [True, False, False, False]
    assert sorted(roll.states) == [0, 1, 2, 3] and roll.exit_step == 0


def test_bidirectional_rollout_is_reproducible_from_a_seed(tiny_dit):
    args = (bi(tiny_dit, torch.randn(1, 5, 32)), torch.randn(1, 16, 2, *HW), walk(4))
    a, b = rollout_bidirectional(*args, gen(5)), rollout_bidirectional(*args, gen(5))
    assert a.exit_step == b.exit_step and torch.equal(a.x, b.x)
    exits = {rollout_bidirectional(*args, gen(s), grad=False).exit_step for s in range(30)}
    assert exits == {0, 1, 2, 3}


def test_ar_rollout_carries_gradient_only_on_each_chunks_exit_forward(tiny_dit):
    calls = []
    orig = tiny_dit.forward_chunk

    def spy(x, t, cache, idx, commit=False, **kw):
        v = orig(x, t, cache, idx, commit=commit, **kw)
        calls.append((idx[0] // F, commit, v.requires_grad))
        return v

    tiny_dit.forward_chunk = spy
    noise = torch.randn(1, 16, T, *HW)
    driver = ar_driver(tiny_dit, noise, torch.randn(1, 5, 32), CachePolicy("window", window_frames=2))
    roll = rollout_ar(driver, noise, plan_chunks([walk(4).grid] * 3, "renoise", exit_steps=[3, 0, 2]), gen(1))
    del tiny_dit.forward_chunk
    for c, exit_step in enumerate([3, 0, 2]):
        denoise = [g for ch, commit, g in calls if ch == c and not commit]
        assert denoise == [i == exit_step for i in range(exit_step + 1)]
    commits = [(ch, g) for ch, commit, g in calls if commit]
    assert commits == [(0, False), (1, False)]  # context passes without gradient; last chunk left for SC / FA
    roll.x.square().mean().backward()  # later in-place cache writes did not break the earlier graphs
    assert tiny_dit.blocks[0].self_attn.q.weight.grad.abs().sum() > 0


def test_ar_rollout_gradient_chunks_and_default_exits(tiny_dit):
    log = ForwardLog(tiny_dit)
    grids = [StepGrid.uniform(2, 5.0), StepGrid.uniform(8, 5.0), StepGrid.uniform(4, 5.0)]
    noise = torch.randn(1, 16, T, *HW)
    chunks = plan_chunks(grids, "renoise", gen(2), grad_chunks={2})
    roll = rollout_ar(ar_driver(tiny_dit, noise, torch.randn(1, 5, 32)), noise, chunks, gen(2), commit_last=True,
                      until_last=3)
    assert [c.exit_step for c in roll.chunks[:2]] == [1, 7]  # context chunks: full K_c-step samples
    assert [c.grad for c in roll.chunks] == [False, False, True]
    assert sum(log.graph) == 1  # a single graph forward in the whole rollout
    assert sorted(roll.chunks[2].states) == [0, 1, 2, 3]
    assert roll.driver.cache.valid_frames == T


def test_ar_rollout_is_reproducible_from_a_seed(tiny_dit):
    noise, ctx = torch.randn(1, 16, T, *HW), torch.randn(1, 5, 32)
    policy = CachePolicy("sink_window", sink_frames=1, window_frames=2)

    def roll(seed, **kw):
        g = gen(seed)
        chunks = plan_chunks([walk(4).grid] * 3, "renoise", g, **kw)
        return rollout_ar(ar_driver(tiny_dit, noise, ctx, policy), noise, chunks, g)

    a, b, c = roll(11), roll(11), roll(12)
    assert [x.exit_step for x in a.chunks] == [x.exit_step for x in b.chunks]
    assert torch.equal(a.x, b.x)
    assert not torch.equal(a.x, c.x)
    same = roll(3, same_exit=True)
    assert len({x.exit_step for x in same.chunks}) == 1


@pytest.mark.parametrize("policy", [CachePolicy("full"), CachePolicy("window", window_frames=2)])
def test_full_step_ar_rollout_equals_the_inference_sampler(tiny_dit, policy):
    """With every step taken (exit = K−1) and the ODE transition, training sees what inference makes."""
    ctx, seed = torch.randn(1, 5, 32), 9
    ref = sample_ar(tiny_dit, ctx, layout=ChunkLayout(T, HW, F), walk=walk(4, "ode"), policy=policy, seed=seed)
    g = seeded_generator(seed)
    noise = torch.cat([draw((1, 16, F, *HW), g, "cpu") for _ in range(T // F)], dim=2)
    with torch.no_grad():
        chunks = plan_chunks([walk(4).grid] * 3, "ode", exit_steps=[3, 3, 3], grad_chunks=())
        roll = rollout_ar(ar_driver(tiny_dit, noise, ctx, policy), noise, chunks)
    assert torch.equal(roll.x, ref)


def test_mixed_step_grids_draw_previous_chunks_from_the_choices():
    counts = {draw_step_count((8, 4, 2), gen(s)) for s in range(40)}
    assert counts == {8, 4, 2}
    grids = mixed_step_grids(5, choices=(8, 4, 2), generator=gen(0), current=4)
    assert len(grids) == 5 and grids[-1] == StepGrid.uniform(4, 5.0)
    assert all(g.steps in (8, 4, 2) for g in grids)
    assert draw_step_count((8, 4, 2), gen(0), weights=[0, 0, 1]) == 2


def test_bad_rollout_arguments_are_named(tiny_dit):
    with pytest.raises(ValueError, match="exit step 2 is outside"):
        rollout_bidirectional(bi(tiny_dit, torch.randn(1, 5, 32)), torch.randn(1, 16, 2, *HW), walk(2), exit_step=2)
    noise = torch.randn(1, 16, T, *HW)
    with pytest.raises(ValueError, match="chunk plans for 3 chunks"):
        rollout_ar(ar_driver(tiny_dit, noise, torch.randn(1, 5, 32)), noise,
                   plan_chunks([walk(2).grid] * 2, "renoise", gen()), gen())
    with pytest.raises(ValueError, match="chunk_frames"):
        ar_driver(tiny_dit, torch.randn(1, 16, 5, *HW), torch.randn(1, 5, 32))


# ---- the salt-ar task's real student loss ---------------------------------------------------------------

@pytest.fixture(scope="module")
def salt_ar_files(tmp_path_factory):
    from _training_helpers import prompt_file, tiny_teacher

    root = tmp_path_factory.mktemp("salt_ar")
    return str(root), tiny_teacher(str(root / "teacher.safetensors")), prompt_file(str(root / "prompts.txt"))


def salt_ar_student_loss(files, sc_weight: float, fa_weight: float):
    """Build the salt-ar task as the trainer does (its example config, shrunk) and return its student-phase
    (loss, stats, task) on the first two prompts at step 0."""
    import os

    from _training_helpers import configs_dir, sets
    from training.commands.salt_ar import SaltARTask
    from training.config_load import load_config
    from training.data.loader import collate
    from training.distributed import DistContext

    root, teacher, prompts = files
    overrides = sets(teacher__init=teacher, student__init="teacher", data__path=prompts, data__batch_size=2,
                     run__device="cpu", run__output_dir=os.path.join(root, "run"), grid__step_counts="[4,2]",
                     ar__cache_step_counts="[2]", ar__fa_high_steps=4, ar__fa_layers="[1]", ar__fa_x0="true",
                     sc__weight=sc_weight, ar__fa_weight=fa_weight)[1::2]  # the KEY=VALUE strings
    cfg = load_config(os.path.join(configs_dir(), "salt-ar.yaml"), overrides)
    task = SaltARTask(cfg, DistContext(), "salt-ar")
    batch = collate([task.data.dataset[i] for i in range(2)])
    loss, stats = task.loss("student", batch, 0)
    return loss, stats, task


def test_salt_ar_loss_is_dmd_plus_weighted_sc_and_feature_alignment(salt_ar_files):
    """sc.weight and ar.fa_weight each add their term, scaled by the weight, to the task's real loss; with
    both 0 the loss is the DMD term alone."""
    def value(sc, fa):
        loss, stats, _ = salt_ar_student_loss(salt_ar_files, sc, fa)
        assert loss.ndim == 0 and torch.isfinite(loss)
        return loss.item(), stats

    dmd_only, s0 = value(0.0, 0.0)
    assert dmd_only == pytest.approx(s0["dmd_loss"], rel=1e-6)
    assert not any(k.startswith(("sc_", "fa_")) for k in s0)  # neither term was computed

    with_fa, s_fa = value(0.0, 1.0)
    with_fa2, _ = value(0.0, 2.0)
    assert s_fa["dmd_loss"] == s0["dmd_loss"]  # FA is drawn after DMD: the same DMD sample
    assert s_fa["fa_loss"] > 0 and with_fa != dmd_only
    assert with_fa - dmd_only == pytest.approx(s_fa["fa_loss"], rel=1e-5)
    assert with_fa2 - dmd_only == pytest.approx(2 * (with_fa - dmd_only), rel=1e-5)  # linear in ar.fa_weight

    with_sc, s_sc = value(0.5, 0.0)
    assert s_sc["dmd_loss"] == s0["dmd_loss"]  # each term draws from its own stream: ablations stay paired
    assert s_sc["sc_loss"] > 0 and with_sc != dmd_only
    assert with_sc == pytest.approx(s_sc["dmd_loss"] + 0.5 * s_sc["sc_loss"], rel=1e-5)
    assert s_sc["sc_steps"] in (4, 2) and not any(k.startswith("fa_") for k in s_sc)

    both, s_both = value(0.5, 1.0)
    assert both == pytest.approx(s_both["dmd_loss"] + 0.5 * s_both["sc_loss"] + s_both["fa_loss"], rel=1e-5)


def test_salt_ar_loss_trains_only_the_student_and_each_term_reaches_it(salt_ar_files):
    def student_grad(sc, fa):
        loss, _, task = salt_ar_student_loss(salt_ar_files, sc, fa)
        loss.backward()
        assert all(p.grad is None for p in task.teacher.parameters())
        assert all(p.grad is None for p in task.critic.parameters())
        grad = torch.cat([p.grad.flatten() for p in task.student.parameters() if p.grad is not None])
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0
        return grad

    # Changing a non-zero weight keeps every random draw (turning SC on records rollout states, which draws
    # more noise), so a gradient difference here is the term's own gradient.
    assert not torch.allclose(student_grad(1.0, 0.0), student_grad(0.5, 0.0))  # the SC term has a gradient
    assert not torch.allclose(student_grad(0.0, 2.0), student_grad(0.0, 1.0))  # the FA term has a gradient


def test_salt_ar_trains_the_students_prompt_path(salt_ar_files):
    """The prompt's cross-attention K/V are computed with gradient in the student's rollout, so the text embedding
    and the cross-attention K/V projections learn (they are reused by every chunk forward; an exit forward with
    gradient reaches them)."""
    loss, _, task = salt_ar_student_loss(salt_ar_files, 0.0, 0.0)
    loss.backward()
    student = task.student
    for p in (student.text_embedding[0].weight, student.blocks[0].cross_attn.k.weight,
              student.blocks[-1].cross_attn.v.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
