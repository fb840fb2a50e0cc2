"""Prompt -> Scene (what the prompt says; unsaid fields None), so the judge can score any prompt.

    parse_prompt("a red ball slides right on a grey background")
      -> ParsedPrompt(scene=Scene((ObjectSpec('circle', 'red', 'right'),), 'gray'), unknown_words=())

How: normalise; cut out the background phrase ("on|against a <words> background"); every shape
word starts an object; the colour/size words just before it describe it; the words after it, up
to the next object, are its motion, read by keywords (priority: still, bounce, orbit, grow, shrink,
then directions, one vertical + one horizontal = diagonal). Words outside `vocabulary()` are
reported in `unknown_words`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from salt_core.text.tokenizer import normalize

from .grammar import vocabulary
from .phrases import (BACKGROUND_PREPOSITIONS, BACKGROUND_WORDS, COLOUR_WORDS, DETERMINERS, DIRECTION_KEYWORDS,
                      MOTION_KEYWORDS, SHAPE_WORDS, SIZE_WORDS)
from .scene import MAX_OBJECTS, ObjectSpec, Scene


@dataclass(frozen=True)
class ParsedPrompt:
    scene: Scene
    unknown_words: tuple[str, ...]


def _invert(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {w: name for name, words in table.items() for w in words}


_SHAPE = _invert(SHAPE_WORDS)
_COLOUR = _invert(COLOUR_WORDS)
_SIZE = _invert(SIZE_WORDS)
_BACKGROUND = _invert(BACKGROUND_WORDS)


@lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    return frozenset(vocabulary())


def _cut_background(words: list[str]) -> tuple[list[str], Optional[str]]:
    """Remove '<on|against> a <bg words> background' -> (remaining words, background or None)."""
    if "background" not in words:
        return words, None
    end = words.index("background")
    for start in range(end - 1, -1, -1):
        phrase = " ".join(words[start:end])
        if phrase in _BACKGROUND:
            lo = start
            if lo > 0 and words[lo - 1] in DETERMINERS:
                lo -= 1
            if lo > 0 and words[lo - 1] in BACKGROUND_PREPOSITIONS:
                lo -= 1
            return words[:lo] + words[end + 1:], _BACKGROUND[phrase]
    return words[:end] + words[end + 1:], None


def motion_from_words(words: list[str]) -> Optional[str]:
    present = set(words)
    for motion, keys in MOTION_KEYWORDS:
        if present & keys:
            return motion
    vertical = [d for d in ("up", "down") if present & DIRECTION_KEYWORDS[d]]
    horizontal = [d for d in ("right", "left") if present & DIRECTION_KEYWORDS[d]]
    if len(vertical) > 1 or len(horizontal) > 1:
        return None  # contradictory ("up and down" without a bounce word)
    if vertical and horizontal:
        return f"{vertical[0]}_{horizontal[0]}"
    return (vertical or horizontal or [None])[0]


def parse_prompt(text: str) -> ParsedPrompt:
    words = normalize(text)
    unknown = tuple(w for w in words if w not in _known())
    words, background = _cut_background(words)
    nouns = [i for i, w in enumerate(words) if w in _SHAPE]
    if not nouns:
        raise ValueError(f"parse_prompt: no shape word in {text!r}; shapes: {sorted(_SHAPE)}")
    if len(nouns) > MAX_OBJECTS:
        raise ValueError(f"parse_prompt: {len(nouns)} objects in {text!r}; at most {MAX_OBJECTS}")
    starts = []  # index of each object's first word (determiner / size / colour before its noun)
    for n in nouns:
        i = n
        while i > 0 and (words[i - 1] in _COLOUR or words[i - 1] in _SIZE or words[i - 1] in DETERMINERS):
            i -= 1
        starts.append(i)
    objects = []
    for k, n in enumerate(nouns):
        adjectives = words[starts[k]:n]
        colours = [_COLOUR[w] for w in adjectives if w in _COLOUR]
        sizes = [_SIZE[w] for w in adjectives if w in _SIZE]
        tail = words[n + 1: starts[k + 1] if k + 1 < len(nouns) else len(words)]
        objects.append(ObjectSpec(shape=_SHAPE[words[n]], colour=colours[-1] if colours else None,
                                  motion=motion_from_words(tail), size=sizes[-1] if sizes else None))
    return ParsedPrompt(Scene(tuple(objects), background), unknown)
