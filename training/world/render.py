"""Render a complete Scene to frames: pure torch, vectorised over time and pixels.

    video = render(scene, frames=33, height=64, width=64)   # [T, H, W, 3] float32 in 0..1
"""
from __future__ import annotations

import torch

from salt_core.validation import latent_frames_for

from .attributes import BACKGROUNDS, COLOURS, SIZES
from .motion import object_track
from .scene import Scene
from .shapes import coverage, signed_distance

MIN_SIDE = 32
DEFAULT_FPS = 16.0


def check_geometry(frames: int, height: int, width: int, fps: float) -> None:
    latent_frames_for(frames)  # frames = 4k+1
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, int) or v < MIN_SIDE:
            raise ValueError(f"{name} must be an integer >= {MIN_SIDE} pixels, got {v!r}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")


def background_image(name: str, height: int, width: int) -> torch.Tensor:
    """-> [H, W, 3]: a vertical blend from the top colour to the bottom colour."""
    top, bottom = (torch.tensor(c, dtype=torch.float32) for c in BACKGROUNDS[name])
    w = torch.linspace(0.0, 1.0, height).view(height, 1, 1)
    return (top + (bottom - top) * w).expand(height, width, 3)


def object_alpha(obj, t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Coverage of one complete ObjectSpec -> [T, H, W], wrapping around the frame edges."""
    side = min(height, width)
    start = (obj.start[0] * width / side, obj.start[1] * height / side)
    cx, cy, scale = object_track(obj.motion, start, t)                      # [T] in units of S
    ys = torch.arange(height, dtype=torch.float32) + 0.5                       # pixel centres
    xs = torch.arange(width, dtype=torch.float32) + 0.5
    dx = torch.remainder(xs.view(1, 1, width) - cx.view(-1, 1, 1) * side + width / 2, width) - width / 2
    dy = torch.remainder(ys.view(1, height, 1) - cy.view(-1, 1, 1) * side + height / 2, height) - height / 2
    radius = (SIZES[obj.size] * side * scale).view(-1, 1, 1)
    return coverage(signed_distance(obj.shape, dx, dy, radius))


def render(scene: Scene, frames: int, height: int, width: int, fps: float = DEFAULT_FPS,
           start_frame: int = 0) -> torch.Tensor:
    """-> video [T, H, W, 3] float32 in 0..1; frame i shows time (start_frame + i) / fps seconds."""
    if not isinstance(scene, Scene):
        raise ValueError(f"render: scene must be a Scene, got {type(scene).__name__}")
    if not scene.complete:
        raise ValueError("render: the scene is incomplete (a size, start, motion, colour or the background is "
                         "None); fill it with training.world.complete_scene(scene, seed)")
    check_geometry(frames, height, width, fps)
    if not isinstance(start_frame, int) or isinstance(start_frame, bool):
        raise ValueError(f"start_frame must be an int (a frame index), got {start_frame!r}")
    t = (start_frame + torch.arange(frames, dtype=torch.float32)) / fps                  # [T]
    video = background_image(scene.background, height, width).expand(frames, height, width, 3)
    for obj in scene.objects:  # later objects are drawn on top
        alpha = object_alpha(obj, t, height, width).unsqueeze(-1)                        # [T, H, W, 1]
        colour = torch.tensor(COLOURS[obj.colour], dtype=torch.float32)
        video = torch.lerp(video, colour.expand_as(video), alpha)
    return video.contiguous()
