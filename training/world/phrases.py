"""The words of the prompt grammar (data): synonyms of every attribute and the motion phrases.

Rules that keep prompts parseable: no motion phrase uses a shape, colour or size word; every motion
phrase holds one of its motion's keywords (`MOTION_KEYWORDS`), and the keywords of a motion with a
higher priority never appear in a phrase of a lower one.
"""
from __future__ import annotations

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "ball", "dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
    "diamond": ("diamond", "rhombus"),
    "cross": ("cross",),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",),
    "orange": ("orange",),
    "yellow": ("yellow",),
    "green": ("green",),
    "cyan": ("cyan", "turquoise"),
    "blue": ("blue",),
    "purple": ("purple", "violet"),
    "pink": ("pink",),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "medium": ("medium",),
    "large": ("large", "big"),
}
BACKGROUND_WORDS: dict[str, tuple[str, ...]] = {  # phrases between "a" and "background"
    "black": ("black",),
    "white": ("white",),
    "gray": ("gray", "grey"),
    "navy": ("navy", "dark blue"),
    "gradient": ("gradient", "dark gradient"),
}
DETERMINERS = ("a", "the")
BACKGROUND_PREPOSITIONS = ("on", "against")
CONNECTORS = ("and", "while")


# Each motion: (finite phrases: "a red ball <moves right>", participles: "red ball <moving right> ...")
def _straight(d: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return ((f"moves to the {d}", f"moves {d}", f"slides {d}", f"drifts to the {d}", f"travels {d}"),
            (f"moving to the {d}", f"going {d}", f"sliding {d}", f"heading {d}"))


def _diagonal(v: str, h: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    edge = "top" if v == "up" else "bottom"
    return ((f"moves {v} and to the {h}", f"moves diagonally {v} {h}", f"drifts toward the {edge} {h}"),
            (f"moving {v} and to the {h}", f"going diagonally {v} {h}", f"heading toward the {edge} {h}"))


MOTION_PHRASES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "right": _straight("right"),
    "left": _straight("left"),
    "up": (("moves up", "rises", "floats upward", "slides up", "travels up"),
           ("moving up", "going up", "rising", "floating upward")),
    "down": (("moves down", "falls", "sinks", "slides down", "drops"),
             ("moving down", "going down", "falling", "sinking")),
    "up_right": _diagonal("up", "right"),
    "up_left": _diagonal("up", "left"),
    "down_right": _diagonal("down", "right"),
    "down_left": _diagonal("down", "left"),
    "bounce": (("bounces", "bounces up and down", "hops up and down"),
               ("bouncing", "bouncing up and down", "hopping")),
    "grow": (("grows", "gets bigger", "expands", "grows larger"),
             ("growing", "getting bigger", "expanding")),
    "shrink": (("shrinks", "gets smaller", "contracts"),
               ("shrinking", "getting smaller", "contracting")),
    "orbit": (("orbits", "circles around", "goes round and round", "moves in a loop"),
              ("orbiting", "circling around", "going round and round", "moving in a loop")),
    "still": (("stays still", "does not move", "sits still", "rests in place"),
              ("staying still", "sitting still", "resting in place", "not moving")),
}

# Keywords, checked in this priority order; the straight directions come last and combine
# (one vertical + one horizontal word -> a diagonal).
MOTION_KEYWORDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("still", frozenset({"still", "not", "rests", "resting", "stays", "staying"})),
    ("bounce", frozenset({"bounces", "bouncing", "bounce", "hops", "hopping"})),
    ("orbit", frozenset({"orbits", "orbiting", "circles", "circling", "round", "loop"})),
    ("grow", frozenset({"grows", "growing", "bigger", "larger", "expands", "expanding"})),
    ("shrink", frozenset({"shrinks", "shrinking", "smaller", "contracts", "contracting"})),
)
DIRECTION_KEYWORDS: dict[str, frozenset[str]] = {
    "right": frozenset({"right"}),
    "left": frozenset({"left"}),
    "up": frozenset({"up", "upward", "upwards", "top", "rises", "rising", "floats", "floating"}),
    "down": frozenset({"down", "downward", "downwards", "bottom", "falls", "falling", "sinks", "sinking",
                       "drops", "dropping"}),
}
