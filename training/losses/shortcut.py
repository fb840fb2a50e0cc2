"""Salt's released shortcut-consistency loss (the form its public training code computes), beside our own
semigroup form in `self_consistency.py`.

Timesteps t live on the 0..1000 model scale (σ = t/1000; the step lists are already shift-warped). On a
chunk's exit step the student predicts the flow v₁ = G(x_s, t_s) (flow v = ε − x0, so an Euler step
from t to t' is x − (t − t')/1000 · v). Two Euler paths from x_s to t_e:

    direct    x_e¹ = x_s − (t_s − t_e)/1000 · v₁                      (carries the gradient)
    composed  x_m = x_s − (t_s − t_m)/1000 · sg(v₁),  v₂ = G(x_m, t_m) without gradient,
              x_e² = x_m − (t_m − t_e)/1000 · v₂                      (a constant target)

form "endpoint" (the released default, `scfm_use_latent_target`):
    L = mean_b [ w · mean((x_e¹ − x_e²)²) ],  w = (1 − t_s/1000)
form "average_velocity" (the legacy switch of the same pipeline, and the streaming pipeline): v₁ is
regressed onto the average velocity of the composed path, ((t_s − t_m)·sg(v₁) + (t_m − t_e)·v₂) / (t_s − t_e).
The weight is (1 − t_s/1000)^p: p = 1 in the standard pipeline (both forms), p = 2 in the streaming one.

`shortcut_times` picks (t_m, t_e) from the drawn step list the way the release does.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

FORMS = ("endpoint", "average_velocity")
TIME_RULES = ("segments", "half")
VelocityFn = Callable[[torch.Tensor, float], torch.Tensor]


def _wide(t: torch.Tensor) -> torch.Tensor:
    """float32 at least (float64 stays float64)."""
    return t if t.dtype == torch.float64 else t.float()


def _check_times(t_s: float, t_m: float, t_e: float) -> None:
    if not 0.0 <= t_e <= t_m < t_s <= 1000.0:
        raise ValueError(f"shortcut times must satisfy 0 <= t_e <= t_m < t_s <= 1000, "
                         f"got t_s={t_s}, t_m={t_m}, t_e={t_e}")


def shortcut_consistency_loss(
    x_s: torch.Tensor,
    v1: torch.Tensor,
    v2: Union[torch.Tensor, VelocityFn],
    t_s: float,
    t_m: float,
    t_e: float,
    *,
    form: str = "endpoint",
    weight_power: Optional[int] = None,
    x_m: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, dict]:
    """The released SC loss from the exit-step state x_s [B, ...] and its flow v1 [B, ...] (with graph).

    v2: the flow at the composed midpoint, or a callable `v2(x_m, t_m) -> v2` that is run here under
      no_grad on x_m = x_s − (t_s − t_m)/1000 · sg(v1) (e.g. the student bound to the same KV cache).
    t_s > t_m >= t_e: model timesteps (0..1000). t_m = t_e (the release's fallback when no grid point lies
      between) makes both paths one step and the loss 0.
    form: "endpoint" or "average_velocity" (see the module docstring).
    weight_power: p of the weight (1 − t_s/1000)^p; None = 1 for "endpoint", 2 for "average_velocity"
      (the streaming pipeline); the standard pipeline's legacy average-velocity mode uses p = 1.
    x_m: the composed midpoint state (no grad); default the Euler step above. The streaming pipeline in
      its "sde" mode re-noises sg(x̂0) to t_m with fresh noise instead.
    mask: optional tensor broadcastable to x_s (the release's gradient mask); masked elements count as
      zero inside the per-sample mean over all elements, as the release does.
    Gradient flows only through v1 on the direct side. Returns (loss, stats {"sc_loss", "sc_gap",
    "sc_weight", "sc_t_s", "sc_t_m", "sc_t_e"}); sc_gap is the unweighted mean squared difference.
    """
    if form not in FORMS:
        raise ValueError(f"shortcut form {form!r} is unknown; allowed: {list(FORMS)}")
    if v1.shape != x_s.shape:
        raise ValueError(f"v1 {tuple(v1.shape)} must have the shape of x_s {tuple(x_s.shape)}")
    t_s, t_m, t_e = float(t_s), float(t_m), float(t_e)
    _check_times(t_s, t_m, t_e)
    dt1, dt2, total = (t_s - t_m) / 1000.0, (t_m - t_e) / 1000.0, (t_s - t_e) / 1000.0
    x_s = x_s.detach()
    with torch.no_grad():
        x_m = x_s - dt1 * v1.detach() if x_m is None else x_m.detach()
        v2 = v2(x_m, t_m) if callable(v2) else v2
        v2 = _wide(v2.detach())
    if v2.shape != x_s.shape:
        raise ValueError(f"v2 {tuple(v2.shape)} must have the shape of x_s {tuple(x_s.shape)}")
    if form == "endpoint":
        pred = _wide(x_s) - total * _wide(v1)
        target = _wide(x_m) - dt2 * v2
    else:
        pred = _wide(v1)
        target = (dt1 * _wide(v1.detach()) + dt2 * v2) / total
    power = (1 if form == "endpoint" else 2) if weight_power is None else int(weight_power)
    weight = (1.0 - t_s / 1000.0) ** power
    sq = (pred - target).square()
    if mask is not None:
        sq = sq * mask.to(sq.dtype)
    gap = sq.mean(dim=tuple(range(1, sq.ndim)))  # [B]
    loss = (gap * weight).mean()
    stats = {"sc_loss": loss.item(), "sc_gap": gap.mean().item(), "sc_weight": weight,
             "sc_t_s": t_s, "sc_t_m": t_m, "sc_t_e": t_e}
    return loss, stats


def _pick(options: Sequence[float], generator: Optional[torch.Generator]) -> float:
    return float(options[int(torch.randint(0, len(options), (1,), generator=generator))])


def shortcut_times(
    timesteps: Sequence[float],
    exit_index: int,
    *,
    rule: str = "segments",
    num_segments: int = 4,
    generator: Optional[torch.Generator] = None,
) -> Optional[tuple[float, float, float]]:
    """(t_s, t_m, t_e) of the SC comparison on the exit step of a drawn step list, or None on the last
    step (the release computes no SC there).

    timesteps: the list's model timesteps, descending, without 0 (e.g. the warped 8-step list).
    rule "segments" (the released latent-target mode): the list is cut into `num_segments` segments,
      boundaries b = [t_0, t_{L/n}, t_{2L/n}, …, 0]; t_e is drawn uniformly among the (at most) two
      largest boundaries below t_{exit+1}, then t_m uniformly among the list's points strictly between
      t_e and t_s (t_{exit+1} is always one).
    rule "half" (the legacy / streaming mode): t_m = t_{exit+1+k}, k uniform in 0..L−exit−2; t_e is the
      list's middle point t_{L//2} when t_m comes before it, else 0.
    """
    if rule not in TIME_RULES:
        raise ValueError(f"shortcut time rule {rule!r} is unknown; allowed: {list(TIME_RULES)}")
    ts = [float(t) for t in timesteps]
    L = len(ts)
    if any(a <= b for a, b in zip(ts, ts[1:])) or not ts or ts[-1] <= 0:
        raise ValueError(f"timesteps must be positive and strictly decreasing, got {ts}")
    if not 0 <= exit_index < L:
        raise ValueError(f"exit_index {exit_index} is outside the list's steps 0..{L - 1}")
    if exit_index == L - 1:
        return None
    t_s = ts[exit_index]
    if rule == "half":
        mid = exit_index + 1 + int(torch.randint(0, L - exit_index - 1, (1,), generator=generator))
        return t_s, ts[mid], (ts[L // 2] if mid < L // 2 else 0.0)
    if num_segments < 1:
        raise ValueError(f"num_segments must be >= 1, got {num_segments}")
    boundaries = [ts[0]] + [ts[i * L // num_segments] for i in range(1, num_segments)] + [0.0]
    below = sorted((b for b in boundaries if b < ts[exit_index + 1]), reverse=True)  # duplicates kept, as released
    t_e = _pick(below[:2], generator)
    t_m = _pick([t for t in ts if t_e < t < t_s], generator)
    return t_s, t_m, t_e
