"""Salt's released mixed step lists and the reference path of its TRD loss, as data.

Per iteration the release draws ONE step list (8, 4 or 2 steps, probabilities 0.4/0.4/0.2) and ONE exit
index, uniform over that list's steps, shared by every chunk of the rollout. SC runs only on 8-step draws.
A reference rollout (same generator, same initial noise, its own KV cache, more steps) runs only for
2-step draws with a non-zero exit index, on the 4-step list; it stops at the student's exit level.
`reference_path` says, step by step, how that reference moves between its levels in each noise mode.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from salt_core.schedules import StepGrid

NOISE_MODES = ("independent", "noise_aligned_a", "noise_aligned_b")
_SAME = 1e-6  # model-timestep tolerance when matching levels of two lists


@dataclass(frozen=True)
class StepListDraw:
    steps: int  # K of the drawn list
    exit_index: int  # 0..K−1, the step whose forward carries gradient (every chunk)


def draw_step_list(
    step_counts: Sequence[int], probs: Sequence[float], generator: Optional[torch.Generator] = None
) -> StepListDraw:
    """One step count K with probability probs[i], then the exit index uniform over 0..K−1."""
    counts = [int(k) for k in step_counts]
    p = [float(x) for x in probs]
    if not counts or min(counts) < 1:
        raise ValueError(f"step counts must be positive, got {counts}")
    if len(p) != len(counts) or min(p) < 0 or abs(sum(p) - 1.0) > 1e-6:
        raise ValueError(f"step-list probabilities {p} must be {len(counts)} non-negative numbers summing to 1 "
                         f"(one per step count {counts})")
    k = counts[int(torch.multinomial(torch.tensor(p), 1, generator=generator))]
    return StepListDraw(k, int(torch.randint(0, k, (1,), generator=generator)))


def reference_steps(draw: StepListDraw, pairs: Sequence[tuple[int, int]] = ((2, 4),)) -> Optional[int]:
    """K of the reference rollout for a draw (None = no reference, hence no TRD this iteration).

    pairs: (student K, reference K); the release uses ((2, 4),) and skips exit index 0."""
    if draw.exit_index == 0:
        return None
    for student, reference in pairs:
        if draw.steps == int(student):
            return int(reference)
    return None


@dataclass(frozen=True)
class ReferenceStep:
    t_from: float  # model timestep of the reference forward
    t_to: float  # level it moves to
    kind: str  # "renoise" (x̂0 re-noised) or "ode" (Euler step along the predicted flow)
    noise_from: Optional[float]  # student level whose re-noise draw is reused; None = fresh noise


def reference_path(
    reference: StepGrid, student: StepGrid, exit_index: int, *, mode: str = "independent",
    transition: str = "renoise",
) -> tuple[list[ReferenceStep], float]:
    """The reference rollout of one chunk: (its moves, the level t_stop whose x̂0 is the reference sample).

    The reference walks its own grid from the same initial noise and stops at the first of its levels
    that is not above the student's exit level t_exit (or whose next level is below it). Moves:
    independent      `transition` with fresh noise, like the student's own sampling;
    noise_aligned_a  re-noise to the next level t' with the student's draw of the largest student level
                     <= t' (fresh noise when the student made no draw there);
    noise_aligned_b  re-noise with the student's draw where t' is a level the student re-noised to, an
                     ODE step everywhere else.
    The student re-noises to its levels 1..exit_index before its exit forward; with no such draw
    (exit_index 0) the aligned modes behave like "independent".
    """
    if mode not in NOISE_MODES:
        raise ValueError(f"reference noise mode {mode!r} is unknown; allowed: {list(NOISE_MODES)}")
    if transition not in ("renoise", "ode"):
        raise ValueError(f"transition {transition!r} is unknown; allowed: ['renoise', 'ode']")
    if not 0 <= exit_index < student.steps:
        raise ValueError(f"exit_index {exit_index} is outside the student's steps 0..{student.steps - 1}")
    ref = list(reference.timesteps)
    levels = list(student.timesteps)
    t_exit = levels[exit_index]
    drawn = levels[1 : exit_index + 1]  # levels the student re-noised to, descending
    moves: list[ReferenceStep] = []
    for i, t in enumerate(ref):
        nxt = ref[i + 1] if i + 1 < len(ref) else None
        if abs(t - t_exit) < 1e-3 or nxt is None or (t > t_exit and nxt < t_exit):
            return moves, t
        moves.append(_move(t, nxt, mode if drawn else "independent", transition, levels, drawn))
    raise AssertionError("unreachable: the loop returns at the last reference level")


def _move(t: float, nxt: float, mode: str, transition: str, levels: list[float], drawn: list[float]) -> ReferenceStep:
    if mode == "noise_aligned_a":
        below = [s for s in levels if s <= nxt + _SAME]
        source = below[0] if below and any(abs(below[0] - d) < _SAME for d in drawn) else None
        return ReferenceStep(t, nxt, "renoise", source)
    if mode == "noise_aligned_b":
        match = [d for d in drawn if abs(d - nxt) < _SAME]
        return ReferenceStep(t, nxt, "renoise", match[0]) if match else ReferenceStep(t, nxt, "ode", None)
    return ReferenceStep(t, nxt, transition, None)
