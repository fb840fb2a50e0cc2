"""Prompts from scenes: a small grammar with paraphrases, and the vocabulary it can produce.

    prompt_for(scene, seed=3)  ->  "a small red ball slides right on a black background"
                                   "red circle going right against a grey background"
                                   "on a navy background, the red dot moves to the right"
                                   "a red circle moves left and a blue box rises"
Size and background are optional in a prompt; colour, shape and motion are always said.
"""
from __future__ import annotations

import random

from salt_core.text.tokenizer import normalize

from .phrases import (BACKGROUND_PREPOSITIONS, BACKGROUND_WORDS, COLOUR_WORDS, CONNECTORS, DETERMINERS,
                      MOTION_PHRASES, SHAPE_WORDS, SIZE_WORDS)
from .scene import Scene

SIZE_SAID = 0.5        # probability that a prompt says the size
BACKGROUND_SAID = 0.6  # ... and the background
SINGLE_TEMPLATES = ("finite", "participle", "fronted")
MULTI_TEMPLATES = ("and", "while", "participle")


def _noun_phrase(obj, rng: random.Random) -> str:
    words = []
    if obj.size is not None and rng.random() < SIZE_SAID:
        words.append(rng.choice(SIZE_WORDS[obj.size]))
    words.append(rng.choice(COLOUR_WORDS[obj.colour]))
    words.append(rng.choice(SHAPE_WORDS[obj.shape]))
    return " ".join(words)


def _background_phrase(background: str, rng: random.Random) -> str:
    return f"{rng.choice(BACKGROUND_PREPOSITIONS)} a {rng.choice(BACKGROUND_WORDS[background])} background"


def prompt_for(scene: Scene, seed: int = 0) -> str:
    """A prompt that says the scene's colours, shapes and motions (and maybe sizes and background)."""
    missing = [f for o in scene.objects for f in ("colour", "motion") if getattr(o, f) is None]
    if missing:
        raise ValueError(f"prompt_for: every object needs a colour and a motion; missing {sorted(set(missing))}")
    rng = random.Random(f"salt-world:prompt:{seed}")
    objects = scene.objects
    say_bg = scene.background is not None and rng.random() < BACKGROUND_SAID
    bg = _background_phrase(scene.background, rng) if say_bg else ""
    nps = [_noun_phrase(o, rng) for o in objects]
    if len(objects) == 1:
        template = rng.choice(SINGLE_TEMPLATES if say_bg else SINGLE_TEMPLATES[:2])
        finite, participle = MOTION_PHRASES[objects[0].motion]
        if template == "finite":
            text = f"{rng.choice(DETERMINERS)} {nps[0]} {rng.choice(finite)}"
        elif template == "participle":
            text = f"{nps[0]} {rng.choice(participle)}"
        else:
            return f"{bg}, {rng.choice(DETERMINERS)} {nps[0]} {rng.choice(finite)}"
        return f"{text} {bg}".strip()
    template = rng.choice(MULTI_TEMPLATES)
    if template == "participle":
        clauses = [f"{np} {rng.choice(MOTION_PHRASES[o.motion][1])}" for np, o in zip(nps, objects)]
    else:
        clauses = [f"{rng.choice(DETERMINERS)} {np} {rng.choice(MOTION_PHRASES[o.motion][0])}"
                   for np, o in zip(nps, objects)]
    joiner = " while " if template == "while" else " and "
    return f"{joiner.join(clauses)} {bg}".strip()


def max_prompt_words(objects: int = 2) -> int:
    """The longest prompt the grammar can produce, in words (for the text encoder's max_len)."""
    def longest(options) -> int:
        return max(len(normalize(o)) for o in options)

    noun = 1 + max(longest(w) for w in SIZE_WORDS.values()) + max(longest(w) for w in COLOUR_WORDS.values()) \
        + max(longest(w) for w in SHAPE_WORDS.values())
    motion = max(longest(f + p) for f, p in MOTION_PHRASES.values())
    background = 3 + max(longest(w) for w in BACKGROUND_WORDS.values())
    return objects * (1 + noun + motion) - 1 + background


def vocabulary() -> tuple[str, ...]:
    """Every word the grammar can produce, sorted (the tiny text encoder's vocabulary)."""
    pieces: list[str] = [*DETERMINERS, *BACKGROUND_PREPOSITIONS, *CONNECTORS, "background"]
    for table in (SHAPE_WORDS, COLOUR_WORDS, SIZE_WORDS, BACKGROUND_WORDS):
        for words in table.values():
            pieces.extend(words)
    for finite, participle in MOTION_PHRASES.values():
        pieces.extend(finite)
        pieces.extend(participle)
    return tuple(sorted({w for p in pieces for w in normalize(p)}))
