"""Salt's released token-relation (Gram) alignment, "TRD".

The student's sample and a reference sample (a no-grad rollout of the same generator with more steps) are
noised alike — one level t, drawn uniformly from the un-shifted integers [t_low, t_high) then warped by the
flow shift and clamped, and one noise draw shared by both — and passed through the FROZEN teacher. From the
teacher's block-`block` token features [B, L, dim] (L = frames × tokens per frame, frame-major) each frame's
tokens are L2-normalised and their cosine Gram matrix G_f = X̂_f X̂_fᵀ [S, S] is formed; the loss is

    mean over frames, samples and token pairs of ReLU(|G_f(student) − sg(G_f(reference))| − margin).

The reference side carries no gradient; the student side reaches the student through the teacher.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from salt_core.sampling.clip import draw

from .timesteps import sample_timesteps


def frame_gram(features: torch.Tensor, frames: int, eps: float = 1e-12) -> torch.Tensor:
    """features [B, L, dim] (frame-major tokens) -> per-frame cosine Gram [B, frames, S, S], S = L / frames."""
    B, L, D = features.shape
    if frames < 1 or L % frames:
        raise ValueError(f"{L} tokens do not split into {frames} frames")
    x = F.normalize(features.float().view(B * frames, L // frames, D), dim=-1, eps=eps)
    return torch.bmm(x, x.transpose(1, 2)).view(B, frames, L // frames, L // frames)


def gram_alignment_loss(
    feat_student: torch.Tensor,
    feat_reference: torch.Tensor,
    frames: int,
    margin: float = 0.1,
    *,
    first_frames: Optional[int] = None,
) -> tuple[torch.Tensor, dict]:
    """Margin L1 distance between the per-frame cosine Grams of student and sg(reference) features.

    feat_student / feat_reference: [B, L, dim] teacher features of the noised student / reference samples.
    frames: latent frames in L (tokens per frame = L / frames). margin: |ΔG| below it costs nothing (0.1).
    first_frames: compare only the first N frames (the release's `trd_first_chunk_only`: N = chunk frames).
    Invariant to a positive scale of any token's feature. Returns (loss, stats {"trd_loss", "trd_gram_gap"}),
    trd_gram_gap = mean |ΔG| without margin.
    """
    if feat_student.shape != feat_reference.shape:
        raise ValueError(f"feature shapes differ: student {tuple(feat_student.shape)}, "
                         f"reference {tuple(feat_reference.shape)}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    g_s = frame_gram(feat_student, frames)
    with torch.no_grad():
        g_r = frame_gram(feat_reference.detach(), frames)
    if first_frames is not None:
        if not 1 <= first_frames <= frames:
            raise ValueError(f"first_frames must be in 1..{frames}, got {first_frames}")
        g_s, g_r = g_s[:, :first_frames], g_r[:, :first_frames]
    gap = (g_s - g_r).abs()
    loss = F.relu(gap - margin).mean()
    return loss, {"trd_loss": loss.item(), "trd_gram_gap": gap.mean().item()}


def sample_feature_timestep(
    batch: int,
    *,
    t_low: int = 0,
    t_high: int = 200,
    shift: float = 5.0,
    t_min: float = 20.0,
    t_max: float = 980.0,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(t [B], σ [B]) of the feature pass: integers uniform in [t_low, t_high) on the un-shifted 1000 scale,
    warped by `shift`, clamped to [t_min, t_max] (release: [0, 200) → 20..555 at shift 5)."""
    return sample_timesteps(batch, shift=shift, t_min=t_min, t_max=t_max, generator=generator, low=t_low, high=t_high)


@dataclass(frozen=True)
class GramAlignment:
    """Where and how TRD compares: the teacher block whose features are compared, the margin, the level range
    [t_low, t_high) of the feature pass (un-shifted integers, warped by `shift`) and the frames compared
    (first_frames: the first N, the release's `trd_first_chunk_only`; None: all)."""
    block: int
    margin: float = 0.1
    t_low: int = 0
    t_high: int = 200
    shift: float = 5.0
    first_frames: Optional[int] = None


def gram_alignment_term(
    teacher,
    x_student: torch.Tensor,
    x_reference: torch.Tensor,
    ctx: torch.Tensor,
    settings: GramAlignment,
    *,
    generator: Optional[torch.Generator] = None,
    noise: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, dict]:
    """TRD between the student's sample x_student [B, C, T, H, W] (with graph) and x_reference (no grad).

    teacher: a frozen WanDiT (`teacher(x, t, ctx, return_features=(block,))`); its parameters get no
    gradient, but the student's does, through the teacher's forward on the noised student sample.
    Both samples are noised at one level (`sample_feature_timestep`) with one noise (`noise` or drawn from
    `generator`). Stats gain "trd_t_mean"."""
    block = settings.block
    check_feature_block(block, len(teacher.blocks), "block")
    if x_student.shape != x_reference.shape:
        raise ValueError(f"x_student {tuple(x_student.shape)} and x_reference {tuple(x_reference.shape)} differ")
    B, T = x_student.shape[0], x_student.shape[2]
    t, sigma = sample_feature_timestep(B, t_low=settings.t_low, t_high=settings.t_high, shift=settings.shift,
                                       generator=generator)
    t, s = t.to(x_student.device), sigma.to(x_student.device).view(-1, 1, 1, 1, 1)
    eps = draw(x_student.shape, generator, x_student.device) if noise is None else noise.float()
    frames = T // teacher.config.patch_size[0]
    with torch.no_grad():
        _, ref = teacher((1.0 - s) * x_reference.float() + s * eps, t, ctx, return_features=(block,),
                         features_only=True)
    _, fake = teacher((1.0 - s) * x_student.float() + s * eps, t, ctx, return_features=(block,), features_only=True)
    loss, stats = gram_alignment_loss(fake[block], ref[block], frames, settings.margin,
                                      first_frames=settings.first_frames)
    stats["trd_t_mean"] = t.mean().item()
    return loss, stats


def check_feature_block(block: int, depth: int, key: str = "trd.block") -> None:
    """A clear error before any compute when the feature block is past the teacher's depth."""
    if not 0 <= block < depth:
        raise ValueError(f"{key}={block} is outside the teacher's blocks 0..{depth - 1} ({depth} blocks)")
