"""Deterministic scenes from a seed, placed so that objects stay inside the frame (and apart) for
NOMINAL_SECONDS.

    scene = sample_scene(7)                      # a training scene
    scene = sample_scene(7, split="heldout")     # its first object is a held-out combination
    scene = complete_scene(parse_prompt("a red circle moves left").scene, seed=0)
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Optional

import torch

from .attributes import BACKGROUNDS, MOTIONS, NOMINAL_SECONDS, SHAPE_EXTENT, SHAPES, SIZES
from .motion import offset_and_scale
from .palette import colours_for
from .scene import MAX_OBJECTS, ObjectSpec, Scene
from .split import check_split, is_held_out

TWO_OBJECT_PROBABILITY = 0.3
MULTI_OBJECT_SIZES = ("small", "medium")  # two objects must both fit and stay apart
PLACEMENT_TRIES = 64
_TIMES = torch.linspace(0.0, NOMINAL_SECONDS, 33, dtype=torch.float64)  # [T] placement check times


def _rng(kind: str, seed: int) -> random.Random:
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    return random.Random(f"salt-world:{kind}:{seed}")


def _pick_combo(rng: random.Random, colours: list[str], split: str, held: bool):
    """-> (colour, shape, motion) with is_held_out == held (or anything when split == 'any')."""
    for _ in range(1000):
        combo = (rng.choice(colours), rng.choice(SHAPES), rng.choice(MOTIONS))
        if split == "any" or is_held_out(*combo) == held:
            return combo
    raise ValueError(f"no {'held-out' if held else 'training'} combination among colours {colours}")


def _extent_track(obj: ObjectSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> dx, dy (offset from start), reach (farthest point from centre), each [T] in units of S."""
    dx, dy, scale = offset_and_scale(obj.motion, _TIMES)
    return dx, dy, SIZES[obj.size] * SHAPE_EXTENT[obj.shape] * scale


def _start_box(obj: ObjectSpec) -> tuple[tuple[float, float], tuple[float, float]]:
    """Ranges of start x and y (square frame) keeping the object fully inside over _TIMES."""
    dx, dy, reach = _extent_track(obj)
    box = []
    for d in (dx, dy):
        lo, hi = float((reach - d).max()), float((1.0 - reach - d).min())
        box.append((lo, hi) if lo <= hi else (0.5, 0.5))
    return box[0], box[1]


def _min_gap(a: ObjectSpec, b: ObjectSpec) -> float:
    """Smallest distance between the two objects' outlines (equal-area circles) over _TIMES."""
    ax, ay, ar = _extent_track(a)
    bx, by, br = _extent_track(b)
    dist = torch.hypot(a.start[0] + ax - b.start[0] - bx, a.start[1] + ay - b.start[1] - by)
    size_a, size_b = ar / SHAPE_EXTENT[a.shape], br / SHAPE_EXTENT[b.shape]
    return float((dist - size_a - size_b).min())


def _place(obj: ObjectSpec, placed: list[ObjectSpec], rng: random.Random) -> ObjectSpec:
    (x0, x1), (y0, y1) = _start_box(obj)
    best, best_gap = None, -float("inf")
    for _ in range(PLACEMENT_TRIES):
        cand = replace(obj, start=(rng.uniform(x0, x1), rng.uniform(y0, y1)))
        gap = min((_min_gap(cand, p) for p in placed), default=float("inf"))
        if gap > 0.03:
            return cand
        if gap > best_gap:
            best, best_gap = cand, gap
    return best


def complete_scene(scene: Scene, seed: int = 0) -> Scene:
    """Fill every None field (background, colour, motion, size, start) deterministically by seed."""
    rng = _rng("complete", seed)
    background = scene.background or rng.choice(list(BACKGROUNDS))
    used = {o.colour for o in scene.objects if o.colour}
    many = len(scene.objects) > 1
    done: list[ObjectSpec] = []
    for obj in scene.objects:
        colour = obj.colour
        if colour is None:
            colour = rng.choice([c for c in colours_for(background) if c not in used])
            used.add(colour)
        obj = replace(obj, colour=colour, motion=obj.motion or rng.choice(MOTIONS),
                      size=obj.size or rng.choice(MULTI_OBJECT_SIZES if many else tuple(SIZES)))
        done.append(obj if obj.start is not None else _place(obj, done, rng))
    return Scene(tuple(done), background)


def sample_scene(seed: int, split: str = "train", objects: Optional[int] = None) -> Scene:
    """A complete scene, deterministic by (seed, split). split: 'train' (no held-out combination),
    'heldout' (first object held out, others not), 'any'. objects: 1..3, or None for 1 or 2 at random."""
    check_split(split)
    rng = _rng(split, seed)
    if objects is None:
        objects = 2 if rng.random() < TWO_OBJECT_PROBABILITY else 1
    if not isinstance(objects, int) or not 1 <= objects <= MAX_OBJECTS:
        raise ValueError(f"objects must be an int in 1..{MAX_OBJECTS} or None, got {objects!r}")
    background = rng.choice(list(BACKGROUNDS))
    colours = list(colours_for(background))
    sizes = MULTI_OBJECT_SIZES if objects > 1 else tuple(SIZES)
    placed: list[ObjectSpec] = []
    for i in range(objects):
        colour, shape, motion = _pick_combo(rng, colours, split, held=(split == "heldout" and i == 0))
        colours.remove(colour)
        obj = ObjectSpec(shape=shape, colour=colour, motion=motion, size=rng.choice(sizes))
        placed.append(_place(obj, placed, rng))
    return Scene(tuple(placed), background)


def heldout_scenes(count: int, seed: int = 0) -> list[Scene]:
    """The evaluation scenes: `count` deterministic scenes whose first object is a held-out combination."""
    return [sample_scene(seed * 1_000_003 + i, split="heldout") for i in range(count)]
