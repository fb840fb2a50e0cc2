"""DMD generator loss, teacher CFG, DMD timesteps, and the flow denoising (critic / AR teacher) loss."""
import copy

import pytest
import torch

from salt_core.config import dit_preset
from salt_core.dit import WanDiT
from salt_core.kv_cache import CachePolicy
from salt_core.sampling import Denoiser, Guidance, Walk
from salt_core.schedules import StepGrid
from training.losses import CausalTraining, NoiseLevels, dmd_loss, dmd_term, flow_denoising_loss, teacher_forcing_inputs
from training.rollout import rollout_bidirectional

from conftest import perturbed, rel_err


class GaussianScore:
    """Exact flow model of data x0 ~ N(mu, s²) per element: v = (x_σ − E[x0 | x_σ]) / σ."""

    def __init__(self, mu, s=1.0):
        self.mu, self.s = mu, s

    def x0(self, x, sigma):
        a = 1.0 - sigma
        gain = a * self.s**2 / (a**2 * self.s**2 + sigma**2)
        return self.mu + gain * (x - a * self.mu)

    def __call__(self, x, t, ctx):
        sigma = (t / 1000.0).view(-1, *([1] * (x.ndim - 1)))
        return (x - self.x0(x, sigma)) / sigma


def on(model, ctx, guidance=Guidance()):
    return Denoiser.for_clip(model, ctx, guidance)


def gaussian_student(theta, batch=4, s=1.0, seed=0):
    """One-step 'generator' x = theta + s·z, differentiable in theta."""
    z = torch.randn(batch, 16, 2, 4, 4, generator=torch.Generator().manual_seed(seed))
    return theta + s * z


def test_dmd_generator_gradient_is_zero_when_teacher_equals_critic():
    theta = torch.zeros((), requires_grad=True)
    x = gaussian_student(theta)
    score = GaussianScore(mu=0.3)
    ctx = torch.zeros(4, 1, 32)
    loss, stats = dmd_term(x, on(score, ctx), on(score, ctx), generator=torch.Generator().manual_seed(1))
    loss.backward()
    assert theta.grad.item() == 0.0
    assert stats["dmd_grad_abs"] == 0.0


def test_dmd_generator_gradient_is_zero_for_identical_dit_teacher_and_critic():
    torch.manual_seed(0)
    student = perturbed(WanDiT(dit_preset("tiny")), seed=1)
    teacher = perturbed(WanDiT(dit_preset("tiny")), seed=2).requires_grad_(False)
    critic = copy.deepcopy(teacher)
    ctx = torch.randn(2, 5, 32)
    roll = rollout_bidirectional(on(student, ctx), torch.randn(2, 16, 2, 4, 4), Walk(StepGrid.uniform(2, 5.0)),
                                 torch.Generator().manual_seed(0), exit_step=1)
    # guidance 1: identical networks give identical x̂0 at any noise level
    loss, _ = dmd_term(roll.x, on(teacher, ctx), on(critic, ctx), generator=torch.Generator().manual_seed(3))
    loss.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and all(g.abs().max() == 0 for g in grads)


def test_dmd_gradient_equals_normalised_score_difference():
    """∂L/∂x = g / numel with g = (x̂_fake − x̂_real) / mean|x − x̂_real| (analytic Gaussians)."""
    x = torch.randn(3, 16, 2, 4, 4, requires_grad=True)
    sigma = torch.tensor([0.3, 0.6, 0.9])
    x_t = (1 - sigma.view(-1, 1, 1, 1, 1)) * x.detach() + sigma.view(-1, 1, 1, 1, 1) * torch.randn_like(x)
    s5 = sigma.view(-1, 1, 1, 1, 1)
    real, fake = GaussianScore(1.0).x0(x_t, s5), GaussianScore(0.0).x0(x_t, s5)
    loss, _ = dmd_loss(x, real, fake)
    loss.backward()
    norm = (x.detach() - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    expected = (fake - real) / norm / x.numel()
    assert rel_err(x.grad, expected) < 1e-5


def test_dmd_moves_the_generator_toward_a_shifted_teacher():
    """Teacher N(1, 1), critic tracks the generator N(θ, 1): the gradient pushes θ toward 1."""
    theta = torch.zeros((), requires_grad=True)
    teacher = GaussianScore(mu=1.0)
    gen = torch.Generator().manual_seed(0)
    history = []
    for step in range(30):
        critic = GaussianScore(mu=theta.detach().item())  # the critic's optimum: the student's distribution
        x = gaussian_student(theta, seed=step)
        ctx = torch.zeros(4, 1, 32)
        loss, _ = dmd_term(x, on(teacher, ctx), on(critic, ctx), generator=gen)
        theta.grad = None
        loss.backward()
        if step == 0:
            assert theta.grad.item() < 0  # descent raises θ toward the teacher's mean
        with torch.no_grad():
            theta -= 0.3 * theta.grad
        history.append(theta.item())
    assert all(a <= b + 1e-6 for a, b in zip(history, history[1:]))  # monotone toward the teacher
    assert abs(history[-1] - 1.0) < 0.02


def test_teacher_cfg_follows_the_self_forcing_convention():
    """x̂ = x̂_c + (w−1)(x̂_c − x̂_neg): with w = 4 this is Self Forcing's 3.0."""
    cond, neg = torch.full((2, 1, 32), 1.0), torch.full((2, 1, 32), -1.0)

    def model(x, t, ctx):  # the prompt shifts the flow prediction
        return 0.1 * x + ctx.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)

    x_t, sigma = torch.randn(2, 16, 1, 4, 4), torch.tensor([0.5, 0.7])
    xc, xn = on(model, cond).x0(x_t, sigma), on(model, neg).x0(x_t, sigma)
    out = on(model, cond, Guidance(4.0, neg)).x0(x_t, sigma)
    assert rel_err(out, xc + 3.0 * (xc - xn)) < 1e-6
    assert torch.equal(on(model, cond, Guidance(1.0, neg)).x0(x_t, sigma), xc)
    with pytest.raises(ValueError, match="negative prompt"):
        Guidance(4.0, None)


def test_dmd_timesteps_are_shifted_clamped_and_reproducible():
    t, sigma = NoiseLevels(5.0).draw(4000, torch.Generator().manual_seed(0))
    t2, _ = NoiseLevels(5.0).draw(4000, torch.Generator().manual_seed(0))
    assert torch.equal(t, t2)
    assert t.min() >= 20 and t.max() <= 980
    assert torch.allclose(sigma * 1000, t)
    assert 800 < t.median() < 870  # shift 5 warps the median 500 to 833
    t1, _ = NoiseLevels(1.0).draw(4000, torch.Generator().manual_seed(0))
    assert 450 < t1.median() < 550


# ---- flow denoising loss --------------------------------------------------------------------------

def test_flow_loss_trains_the_critic_and_not_the_sample():
    critic = perturbed(WanDiT(dit_preset("tiny")))
    x0 = torch.randn(2, 16, 2, 4, 4, requires_grad=True)
    loss, stats = flow_denoising_loss(critic, x0, torch.randn(2, 5, 32), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert x0.grad is None and torch.isfinite(loss)
    assert all(p.grad is not None for p in critic.parameters())
    assert 20 <= stats["flow_t_mean"] <= 980


def test_flow_loss_is_zero_for_the_exact_velocity():
    x0 = torch.randn(2, 16, 2, 4, 4)
    eps = torch.randn_like(x0)

    def oracle(x, t, ctx):
        return eps - x0

    loss, _ = flow_denoising_loss(oracle, x0, torch.zeros(2, 1, 32), noise=eps)
    assert loss.item() < 1e-12


@pytest.mark.parametrize(
    "policy",
    [CachePolicy("full"), CachePolicy("window", window_frames=2), CachePolicy("sink_window", sink_frames=1, window_frames=2)],
)
def test_teacher_forcing_pass_equals_cached_generation_with_clean_context(tiny_dit, policy):
    """The single-pass AR teacher objective sees exactly what chunk-by-chunk inference sees."""
    F, T, HW = 2, 6, (4, 4)
    x0, x_t, ctx = torch.randn(1, 16, T, *HW), torch.randn(1, 16, T, *HW), torch.randn(1, 5, 32)
    t = torch.tensor([[900.0, 900.0, 500.0, 500.0, 100.0, 100.0]])
    x_in, t_in, mask, pos = teacher_forcing_inputs(x0, x_t, t, chunk_frames=F, policy=policy)
    with torch.no_grad():
        single = tiny_dit(x_in, t_in, ctx, frame_mask=mask, frame_positions=pos)[:, :, T:]
        cache = tiny_dit.new_cache(policy, batch=1, latent_hw=HW, chunk_frames=F)
        tiny_dit.set_prompt(cache, ctx)
        outs = []
        for c in range(T // F):
            idx = list(range(c * F, (c + 1) * F))
            outs.append(tiny_dit.forward_chunk(x_t[:, :, idx], t[:, idx], cache, idx))
            tiny_dit.forward_chunk(x0[:, :, idx], torch.zeros(1), cache, idx, commit=True)
    assert rel_err(single, torch.cat(outs, 2)) < 1e-5


@pytest.mark.parametrize("mode", ["teacher_forcing", "diffusion_forcing"])
def test_ar_teacher_loss_draws_a_level_per_chunk(tiny_dit, mode):
    seen = {}

    def spy(x, t, ctx, **kw):
        seen["t"], seen["kw"] = t, kw
        return tiny_dit(x, t, ctx, **kw)

    loss, _ = flow_denoising_loss(spy, torch.randn(2, 16, 6, 4, 4), torch.randn(2, 5, 32),
                                  causal=CausalTraining(2, mode), generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    t = seen["t"][:, -6:]
    assert torch.equal(t[:, 0::2], t[:, 1::2])  # one level per chunk of 2 frames
    assert seen["kw"]["frame_mask"].shape[0] == (12 if mode == "teacher_forcing" else 6)
