"""Salt's released shortcut-consistency loss, its (t_m, t_e) choice, and the mixed step lists / reference path."""
import pytest
import torch
from torch import nn

from salt_core.schedules import StepGrid
from training.losses import (
    ReferenceStep,
    StepListDraw,
    draw_step_list,
    reference_path,
    reference_steps,
    shortcut_consistency_loss,
    shortcut_times,
)

SHAPE = (2, 16, 3, 4, 4)
EIGHT = StepGrid.from_timesteps([1000, 875, 750, 625, 500, 375, 250, 125], 5.0).timesteps  # warped, as released


class ConstantVelocity(nn.Module):
    """v(x, t) = c: Euler steps of any size compose exactly."""

    def __init__(self):
        super().__init__()
        self.c = nn.Parameter(torch.randn(SHAPE[1:], dtype=torch.float64))

    def forward(self, x, t):
        return self.c.expand_as(x)


class StraightToTarget(nn.Module):
    """v(x, t) = (x − x0)/σ: the straight flow to one point x0; Euler steps stay on that line (consistent)."""

    def __init__(self):
        super().__init__()
        self.x0 = nn.Parameter(torch.randn(SHAPE[1:], dtype=torch.float64))

    def forward(self, x, t):
        return (x - self.x0) / (float(t) / 1000.0)


class Curved(StraightToTarget):
    """v(x, t) = (x − x0)/σ + σ·x: the flow bends with t, so one long step differs from two short ones."""

    def forward(self, x, t):
        s = float(t) / 1000.0
        return (x - self.x0) / s + s * x


def sc(model, x_s, t_s, t_m, t_e, form="endpoint"):
    """The released loss with v1 from `model` (graph) and v2 from the same model at the composed midpoint."""
    return shortcut_consistency_loss(x_s, model(x_s, t_s), model, t_s, t_m, t_e, form=form)


def all_triplets():
    """Every (t_s, t_m, t_e) the released rule can pick on the 8-step list."""
    out = set()
    for exit_index in range(len(EIGHT) - 1):
        for seed in range(30):
            out.add(shortcut_times(EIGHT, exit_index, generator=torch.Generator().manual_seed(seed)))
    return sorted(out)


@pytest.mark.parametrize("form", ["endpoint", "average_velocity"])
@pytest.mark.parametrize("student", [ConstantVelocity, StraightToTarget])
def test_released_sc_is_zero_for_an_exactly_consistent_student(student, form):
    torch.manual_seed(0)
    model = student()
    for t_s, t_m, t_e in all_triplets():
        loss, stats = sc(model, torch.randn(SHAPE, dtype=torch.float64), t_s, t_m, t_e, form)
        assert loss.item() < 1e-20, (t_s, t_m, t_e)
        assert stats["sc_gap"] < 1e-20


@pytest.mark.parametrize("form", ["endpoint", "average_velocity"])
def test_released_sc_is_positive_for_an_inconsistent_student(form):
    torch.manual_seed(0)
    model = Curved()
    for t_s, t_m, t_e in all_triplets():
        loss, stats = sc(model, torch.randn(SHAPE, dtype=torch.float64), t_s, t_m, t_e, form)
        if t_s == 1000.0:  # weight 1 − t_s/1000 = 0: the first step of a list never gets SC
            assert loss.item() == 0.0 and stats["sc_gap"] > 1e-6
        elif t_m != t_e:  # (t_m = t_e: one step on both sides, nothing to compare)
            assert loss.item() > 1e-6, (t_s, t_m, t_e)


@pytest.mark.parametrize("form", ["endpoint", "average_velocity"])
def test_released_sc_gradient_flows_only_through_the_direct_side(form):
    torch.manual_seed(0)
    model, x_s = Curved(), torch.randn(SHAPE, dtype=torch.float64)
    t_s, t_m, t_e = EIGHT[1], EIGHT[3], EIGHT[4]
    seen = []

    def v2_fn(x_m, t):
        seen.append((torch.is_grad_enabled(), x_m.requires_grad, t))
        return model(x_m, t)

    loss, _ = shortcut_consistency_loss(x_s, model(x_s, t_s), v2_fn, t_s, t_m, t_e, form=form)
    (grad,) = torch.autograd.grad(loss, model.x0)
    assert seen == [(False, False, t_m)]  # v2 without graph, at an x_m built from sg(v1)

    # the same loss written out with a constant target: identical gradient
    dt1, dt2, total = (t_s - t_m) / 1000, (t_m - t_e) / 1000, (t_s - t_e) / 1000
    v1 = model(x_s, t_s)
    with torch.no_grad():
        x_m = x_s - dt1 * v1
        v2 = model(x_m, t_m)
    if form == "endpoint":
        pred, target, w = x_s - total * v1, x_m - dt2 * v2, 1 - t_s / 1000
    else:
        pred, target, w = v1, (dt1 * v1.detach() + dt2 * v2) / total, (1 - t_s / 1000) ** 2
    (expected,) = torch.autograd.grad(w * (pred - target).square().mean(), model.x0)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-14)

    # a target that kept its graph would give another gradient: the check above can fail
    v1 = model(x_s, t_s)
    x_m = x_s - dt1 * v1
    composed = x_m - dt2 * model(x_m, t_m)
    (through_both,) = torch.autograd.grad(((x_s - total * v1) - composed).square().mean(), model.x0)
    assert not torch.allclose(expected, through_both)


def test_released_sc_weights_each_form_by_the_start_level():
    x_s, c = torch.randn(SHAPE), torch.randn(SHAPE)
    for t_s, t_m, t_e in [(1000.0, 900.0, 500.0), (937.5, 833.3, 625.0), (500.0, 250.0, 0.0), (300.0, 100.0, 100.0)]:
        dt2, total = (t_m - t_e) / 1000, (t_s - t_e) / 1000
        v1 = torch.zeros(SHAPE, requires_grad=True)
        end, stats = shortcut_consistency_loss(x_s, v1, c, t_s, t_m, t_e)  # direct x_s, composed x_s − dt2·c
        assert stats["sc_weight"] == pytest.approx(1 - t_s / 1000)
        assert end.item() == pytest.approx((1 - t_s / 1000) * dt2 ** 2 * c.square().mean().item(), rel=1e-5, abs=1e-12)
        avg, stats = shortcut_consistency_loss(x_s, v1, c, t_s, t_m, t_e, form="average_velocity")
        assert stats["sc_weight"] == pytest.approx((1 - t_s / 1000) ** 2)
        assert avg.item() == pytest.approx((1 - t_s / 1000) ** 2 * (dt2 / total) ** 2 * c.square().mean().item(),
                                           rel=1e-5, abs=1e-12)
        legacy, stats = shortcut_consistency_loss(x_s, v1, c, t_s, t_m, t_e, form="average_velocity", weight_power=1)
        assert stats["sc_weight"] == pytest.approx(1 - t_s / 1000)
        assert legacy.item() == pytest.approx((1 - t_s / 1000) * (dt2 / total) ** 2 * c.square().mean().item(),
                                              rel=1e-5, abs=1e-12)


def test_released_sc_takes_a_given_midpoint_state():
    """The streaming pipeline's "sde" mode re-noises x̂0 to t_m instead of the Euler step."""
    x_s, v1, x_m = torch.randn(SHAPE), torch.randn(SHAPE), torch.randn(SHAPE)
    seen = []
    loss, _ = shortcut_consistency_loss(x_s, v1, lambda x, t: seen.append(x) or torch.zeros_like(x),
                                        800.0, 600.0, 400.0, form="average_velocity", x_m=x_m)
    assert torch.equal(seen[0], x_m)
    shortcut_consistency_loss(x_s, v1, lambda x, t: seen.append(x) or torch.zeros_like(x),
                                         800.0, 600.0, 400.0, form="average_velocity")
    torch.testing.assert_close(seen[1], x_s - 0.2 * v1)


def test_released_sc_mask_zeroes_elements_inside_the_full_mean():
    x_s, v1, v2 = torch.randn(SHAPE), torch.randn(SHAPE), torch.randn(SHAPE)
    mask = torch.zeros(SHAPE)
    mask[:, :, 1:] = 1.0  # the first latent frame carries no loss
    full, _ = shortcut_consistency_loss(x_s, v1, v2, 800.0, 600.0, 400.0)
    masked, _ = shortcut_consistency_loss(x_s, v1, v2, 800.0, 600.0, 400.0, mask=mask)
    kept, _ = shortcut_consistency_loss(x_s[:, :, 1:], v1[:, :, 1:], v2[:, :, 1:], 800.0, 600.0, 400.0)
    assert masked.item() == pytest.approx(kept.item() * 2 / 3, rel=1e-5)  # mean over all 3 frames
    assert masked.item() < full.item()


def test_released_sc_rejects_bad_times_and_shapes():
    x = torch.randn(SHAPE)
    with pytest.raises(ValueError, match="t_e <= t_m < t_s"):
        shortcut_consistency_loss(x, x, x, 500.0, 600.0, 0.0)
    with pytest.raises(ValueError, match="v2"):
        shortcut_consistency_loss(x, x, x[:1], 500.0, 300.0, 0.0)
    with pytest.raises(ValueError, match="unknown"):
        shortcut_consistency_loss(x, x, x, 500.0, 300.0, 0.0, form="semigroup")


def test_shortcut_times_follow_the_released_segment_rule():
    t = EIGHT
    outcomes = {shortcut_times(t, 0, generator=torch.Generator().manual_seed(s)) for s in range(200)}
    # boundaries t0, t2, t4, t6, 0; below t1 the two largest are t2, t4; t_m strictly between t_e and t0
    assert outcomes == {(t[0], t[1], t[2]), (t[0], t[1], t[4]), (t[0], t[2], t[4]), (t[0], t[3], t[4])}
    assert {shortcut_times(t, 6, generator=torch.Generator().manual_seed(s)) for s in range(20)} == {(t[6], t[7], 0.0)}
    assert shortcut_times(t, 7) is None  # the last step: no SC
    for t_s, t_m, t_e in all_triplets():
        assert t_s > t_m > t_e >= 0.0 and t_m in t and (t_e == 0.0 or t_e in (t[2], t[4], t[6]))


def test_shortcut_times_half_rule_of_the_streaming_pipeline():
    t = EIGHT
    outcomes = {shortcut_times(t, 0, rule="half", generator=torch.Generator().manual_seed(s)) for s in range(300)}
    assert outcomes == {(t[0], t[i], t[4]) for i in (1, 2, 3)} | {(t[0], t[i], 0.0) for i in (4, 5, 6, 7)}
    with pytest.raises(ValueError, match="outside"):
        shortcut_times(t, 8)
    with pytest.raises(ValueError, match="decreasing"):
        shortcut_times([500.0, 600.0], 0)


def test_step_list_draw_uses_the_probabilities_and_one_exit_per_draw():
    g = torch.Generator().manual_seed(0)
    draws = [draw_step_list((8, 4, 2), (0.4, 0.4, 0.2), g) for _ in range(4000)]
    for k, p in ((8, 0.4), (4, 0.4), (2, 0.2)):
        share = sum(d.steps == k for d in draws) / len(draws)
        assert abs(share - p) < 0.03, (k, share)
        assert {d.exit_index for d in draws if d.steps == k} == set(range(k))
    with pytest.raises(ValueError, match="summing to 1"):
        draw_step_list((8, 4, 2), (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="one per step count"):
        draw_step_list((8, 4), (1.0,))


def test_reference_runs_only_for_two_step_draws_past_the_first_step():
    assert reference_steps(StepListDraw(2, 1)) == 4
    assert reference_steps(StepListDraw(2, 0)) is None
    assert reference_steps(StepListDraw(4, 3)) is None and reference_steps(StepListDraw(8, 5)) is None


def test_reference_path_moves_in_each_noise_mode():
    two, four = StepGrid.from_timesteps([1000, 500], 5.0), StepGrid.from_timesteps([1000, 750, 500, 250], 5.0)
    a, b, c = four.timesteps[:3]  # 1000, 937.5, 833.3; the student exits at two.timesteps[1] = 833.3
    moves, stop = reference_path(four, two, 1, mode="independent")
    assert stop == pytest.approx(c) and moves == [ReferenceStep(a, b, "renoise", None), ReferenceStep(b, c, "renoise", None)]
    moves, _ = reference_path(four, two, 1, mode="noise_aligned_b")
    assert moves == [ReferenceStep(a, b, "ode", None), ReferenceStep(b, c, "renoise", two.timesteps[1])]
    moves, _ = reference_path(four, two, 1, mode="noise_aligned_a")
    assert [m.noise_from for m in moves] == [two.timesteps[1]] * 2
    moves, _ = reference_path(four, two, 0, mode="noise_aligned_b")  # no student draw yet: like independent
    assert moves == [] or all(m.kind == "renoise" and m.noise_from is None for m in moves)
    # an exit level between two reference levels: the reference stops at the level above it
    moves, stop = reference_path(StepGrid((1.0, 0.9, 0.8)), StepGrid((1.0, 0.85)), 1, transition="ode")
    assert stop == pytest.approx(900.0) and moves == [ReferenceStep(1000.0, 900.0, "ode", None)]
    with pytest.raises(ValueError, match="unknown"):
        reference_path(four, two, 1, mode="aligned")
