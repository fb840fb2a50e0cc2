"""A walk: a denoiser driven over a step grid with a transition between its levels.

From the state x_0 at the grid's first level, step i predicts x̂0(x_i, σ_i) and moves to σ_{i+1} (the terminal
level 0 is implicit, where the transition returns x̂0). The walk records the states it is asked to, puts gradient
only on the forward of the exit step (when asked and when the caller's grad mode allows; every other forward runs
without a graph and each state is detached), and can stop early once what is needed exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Collection, Optional, Sequence

import torch

from ..schedules import StepGrid
from .denoiser import Denoiser, predict_x0
from .noise import draw
from .transitions import check_transition, transition_step


@dataclass
class StepEvent:
    """What happened at step i: from x (level sigma) via the flow v and x0 = x − σ·v to x_next (level sigma_next,
    None when the walk stops here). noise: the ε the renoise transition used (None for ode, or where no
    transition ran). At the exit step of a walk with grad, v and x0 carry the forward's graph."""

    index: int
    steps: int
    sigma: float
    sigma_next: float
    x: torch.Tensor
    x0: torch.Tensor
    noise: Optional[torch.Tensor]
    x_next: Optional[torch.Tensor]
    denoiser: Denoiser
    v: Optional[torch.Tensor] = None


@dataclass(frozen=True)
class Move:
    """How one step moves to the next level when a walk is given explicit moves: `kind` "renoise" or "ode";
    `noise` the ε to re-noise with (None: a fresh draw from the walk's generator)."""

    kind: str
    noise: Optional[torch.Tensor] = None


@dataclass
class WalkResult:
    sample: torch.Tensor  # x̂0 of the exit step (with its forward's graph when it carried gradient)
    exit_step: int
    states: dict[int, torch.Tensor] = field(default_factory=dict)  # step i -> detached x_i, for the steps recorded


@dataclass(frozen=True)
class Walk:
    """A step grid and the transition between its levels ("renoise": fresh ε; "ode": deterministic)."""

    grid: StepGrid
    transition: str = "renoise"

    def __post_init__(self) -> None:
        check_transition(self.transition)

    @property
    def steps(self) -> int:
        return self.grid.steps

    def run(
        self,
        denoiser: Denoiser,
        x: torch.Tensor,
        generator: Optional[torch.Generator] = None,
        *,
        exit_step: Optional[int] = None,
        until: Optional[int] = None,
        grad: bool = False,
        record: Collection[int] = (),
        on_step: Optional[Callable[[StepEvent], None]] = None,
        moves: Optional[Sequence[Move]] = None,
    ) -> WalkResult:
        """Walk from x [B, C, T, H, W] (the state at the first level).

        exit_step: the step whose x̂0 is the sample (default: the last, i.e. a full K-step sample).
        until: walk on (no gradient) through this step, past the exit, e.g. to record a later state.
        grad: the exit step's forward carries gradient (under the caller's grad mode); no other does.
        record: step indices whose states are kept (detached).
        generator: source of the renoise draws (one per transition into a level above 0).
        on_step: called after every step with its StepEvent.
        moves: per-step transitions overriding the walk's own (e.g. a reference path that re-uses another walk's
          noise draws, or takes ODE steps between them); moves[i] leads from level i to level i+1.
        """
        K = self.steps
        exit_step = K - 1 if exit_step is None else int(exit_step)
        if not 0 <= exit_step < K:
            raise ValueError(f"exit step {exit_step} is outside the grid's steps 0..{K - 1}")
        last = exit_step if until is None else max(exit_step, int(until))
        if last >= K:
            raise ValueError(f"step {until} to walk until is outside the grid's steps 0..{K - 1}")
        if moves is not None and len(moves) < last:
            raise ValueError(f"{len(moves)} moves given for a walk of {last} transitions")
        kinds = [m.kind for m in moves[:last]] if moves is not None else [self.transition] * last
        for kind in set(kinds):
            check_transition(kind)
        needs_draws = any(k == "renoise" and (moves is None or moves[i].noise is None) for i, k in enumerate(kinds))
        if needs_draws and generator is None:
            raise ValueError("transition 'renoise' needs a generator for its noise draws")
        outer = torch.is_grad_enabled()
        sig = self.grid.with_terminal()
        states: dict[int, torch.Tensor] = {}
        sample = None
        for i in range(last + 1):
            x = x.detach()
            if i in record:
                states[i] = x
            with torch.set_grad_enabled(outer and grad and i == exit_step):
                v = denoiser.velocity(x, sig[i])
                x0 = predict_x0(x, v, sig[i])
            if i == exit_step:
                sample = x0
            noise = x_next = None
            if i < last:
                kind = kinds[i]
                if kind == "renoise" and sig[i + 1] > 0:
                    given = moves[i].noise if moves is not None else None
                    noise = draw(x.shape, generator, x.device) if given is None else given.to(x)
                x_next = transition_step(x, x0.detach(), sig[i], sig[i + 1], kind, noise)
            if on_step is not None:
                on_step(StepEvent(i, K, sig[i], sig[i + 1], x, x0, noise, x_next, denoiser, v))
            if x_next is not None:
                x = x_next
        return WalkResult(sample, exit_step, states)
