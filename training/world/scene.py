"""Structured descriptions of a clip: what the prompt says, and (when complete) what is rendered.

A `Scene` from `sample_scene` is complete (every field set) and renders exactly. A `Scene` from
`parse_prompt` holds only what the prompt says; unsaid fields are None (the judge skips them,
`complete_scene` fills them in deterministically for rendering).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from .attributes import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, SIZES, check_name

MAX_OBJECTS = 3


@dataclass(frozen=True)
class ObjectSpec:
    shape: str
    colour: Optional[str] = None
    motion: Optional[str] = None
    size: Optional[str] = None
    start: Optional[tuple[float, float]] = None  # (x, y) at t=0, fractions of width / height

    def __post_init__(self) -> None:
        check_name("shape", self.shape, SHAPES)
        if self.colour is not None:
            check_name("colour", self.colour, COLOURS)
        if self.motion is not None:
            check_name("motion", self.motion, MOTIONS)
        if self.size is not None:
            check_name("size", self.size, SIZES)
        if self.start is not None:
            start = tuple(float(v) for v in self.start)
            if len(start) != 2 or not all(0.0 <= v <= 1.0 for v in start):
                raise ValueError(f"ObjectSpec.start must be (x, y) with both in [0, 1], got {self.start!r}")
            object.__setattr__(self, "start", start)

    @property
    def complete(self) -> bool:
        return None not in (self.colour, self.motion, self.size, self.start)

    @property
    def combo(self) -> tuple[Optional[str], str, Optional[str]]:
        """(colour, shape, motion): the unit of the held-out split."""
        return (self.colour, self.shape, self.motion)


@dataclass(frozen=True)
class Scene:
    objects: tuple[ObjectSpec, ...]
    background: Optional[str] = None

    def __post_init__(self) -> None:
        objects = tuple(self.objects)
        if not 1 <= len(objects) <= MAX_OBJECTS:
            raise ValueError(f"Scene.objects must hold 1..{MAX_OBJECTS} objects, got {len(objects)}")
        if not all(isinstance(o, ObjectSpec) for o in objects):
            raise ValueError("Scene.objects must be ObjectSpec instances")
        colours = [o.colour for o in objects if o.colour is not None]
        if len(set(colours)) != len(colours):
            raise ValueError("Scene: objects must have different colours (they are told apart by colour), "
                             f"got {colours}")
        object.__setattr__(self, "objects", objects)
        if self.background is not None:
            check_name("background", self.background, BACKGROUNDS)

    @property
    def complete(self) -> bool:
        return self.background is not None and all(o.complete for o in self.objects)

    def with_objects(self, objects) -> "Scene":
        return replace(self, objects=tuple(objects))
