"""Scoring a whole clip with an AR (block-causal) teacher: the score of each chunk given its clean past.

A teacher trained by teacher forcing has learnt p(chunk_k | clean chunks it keeps before k). By the chain rule
KL(p_fake(x) ‖ p_real(x)) = Σ_k E KL(p_fake(x_k | x_<k) ‖ p_real(x_k | x_<k)), so the DMD gradient on chunk k is
the difference of the two conditional scores at a noised x_k, the past held at the student's clean sample. One
teacher-forcing pass gives every chunk's conditional x̂0 at once: the clean sample, then its noised copy, the
noisy chunks attending to the clean past the cache policy keeps and to themselves (`teacher_forcing_inputs`).

What this leaves out: the later chunks' terms also depend on x_k through their past; the gradient here holds the
past fixed (the clean half is detached), as teacher forcing does.
"""
from __future__ import annotations

import torch

from salt_core.sampling import Denoiser, Guidance
from salt_core.schedules import timestep_convention

from .critic import CausalTraining, teacher_forcing_inputs


def teacher_forced(model, clean: torch.Tensor, context: torch.Tensor, scoring: CausalTraining,
                   guidance: Guidance = Guidance()) -> Denoiser:
    """A Denoiser of noisy clips x_t [B, C, T, H, W] like `clean` (the detached student sample): chunk k of x̂0 is
    `model`'s prediction for noisy chunk k given the clean chunks of `clean` its policy keeps. `scoring`: the
    teacher-forcing form the teacher was trained in (its chunks and cache policy), which its critic also trains
    in. context: [B, L, D]; with active guidance the negative prompt runs the same pass."""
    if scoring.ar_mode != "teacher_forcing":
        raise ValueError(f"teacher_forced scores in teacher forcing, got ar_mode {scoring.ar_mode!r}")
    clean = clean.detach().float()
    T = clean.shape[2]
    if T % scoring.chunk_frames:
        raise ValueError(f"{T} latent frames are not a multiple of the teacher's chunk_frames={scoring.chunk_frames}")

    def forward_under(ctx: torch.Tensor):
        def forward(x_t: torch.Tensor, t: torch.Tensor, **kw) -> torch.Tensor:
            if tuple(x_t.shape) != tuple(clean.shape):
                raise ValueError(f"teacher_forced: x_t {tuple(x_t.shape)} is not shaped like the clean clip "
                                 f"{tuple(clean.shape)}")
            t_frames = t.reshape(-1, 1).expand(clean.shape[0], T)  # [B] -> [B, T]: one level for every chunk
            x_in, t_in, mask, pos = teacher_forcing_inputs(clean, x_t, t_frames, chunk_frames=scoring.chunk_frames,
                                                           policy=scoring.policy)
            return model(x_in, t_in, ctx, frame_mask=mask, frame_positions=pos, **kw)[:, :, T:]
        return forward

    negative = forward_under(guidance.negative) if guidance.active else None
    return Denoiser(forward_under(context), timestep_convention(model), negative=negative, guidance=guidance)
