"""Salt's released token-relation (Gram) alignment: zero on identical features, scale invariance, the margin,
the feature level draw, and gradient through a frozen teacher into the student."""
import pytest
import torch

from salt_core.config import dit_preset
from salt_core.dit import WanDiT
from training.losses import GramAlignment, check_feature_block, frame_gram, gram_alignment_loss, gram_alignment_term
from training.losses import sample_feature_timestep

from conftest import perturbed

B, FRAMES, S, D = 2, 3, 8, 16


def feats(seed: int) -> torch.Tensor:
    return torch.randn(B, FRAMES * S, D, generator=torch.Generator().manual_seed(seed))


def test_frame_gram_is_the_per_frame_cosine_matrix():
    f = feats(0)
    g = frame_gram(f, FRAMES)
    assert g.shape == (B, FRAMES, S, S)
    torch.testing.assert_close(torch.diagonal(g, dim1=-2, dim2=-1), torch.ones(B, FRAMES, S))
    x = f[1, 2 * S : 3 * S]  # sample 1, frame 2
    torch.testing.assert_close(g[1, 2, 3, 5], torch.nn.functional.cosine_similarity(x[3], x[5], dim=0))
    with pytest.raises(ValueError, match="frames"):
        frame_gram(f, 5)


def test_trd_is_zero_for_identical_features_and_positive_otherwise():
    f = feats(0)
    assert gram_alignment_loss(f, f.clone(), FRAMES)[0].item() == 0.0
    loss, stats = gram_alignment_loss(f, feats(1), FRAMES)
    assert loss.item() > 0.05 and stats["trd_gram_gap"] > loss.item()


def test_trd_is_invariant_to_a_positive_scale_of_each_token():
    f, r = feats(0), feats(1)
    scale = torch.rand(B, FRAMES * S, 1, generator=torch.Generator().manual_seed(2)) * 10 + 0.1
    base = gram_alignment_loss(f, r, FRAMES)[0]
    torch.testing.assert_close(gram_alignment_loss(f * scale, r, FRAMES)[0], base)
    torch.testing.assert_close(gram_alignment_loss(f, r / scale, FRAMES)[0], base)
    assert gram_alignment_loss(f, f * scale, FRAMES)[0].item() < 1e-6


def test_trd_margin_forgives_small_gram_differences():
    f = feats(0)
    near = f + 0.01 * feats(3)  # cosines move by far less than 0.1
    loss, stats = gram_alignment_loss(near, f, FRAMES, margin=0.1)
    assert loss.item() == 0.0 and 0.0 < stats["trd_gram_gap"] < 0.1
    assert gram_alignment_loss(near, f, FRAMES, margin=0.0)[0].item() == pytest.approx(stats["trd_gram_gap"])


def test_trd_first_frames_compares_only_the_first_chunk():
    f, r = feats(0), feats(1).clone()
    r[:, :S] = f[:, :S]  # frame 0 identical, the rest different
    assert gram_alignment_loss(f, r, FRAMES, first_frames=1)[0].item() == 0.0
    assert gram_alignment_loss(f, r, FRAMES)[0].item() > 0.0
    with pytest.raises(ValueError, match="first_frames"):
        gram_alignment_loss(f, r, FRAMES, first_frames=4)


def test_trd_gradient_is_only_on_the_student_features():
    f, r = feats(0).requires_grad_(True), feats(1).requires_grad_(True)
    gram_alignment_loss(f, r, FRAMES)[0].backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    assert r.grad is None


def test_feature_timestep_is_drawn_low_then_warped_and_clamped():
    t, sigma = sample_feature_timestep(4000, shift=5.0, generator=torch.Generator().manual_seed(0))
    assert t.min().item() == pytest.approx(20.0)  # raw 0..3 warp below 20 and are clamped
    assert t.max().item() == pytest.approx(1000 * 5 * 0.199 / (1 + 4 * 0.199), rel=1e-5)  # raw 199 -> 553.6
    torch.testing.assert_close(sigma, t / 1000)
    t1, _ = sample_feature_timestep(4000, shift=1.0, generator=torch.Generator().manual_seed(0))
    assert t1.max().item() == 199.0 and t1.min().item() == 20.0
    with pytest.raises(ValueError, match="low"):
        sample_feature_timestep(2, t_low=300, t_high=200)


def test_trd_reaches_the_student_through_a_frozen_teacher():
    torch.manual_seed(0)
    teacher = perturbed(WanDiT(dit_preset("tiny")), seed=1).requires_grad_(False)
    student = perturbed(WanDiT(dit_preset("tiny")), seed=2).train()
    noise = torch.randn(B, 16, FRAMES, 4, 4)
    ctx = torch.randn(B, 5, 32)
    t = torch.full((B,), 600.0)
    x_student = noise - 0.6 * student(noise, t, ctx)  # the student's x̂0, with graph
    with torch.no_grad():
        x_reference = noise - 0.6 * teacher(noise, t, ctx)
    g = torch.Generator().manual_seed(5)
    loss, stats = gram_alignment_term(teacher, x_student, x_reference, ctx, GramAlignment(block=1, margin=0.0), generator=g)
    loss.backward()
    assert loss.item() > 0 and stats["trd_t_mean"] >= 20.0
    assert all(p.grad is None for p in teacher.parameters())
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and sum(float(gr.abs().sum()) for gr in grads) > 0

    # the same value from return_features by hand (same level draw and noise)
    g = torch.Generator().manual_seed(5)
    t_f, sig = sample_feature_timestep(B, generator=g)
    eps = torch.randn(x_student.shape, generator=g)
    s = sig.view(-1, 1, 1, 1, 1)
    with torch.no_grad():
        _, fs = teacher((1 - s) * x_student + s * eps, t_f, ctx, return_features=(1,))
        _, fr = teacher((1 - s) * x_reference + s * eps, t_f, ctx, return_features=(1,))
    assert loss.item() == pytest.approx(gram_alignment_loss(fs[1], fr[1], FRAMES, margin=0.0)[0].item(), rel=1e-5)


def test_trd_block_past_the_teacher_depth_is_a_clear_error():
    teacher = WanDiT(dit_preset("tiny")).requires_grad_(False)
    x = torch.zeros(1, 16, 1, 4, 4)
    with pytest.raises(ValueError, match="block=2 .*0..1"):
        gram_alignment_term(teacher, x, x, torch.zeros(1, 3, 32), GramAlignment(block=2))
    with pytest.raises(ValueError, match="trd.block=40 .*0..39"):
        check_feature_block(40, 40)
