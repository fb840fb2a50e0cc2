"""The held-out split: a fixed, deterministic set of (colour, shape, motion) combinations that
training never shows; evaluation prompts are built from them (every word is still in training)."""
from __future__ import annotations

import itertools
import zlib

from .attributes import COLOURS, MOTIONS, SHAPES

HELD_OUT_MODULUS = 8  # about 1 in 8 combinations is held out
SPLITS = ("train", "heldout", "any")


def is_held_out(colour: str, shape: str, motion: str) -> bool:
    """True for the combinations reserved for evaluation. Stable across runs and machines (CRC32)."""
    return zlib.crc32(f"{colour}|{shape}|{motion}".encode()) % HELD_OUT_MODULUS == 0


def held_out_combos() -> tuple[tuple[str, str, str], ...]:
    return tuple(c for c in itertools.product(COLOURS, SHAPES, MOTIONS) if is_held_out(*c))


def scene_split(scene) -> str:
    """'heldout' if any object of the scene is a held-out combination, else 'train'."""
    held = any(o.colour and o.motion and is_held_out(*o.combo) for o in scene.objects)
    return "heldout" if held else "train"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return split
