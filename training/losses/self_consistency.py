"""Self-consistency (semigroup) loss of SC-DMD — our form.

Ψ^{s→e}(x_s) is one student step from level s to e with the sampling transition (Ψ^{s→0} = x̂0). On the coarse
grid of K steps take adjacent levels (s, e) and the midpoint m of the 2K grid:

    direct    x_e¹ = Ψ^{s→e}(x_s)
    composed  x_e² = Ψ^{m→e}(Ψ^{s→m}(x_s))
    L_SC      = ‖x_e¹ − sg(x_e²)‖² / sg(‖x_e² − x_s‖² + ε)

The student is a `salt_core.sampling.Denoiser` (a bidirectional model under its prompt, or a causal one on the
current chunk against its KV cache).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from salt_core.sampling import Denoiser, check_transition, draw, transition_step
from salt_core.schedules import StepGrid

from .timesteps import midpoint_sigma

STOP_GRAD = ("composed", "direct", "none")
NORMALIZE = ("displacement", "none")


@dataclass(frozen=True)
class SCTriplet:
    """Levels of one SC comparison: pair `index` (s = level index, e = index+1) of the K-step grid."""

    steps: int  # K
    index: int  # s is level `index` of StepGrid.uniform(K, shift); its state x_s is rollout state `index`
    sigma_s: float
    sigma_m: float
    sigma_e: float  # 0 for the last pair


@dataclass(frozen=True)
class SCForm:
    """Which side is the stop-gradient target ("composed", "direct", or "none"), and the normalisation:
    "displacement" divides each sample's mean squared gap by sg(mean((x_e² − x_s)²) + eps), "none" keeps it."""

    stop_grad: str = "composed"
    normalize: str = "displacement"
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.stop_grad not in STOP_GRAD:
            raise ValueError(f"stop_grad {self.stop_grad!r} is unknown; allowed: {list(STOP_GRAD)}")
        if self.normalize not in NORMALIZE:
            raise ValueError(f"normalize {self.normalize!r} is unknown; allowed: {list(NORMALIZE)}")


def sc_triplet(
    K: int, shift: float = 5.0, generator: Optional[torch.Generator] = None, index: Optional[int] = None
) -> SCTriplet:
    """Choose (t_s, t_m, t_e): an adjacent pair of the coarse K-grid (uniform over its K pairs, the last
    one ending at 0) and the midpoint from the finer 2K-grid. K: step count (8, 4, 2, …); shift: flow shift
    of both grids; generator: CPU generator for the pair; index: force a pair (0 = the noisiest)."""
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    coarse = StepGrid.uniform(K, shift).with_terminal()
    fine = StepGrid.uniform(2 * K, shift).with_terminal()
    i = int(torch.randint(0, K, (1,), generator=generator)) if index is None else int(index)
    if not 0 <= i < K:
        raise ValueError(f"pair index {i} is outside 0..{K - 1}")
    return SCTriplet(K, i, coarse[i], fine[2 * i + 1], coarse[i + 1])


def triplet_for_grid(grid: StepGrid, index: int) -> SCTriplet:
    """The SC triplet of pair `index` of an arbitrary grid, midpoint on the grid's un-shifted scale (used by the
    semigroup-defect metric; equals `sc_triplet` for uniform grids)."""
    sig = grid.with_terminal()
    mid = midpoint_sigma(sig[index], sig[index + 1], grid.shift)
    return SCTriplet(grid.steps, index, sig[index], mid, sig[index + 1])


def student_update(student: Denoiser, x_s: torch.Tensor, sigma_s: float, sigma_e: float, transition: str = "renoise",
                   noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Ψ^{s→e}(x_s): one student step from level sigma_s to sigma_e with `transition` ("renoise" needs `noise` ε
    like x_s unless sigma_e = 0; "ode" is deterministic). Ψ^{s→0} = x̂0. Runs under the caller's grad mode."""
    check_transition(transition)
    return transition_step(x_s, student.x0(x_s, sigma_s), sigma_s, sigma_e, transition, noise)


def composed_path(student: Denoiser, x_s: torch.Tensor, x0_s: torch.Tensor, triplet: SCTriplet, transition: str,
                  noise: Optional[torch.Tensor]) -> torch.Tensor:
    """x_e² = Ψ^{m→e}(Ψ^{s→m}(x_s)) given the student's x̂0(x_s, σ_s) (shared with the direct path)."""
    x_m = transition_step(x_s, x0_s, triplet.sigma_s, triplet.sigma_m, transition, noise)
    return student_update(student, x_m, triplet.sigma_m, triplet.sigma_e, transition, noise)


def sc_paths(
    student: Denoiser,
    x_s: torch.Tensor,
    triplet: SCTriplet,
    *,
    transition: str = "renoise",
    noise: Optional[torch.Tensor] = None,
    stop_grad: str = "composed",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(direct x_e¹, composed x_e²) from the state x_s [B, C, T, H, W] (detached here).

    Two student forwards, not three: Ψ^{s→e} and Ψ^{s→m} start from the same x̂0(x_s, σ_s). For renoise
    one noise draw ε serves every transition of both paths. The side named by `stop_grad` is built
    without a graph (its forwards run under no_grad when possible)."""
    if stop_grad not in STOP_GRAD:
        raise ValueError(f"stop_grad {stop_grad!r} is unknown; allowed: {list(STOP_GRAD)}")
    check_transition(transition)
    if transition == "renoise" and noise is None and triplet.sigma_m > 0:
        raise ValueError("transition 'renoise' needs a noise tensor for the SC paths")
    x_s = x_s.detach()
    x0_s = student.x0(x_s, triplet.sigma_s)
    x0_direct = x0_s.detach() if stop_grad == "direct" else x0_s
    direct = transition_step(x_s, x0_direct, triplet.sigma_s, triplet.sigma_e, transition, noise)
    grad_composed = stop_grad != "composed" and torch.is_grad_enabled()
    with torch.set_grad_enabled(grad_composed):
        composed = composed_path(student, x_s, x0_s if grad_composed else x0_s.detach(), triplet, transition, noise)
    return direct, composed


def sc_loss(direct: torch.Tensor, composed: torch.Tensor, x_start: torch.Tensor,
            form: SCForm = SCForm()) -> tuple[torch.Tensor, dict]:
    """L_SC between the two paths; tensors [B, ...]. Means are per element within a sample, then over the batch;
    the displacement denominator never carries gradient.
    Returns (loss, stats {"sc_loss", "sc_gap", "sc_displacement"})."""
    a = direct.detach() if form.stop_grad == "direct" else direct
    b = composed.detach() if form.stop_grad == "composed" else composed
    dims = tuple(range(1, direct.ndim))
    gap = (a.float() - b.float()).square().mean(dim=dims)  # [B]
    with torch.no_grad():
        disp = (composed.float() - x_start.float()).square().mean(dim=dims)
    per_sample = gap / (disp + form.eps) if form.normalize == "displacement" else gap
    loss = per_sample.mean()
    stats = {"sc_loss": loss.item(), "sc_gap": gap.mean().item(), "sc_displacement": disp.mean().item()}
    return loss, stats


def sc_term(
    student: Denoiser,
    x_s: torch.Tensor,
    triplet: SCTriplet,
    *,
    transition: str = "renoise",
    generator: Optional[torch.Generator] = None,
    noise: Optional[torch.Tensor] = None,
    form: SCForm = SCForm(),
) -> tuple[torch.Tensor, dict]:
    """The SC loss from the student's own state x_s (a rollout state at triplet.sigma_s): `sc_paths` then
    `sc_loss`. For renoise the shared ε is `noise` or drawn from `generator`. Stats gain the triplet."""
    if transition == "renoise" and noise is None:
        noise = draw(x_s.shape, generator, x_s.device)
    direct, composed = sc_paths(student, x_s, triplet, transition=transition, noise=noise, stop_grad=form.stop_grad)
    loss, stats = sc_loss(direct, composed, x_s.detach(), form)
    stats.update(sc_steps=triplet.steps, sc_index=triplet.index, sc_t_s=1000.0 * triplet.sigma_s)
    return loss, stats
