"""Training rollouts: gradient only through the exit-step forward, reproducible from a seed."""
import pytest
import torch

from salt_core.kv_cache import CachePolicy
from salt_core.sampling import sample_ar
from salt_core.sampling.clip import draw, seeded_generator
from salt_core.schedules import StepGrid
from training.rollout import draw_step_count, mixed_step_grids, rollout_ar, rollout_bidirectional

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


def test_bidirectional_rollout_has_one_graph_forward_at_the_exit_step(tiny_dit):
    log = ForwardLog(tiny_dit)
    grid = StepGrid.uniform(4, 5.0)
    roll = rollout_bidirectional(tiny_dit, torch.randn(1, 16, 2, *HW), torch.randn(1, 5, 32), grid,
                                 generator=gen(), exit_step=2)
    assert log.graph == [False, False, True]
    assert roll.x.requires_grad and sorted(roll.states) == [0, 1, 2]
    roll.x.square().mean().backward()
    assert tiny_dit.patch_embedding.weight.grad.abs().sum() > 0


def test_bidirectional_rollout_records_states_past_the_exit_without_gradient(tiny_dit):
    log = ForwardLog(tiny_dit)
    roll = rollout_bidirectional(tiny_dit, torch.randn(1, 16, 2, *HW), torch.randn(1, 5, 32), StepGrid.uniform(4, 5.0),
                                 generator=gen(), exit_step=0, record_until=3)
    assert log.graph == [True, False, False, False]
    assert sorted(roll.states) == [0, 1, 2, 3] and roll.exit_step == 0


def test_bidirectional_rollout_is_reproducible_from_a_seed(tiny_dit):
    args = (tiny_dit, torch.randn(1, 16, 2, *HW), torch.randn(1, 5, 32), StepGrid.uniform(4, 5.0))
    a, b = rollout_bidirectional(*args, generator=gen(5)), rollout_bidirectional(*args, generator=gen(5))
    assert a.exit_step == b.exit_step and torch.equal(a.x, b.x)
    exits = {rollout_bidirectional(*args, generator=gen(s), grad=False).exit_step for s in range(30)}
    assert exits == {0, 1, 2, 3}


def test_ar_rollout_carries_gradient_only_on_each_chunks_exit_forward(tiny_dit):
    calls = []
    orig = tiny_dit.forward_chunk

    def spy(x, t, cache, idx, commit=False, **kw):
        v = orig(x, t, cache, idx, commit=commit, **kw)
        calls.append((idx[0] // F, commit, v.requires_grad))
        return v

    tiny_dit.forward_chunk = spy
    roll = rollout_ar(tiny_dit, torch.randn(1, 16, T, *HW), torch.randn(1, 5, 32), chunk_frames=F,
                      grids=StepGrid.uniform(4, 5.0), policy=CachePolicy("window", window_frames=2),
                      generator=gen(1), exit_steps=[3, 0, 2])
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
    roll = rollout_ar(tiny_dit, torch.randn(1, 16, T, *HW), torch.randn(1, 5, 32), chunk_frames=F, grids=grids,
                      generator=gen(2), grad_chunks={2}, commit_last=True, record_until=3)
    assert [c.exit_step for c in roll.chunks[:2]] == [1, 7]  # context chunks: full K_c-step samples
    assert [c.grad for c in roll.chunks] == [False, False, True]
    assert sum(log.graph) == 1  # a single graph forward in the whole rollout
    assert sorted(roll.chunks[2].states) == [0, 1, 2, 3]
    assert roll.cache.valid_frames == T


def test_ar_rollout_is_reproducible_from_a_seed(tiny_dit):
    noise, ctx = torch.randn(1, 16, T, *HW), torch.randn(1, 5, 32)
    kw = dict(chunk_frames=F, grids=StepGrid.uniform(4, 5.0), policy=CachePolicy("sink_window", sink_frames=1, window_frames=2))
    a = rollout_ar(tiny_dit, noise, ctx, generator=gen(11), **kw)
    b = rollout_ar(tiny_dit, noise, ctx, generator=gen(11), **kw)
    c = rollout_ar(tiny_dit, noise, ctx, generator=gen(12), **kw)
    assert [x.exit_step for x in a.chunks] == [x.exit_step for x in b.chunks]
    assert torch.equal(a.x, b.x)
    assert not torch.equal(a.x, c.x)
    same = rollout_ar(tiny_dit, noise, ctx, generator=gen(3), same_exit=True, **kw)
    assert len({x.exit_step for x in same.chunks}) == 1


@pytest.mark.parametrize("policy", [CachePolicy("full"), CachePolicy("window", window_frames=2)])
def test_full_step_ar_rollout_equals_the_inference_sampler(tiny_dit, policy):
    """With every step taken (exit = K−1) and the ODE transition, training sees what inference makes."""
    ctx, grid, seed = torch.randn(1, 5, 32), StepGrid.uniform(4, 5.0), 9
    ref = sample_ar(tiny_dit, ctx, latent_frames=T, latent_hw=HW, chunk_frames=F, grid=grid, policy=policy,
                    transition="ode", seed=seed)
    g = seeded_generator(seed)
    noise = torch.cat([draw((1, 16, F, *HW), g, "cpu") for _ in range(T // F)], dim=2)
    with torch.no_grad():
        roll = rollout_ar(tiny_dit, noise, ctx, chunk_frames=F, grids=grid, policy=policy, transition="ode",
                          exit_steps=[3, 3, 3], grad_chunks=())
    assert torch.allclose(roll.x, ref, atol=1e-5)


def test_mixed_step_grids_draw_previous_chunks_from_the_choices():
    counts = {draw_step_count((8, 4, 2), gen(s)) for s in range(40)}
    assert counts == {8, 4, 2}
    grids = mixed_step_grids(5, choices=(8, 4, 2), generator=gen(0), current=4)
    assert len(grids) == 5 and grids[-1] == StepGrid.uniform(4, 5.0)
    assert all(g.steps in (8, 4, 2) for g in grids)
    assert draw_step_count((8, 4, 2), gen(0), weights=[0, 0, 1]) == 2


def test_bad_rollout_arguments_are_named(tiny_dit):
    with pytest.raises(ValueError, match="exit_step"):
        rollout_bidirectional(tiny_dit, torch.randn(1, 16, 2, *HW), torch.randn(1, 5, 32), StepGrid.uniform(2), exit_step=2)
    with pytest.raises(ValueError, match="step grids"):
        rollout_ar(tiny_dit, torch.randn(1, 16, T, *HW), torch.randn(1, 5, 32), chunk_frames=F,
                   grids=[StepGrid.uniform(2)] * 2)
    with pytest.raises(ValueError, match="chunk_frames"):
        rollout_ar(tiny_dit, torch.randn(1, 16, 5, *HW), torch.randn(1, 5, 32), chunk_frames=F, grids=StepGrid.uniform(2))


def test_salt_ar_step_composes_dmd_sc_and_alignment_on_the_current_chunk(tiny_dit):
    """The pieces of one Salt-AR generator step fit together: mixed-step cache, SC on the current chunk
    from its own rollout state, DMD on the clip, cache alignment; one backward reaches the student."""
    import copy

    from training.losses import dmd_term, sc_term, sc_triplet
    from training.rollout import cache_alignment_term

    g = gen(0)
    teacher = copy.deepcopy(tiny_dit).requires_grad_(False)
    critic = copy.deepcopy(tiny_dit).requires_grad_(False)
    noise, ctx, neg = torch.randn(1, 16, T, *HW, generator=g), torch.randn(1, 5, 32), torch.randn(1, 5, 32)
    K = draw_step_count((8, 4, 2), g)
    trip = sc_triplet(K, 5.0, g)
    grids = mixed_step_grids(T // F, choices=(8, 4, 2), generator=g, current=K)
    roll = rollout_ar(tiny_dit, noise, ctx, chunk_frames=F, grids=grids, policy=CachePolicy("window", window_frames=2),
                      generator=g, record_until=trip.index)
    l_dmd, _ = dmd_term(roll.x, teacher, critic, ctx, neg, guidance=4.0, generator=g)
    l_sc, s_sc = sc_term(roll.current(tiny_dit), roll.chunks[-1].states[trip.index], trip, None, generator=g)
    l_fa, _ = cache_alignment_term(tiny_dit, noise, ctx, chunk_frames=F, grid=StepGrid.uniform(4, 5.0),
                                   policy=CachePolicy("window", window_frames=2), generator=g)
    (l_dmd + 0.5 * l_sc + 0.1 * l_fa).backward()
    grads = [p.grad for p in tiny_dit.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(x).all() for x in grads)
    assert s_sc["sc_loss"] > 0 and s_sc["sc_steps"] == K
