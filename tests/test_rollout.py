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


def test_salt_ar_step_composes_dmd_sc_and_alignment_on_the_current_chunk(tiny_dit):
    """The pieces of one Salt-AR generator step fit together: mixed-step cache, SC on the current chunk
    from its own rollout state, DMD on the clip, cache alignment; one backward reaches the student."""
    import copy

    from salt_core.sampling import Guidance
    from training.losses import dmd_term, sc_term, sc_triplet
    from training.rollout import CacheAlignment, cache_alignment_term

    g = gen(0)
    teacher = copy.deepcopy(tiny_dit).requires_grad_(False)
    critic = copy.deepcopy(tiny_dit).requires_grad_(False)
    noise, ctx, neg = torch.randn(1, 16, T, *HW, generator=g), torch.randn(1, 5, 32), torch.randn(1, 5, 32)
    K = draw_step_count((8, 4, 2), g)
    trip = sc_triplet(K, 5.0, g)
    grids = mixed_step_grids(T // F, choices=(8, 4, 2), generator=g, current=K)
    setup = CausalSetup(tiny_dit, ctx, CachePolicy("window", window_frames=2), F)
    roll = rollout_ar(setup.driver(noise), noise, plan_chunks(grids, "renoise", g), g, until_last=trip.index)
    l_dmd, _ = dmd_term(roll.x, Denoiser.for_clip(teacher, ctx, Guidance(4.0, neg)), bi(critic, ctx), generator=g)
    l_sc, s_sc = sc_term(roll.current(), roll.chunks[-1].states[trip.index], trip, generator=g)
    l_fa, _ = cache_alignment_term(setup, noise, walk(4), CacheAlignment(walk(2), walk(8)), g)
    (l_dmd + 0.5 * l_sc + 0.1 * l_fa).backward()
    grads = [p.grad for p in tiny_dit.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(x).all() for x in grads)
    assert s_sc["sc_loss"] > 0 and s_sc["sc_steps"] == K
