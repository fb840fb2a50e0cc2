"""The judge's constants (data): dimension weights of the total and the scales that map each
measurement to a score in [0, 1]. Distances are CIE76 delta E in Lab; lengths in units of
S = min(height, width); times in seconds."""
from __future__ import annotations

from dataclasses import dataclass, field

DIMENSIONS = ("colour", "shape", "motion", "identity", "smoothness", "flicker", "sharpness")


@dataclass(frozen=True)
class JudgeConfig:
    weights: dict = field(default_factory=lambda: {
        "colour": 0.20, "shape": 0.15, "motion": 0.20, "identity": 0.10,
        "smoothness": 0.10, "flicker": 0.10, "sharpness": 0.15,
    })
    # segmentation: a pixel is foreground by its delta E from the (static) background estimate
    fg_low: float = 8.0            # delta E at which foreground weight starts
    fg_high: float = 20.0          # ... and reaches 1
    min_area: float = 0.002        # fraction of the frame an object must cover to count as present
    # colour: exp(-(dE / colour_sigma)^2); the closest two named colours are ~42 apart
    colour_sigma: float = 30.0
    # shape: exp(-|f - signature|^2 / (2 shape_sigma^2)) on the moment signature
    shape_sigma: float = 0.12
    # motion: fraction of the world's speed / amplitude / turn that earns full marks
    motion_fraction: float = 0.5
    direction_power: float = 4.0   # cos^4: 45 degrees off earns 0.25
    still_speed: float = 0.06      # S/s of drift at which a "still" object scores exp(-1)
    still_resize: float = 0.1      # change of log size per second at which it scores exp(-1)
    # identity: stabilities over time
    identity_colour_sigma: float = 6.0
    identity_shape_sigma: float = 0.12
    identity_size_sigma: float = 0.04   # rms second difference of log size per frame
    # smoothness: acceleration beyond the named motion's own, relative to the speed
    smooth_sigma: float = 0.5
    smooth_speed_floor: float = 0.004   # S per frame, so a resting object's jitter is judged mildly
    # flicker: frame-to-frame background change and object-colour second difference (delta E)
    flicker_sigma: float = 3.0
    # sharpness: edge steepness relative to a crisp render of the world
    sharpness_power: float = 1.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(DIMENSIONS))
        if unknown or any(not w >= 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError(f"JudgeConfig.weights: non-negative weights over {list(DIMENSIONS)} with a positive "
                             f"sum expected, got {self.weights}")
        if not 0 <= self.fg_low < self.fg_high:
            raise ValueError(f"JudgeConfig: expected 0 <= fg_low < fg_high, got {self.fg_low}, {self.fg_high}")
