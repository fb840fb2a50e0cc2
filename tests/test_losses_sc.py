"""Self-consistency loss: triplets, exact consistency, stop-gradient side, and the semigroup-defect metric."""
import pytest
import torch
from torch import nn

from salt_core.sampling import CausalSetup, Denoiser, Walk
from salt_core.schedules import StepGrid, shift_sigma
from training.losses import SCForm, midpoint_sigma, sc_loss, sc_paths, sc_term, sc_triplet, student_update
from training.semigroup import semigroup_defect


def on(model, ctx=None):
    return Denoiser.for_clip(model, ctx)


class ConstantX0(nn.Module):
    """x̂0 = target whatever the input: every step lands on the same path, so the update rule is exactly
    consistent (ode: x_e = c + σ_e/σ_s·(x_s − c); renoise: x_e = (1−σ_e)c + σ_e·ε)."""

    def __init__(self, target):
        super().__init__()
        self.target = nn.Parameter(target.clone())
        self.calls = []  # grad mode of every forward

    def forward(self, x, t, ctx=None):
        self.calls.append(torch.is_grad_enabled())
        sigma = (t / 1000.0).view(-1, 1, 1, 1, 1)
        return (x - self.target) / sigma


class ScaledX0(ConstantX0):
    """x̂0 = target + 0.5·x: depends on the input, hence inconsistent across step sizes."""

    def forward(self, x, t, ctx=None):
        self.calls.append(torch.is_grad_enabled())
        sigma = (t / 1000.0).view(-1, 1, 1, 1, 1)
        return (x - (self.target + 0.5 * x)) / sigma


SHAPE = (2, 16, 2, 4, 4)


def test_triplet_takes_an_adjacent_coarse_pair_and_the_fine_midpoint():
    for K in (8, 4, 2):
        coarse = StepGrid.uniform(K, 5.0).with_terminal()
        fine = StepGrid.uniform(2 * K, 5.0).with_terminal()
        for i in range(K):
            tr = sc_triplet(K, 5.0, index=i)
            assert (tr.sigma_s, tr.sigma_e) == (coarse[i], coarse[i + 1])
            assert tr.sigma_m == fine[2 * i + 1]
            assert tr.sigma_s > tr.sigma_m > tr.sigma_e
            assert tr.sigma_m == pytest.approx(midpoint_sigma(tr.sigma_s, tr.sigma_e, 5.0))
    draws = [sc_triplet(4, 5.0, torch.Generator().manual_seed(s)).index for s in range(40)]
    assert set(draws) == {0, 1, 2, 3}
    assert sc_triplet(4, 5.0, torch.Generator().manual_seed(7)) == sc_triplet(4, 5.0, torch.Generator().manual_seed(7))
    assert sc_triplet(4, 5.0, index=0).sigma_e == pytest.approx(shift_sigma(0.75, 5.0))  # t = 937.5


@pytest.mark.parametrize("transition", ["renoise", "ode"])
@pytest.mark.parametrize("K", [8, 4, 2])
def test_sc_loss_is_zero_for_an_exactly_consistent_update(transition, K):
    model = ConstantX0(torch.randn(SHAPE))
    for i in range(K):
        x_s = torch.randn(SHAPE)
        loss, stats = sc_term(on(model), x_s, sc_triplet(K, 5.0, index=i), transition=transition,
                              generator=torch.Generator().manual_seed(i))
        assert loss.item() < 1e-10, (i, stats)
        assert stats["sc_displacement"] > 0


@pytest.mark.parametrize("transition", ["renoise", "ode"])
def test_sc_loss_is_positive_for_an_inconsistent_update(transition, tiny_dit):
    x_s = torch.randn(SHAPE)
    loss, _ = sc_term(on(ScaledX0(torch.randn(SHAPE))), x_s, sc_triplet(4, 5.0, index=1), transition=transition,
                      generator=torch.Generator().manual_seed(0))
    assert loss.item() > 1e-4
    ctx = torch.randn(2, 5, 32)
    loss, _ = sc_term(on(tiny_dit, ctx), x_s, sc_triplet(2, 5.0, index=0), transition=transition,
                      generator=torch.Generator().manual_seed(0))
    assert loss.item() > 1e-6


def test_renoise_paths_share_one_noise_draw():
    """Two steps ending at σ_e with the same ε differ only through the model (here: not at all)."""
    model, x_s = ConstantX0(torch.randn(SHAPE)), torch.randn(SHAPE)
    tr, eps = sc_triplet(4, 5.0, index=0), torch.randn(SHAPE)
    direct, composed = sc_paths(on(model), x_s, tr, transition="renoise", noise=eps)
    assert torch.allclose(direct, composed, atol=1e-6)
    assert torch.allclose(direct, student_update(on(model), x_s, tr.sigma_s, tr.sigma_e, "renoise", eps))


@pytest.mark.parametrize("side", ["composed", "direct", "none"])
def test_stop_gradient_lands_on_the_configured_side(side):
    direct = torch.randn(SHAPE, requires_grad=True)
    composed = torch.randn(SHAPE, requires_grad=True)
    x_start = torch.randn(SHAPE, requires_grad=True)
    loss, _ = sc_loss(direct, composed, x_start, SCForm(stop_grad=side))
    loss.backward()
    assert (direct.grad is not None) == (side != "direct")
    assert (composed.grad is not None) == (side != "composed")
    assert x_start.grad is None  # the normaliser is always stop-gradient
    for g in (direct.grad, composed.grad):
        if g is not None:
            assert g.abs().sum() > 0


@pytest.mark.parametrize("side,grad_calls", [("composed", [True, False]), ("direct", [True, True]), ("none", [True, True])])
def test_stop_gradient_side_builds_no_graph_through_its_forwards(side, grad_calls):
    """Two forwards in all; the stop-gradient composed path runs its second forward under no_grad."""
    model = ScaledX0(torch.randn(SHAPE))
    direct, composed = sc_paths(on(model), torch.randn(SHAPE), sc_triplet(4, 5.0, index=2), transition="ode",
                                stop_grad=side)
    assert model.calls == grad_calls
    assert direct.requires_grad == (side != "direct")
    assert composed.requires_grad == (side != "composed")


def test_displacement_normalisation_is_scale_free():
    d, c, x = torch.randn(SHAPE), torch.randn(SHAPE), torch.randn(SHAPE)
    a, _ = sc_loss(d, c, x)
    b, _ = sc_loss(10 * d, 10 * c, 10 * x)
    assert b.item() == pytest.approx(a.item(), rel=1e-4)
    raw, stats = sc_loss(d, c, x, SCForm(normalize="none"))
    assert raw.item() == pytest.approx((d - c).square().mean().item(), rel=1e-5)


# ---- semigroup defect -----------------------------------------------------------------------------

def test_semigroup_defect_is_zero_for_a_consistent_student_and_positive_otherwise(tiny_dit):
    noise, walk = torch.randn(SHAPE), Walk(StepGrid.uniform(4, 5.0))
    consistent = semigroup_defect(on(ConstantX0(torch.randn(SHAPE))), noise, walk)
    assert consistent.mean < 1e-10 and len(consistent.per_step) == 4
    real = semigroup_defect(on(tiny_dit, torch.randn(2, 5, 32)), noise, Walk(walk.grid, "ode"))
    assert real.mean > 0 and all(d > 0 for d in real.per_step)
    assert set(real.to_dict()) == {"semigroup_defect", *(f"semigroup_defect_step{i}" for i in range(4))}


@pytest.mark.parametrize("transition", ["ode", "renoise"])
def test_semigroup_defect_steps_equal_the_sc_loss_at_the_states_the_sampler_visits(tiny_dit, transition):
    """Each step's defect is the SC loss from the sampler's own state, with the ε the sampler draws there."""
    from salt_core.sampling import seeded_generator

    noise, ctx, walk = torch.randn(SHAPE), torch.randn(2, 5, 32), Walk(StepGrid.uniform(2, 5.0), transition)
    report = semigroup_defect(on(tiny_dit, ctx), noise, walk, seed=5)
    gen = seeded_generator(5)
    with torch.no_grad():
        states = walk.run(on(tiny_dit, ctx), noise, seeded_generator(5), record=(0, 1)).states
        for i in range(2):
            eps = torch.randn(SHAPE, generator=gen) if transition == "renoise" else None
            want, _ = sc_term(on(tiny_dit, ctx), states[i], sc_triplet(2, 5.0, index=i), transition=transition,
                              noise=eps, form=SCForm(stop_grad="none"))
            assert report.per_step[i] == pytest.approx(want.item(), rel=1e-5)


def test_semigroup_defect_of_a_causal_student_walks_the_cache(tiny_dit):
    from salt_core.kv_cache import CachePolicy

    noise, ctx = torch.randn(1, 16, 4, 4, 4), torch.randn(1, 5, 32)
    walk = Walk(StepGrid.uniform(2, 5.0))

    def defect(window):
        return semigroup_defect(None, noise, walk, seed=3,
                                causal=CausalSetup(tiny_dit, ctx, CachePolicy("window", window_frames=window), 2))

    a, b = defect(2), defect(2)
    assert a == b and a.mean > 0
    assert defect(1) != a  # the second chunk's defect depends on what the cache holds
