"""The world's attribute tables (data, not code): shapes, colours, sizes, backgrounds, motions.

Units: positions are fractions of the frame (x of the width, y of the height, y pointing down);
sizes, displacements and speeds are in units of S = min(height, width), so shapes stay round on
any aspect ratio. Times are in seconds (frame index / fps), so motion is the same at any fps.
"""
from __future__ import annotations

import math

# ---- shapes ------------------------------------------------------------------------------------
# Every shape has the area of a circle of the size's radius r; `extent` is its farthest point from
# its centroid in units of r (used to keep objects inside the frame).
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
SQUARE_HALF_SIDE = math.sqrt(math.pi) / 2               # 0.886 r: same area as the circle
DIAMOND_VERTEX = math.sqrt(math.pi / 2)                 # 1.253 r
TRIANGLE_CIRCUMRADIUS = math.sqrt(4 * math.pi / (3 * math.sqrt(3)))  # 1.555 r, apex up
CROSS_ARM = math.sqrt(math.pi / 2.04)                   # 1.241 r: arms 2L x 2w, w = 0.3 L
CROSS_HALF_WIDTH = 0.3 * CROSS_ARM
SHAPE_EXTENT: dict[str, float] = {
    "circle": 1.0,
    "square": SQUARE_HALF_SIDE * math.sqrt(2),
    "triangle": TRIANGLE_CIRCUMRADIUS,
    "diamond": DIAMOND_VERTEX,
    "cross": math.hypot(CROSS_ARM, CROSS_HALF_WIDTH),
}

# ---- colours (sRGB in 0..1) -------------------------------------------------------------------
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "orange": (1.00, 0.55, 0.05),
    "yellow": (0.95, 0.90, 0.10),
    "green": (0.10, 0.70, 0.20),
    "cyan": (0.10, 0.85, 0.90),
    "blue": (0.05, 0.40, 1.00),
    "purple": (0.62, 0.12, 0.78),
    "pink": (1.00, 0.50, 0.78),
}

# ---- sizes: radius of the equal-area circle, in units of S -------------------------------------
SIZES: dict[str, float] = {"small": 0.09, "medium": 0.13, "large": 0.18}

# ---- backgrounds: (top colour, bottom colour); plain ones have both equal -----------------------
BACKGROUNDS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "black": ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    "white": ((0.96, 0.96, 0.96), (0.96, 0.96, 0.96)),
    "gray": ((0.45, 0.45, 0.45), (0.45, 0.45, 0.45)),
    "navy": ((0.04, 0.06, 0.28), (0.04, 0.06, 0.28)),
    "gradient": ((0.30, 0.30, 0.36), (0.02, 0.02, 0.05)),
}
MIN_CONTRAST = 30.0  # CIE76 delta E an object colour must keep from every background colour

# ---- motions ----------------------------------------------------------------------------------
DIRECTIONS: dict[str, tuple[float, float]] = {  # unit (dx, dy), y down
    "right": (1.0, 0.0),
    "left": (-1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
    "up_right": (math.sqrt(0.5), -math.sqrt(0.5)),
    "up_left": (-math.sqrt(0.5), -math.sqrt(0.5)),
    "down_right": (math.sqrt(0.5), math.sqrt(0.5)),
    "down_left": (-math.sqrt(0.5), math.sqrt(0.5)),
}
MOTIONS: tuple[str, ...] = tuple(DIRECTIONS) + ("bounce", "grow", "shrink", "orbit", "still")

SPEED = 0.22            # S per second, straight motions (they wrap around the frame edges)
BOUNCE_HEIGHT = 0.30    # S, peak height above the start (the floor)
BOUNCE_PERIOD = 1.0     # seconds per hop
ORBIT_RADIUS = 0.17     # S
ORBIT_PERIOD = 2.0      # seconds per turn, counter-clockwise as seen on screen
GROW_SCALES = (0.55, 1.45)  # size multiplier: grow goes low -> high, shrink high -> low ...
GROW_SECONDS = 2.0          # ... linearly over this time, then holds
NOMINAL_SECONDS = 2.0   # objects are placed to stay fully inside the frame this long


def check_name(kind: str, value: str, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; allowed: {sorted(allowed)}")
    return value
