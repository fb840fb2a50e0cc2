"""Motion adherence: the centroid / size trajectory against the named motion, in [0, 1].

  straight (8 directions)  cos(fitted velocity, direction)^direction_power * speed reached
                           * path efficiency (net displacement along the direction / path length)
  bounce                   vertical amplitude reached * (1 - sideways / vertical range) * reversals seen
  grow / shrink            log-area change reached * monotonicity
  orbit                    turning reached (counter-clockwise on screen) * turn consistency^2 * speed reached
  still                    exp(-(drift / still_speed)^2 - (size change / still_resize)^2)

"Reached" = observed / (motion_fraction * the world's own value), clipped to 1, so a model that
moves the right way but slower still earns partial credit.

Time offset: `start_frame` says the clip starts at frame s of the motion (time s / fps), e.g. a
segment cut from a longer video. Straight and orbit motions look the same at any time; bounce
(which reversals fall inside the clip) and grow / shrink (they stop after GROW_SECONDS, after which
the object should hold its size, judged like a still object's size) are judged against the motion's
state from s / fps on. start_frame = 0 is the clip-starts-at-t=0 judgement.
"""
from __future__ import annotations

import math

import torch

from training.world.attributes import (BOUNCE_HEIGHT, BOUNCE_PERIOD, DIRECTIONS, ORBIT_PERIOD, ORBIT_RADIUS,
                                       SPEED)
from training.world.motion import expected_area_ratio

from .config import JudgeConfig
from .measure import Track


def _reached(observed: float, expected: float, config: JudgeConfig) -> float:
    return max(0.0, min(1.0, observed / (config.motion_fraction * expected)))


def _fit_slope(t: torch.Tensor, p: torch.Tensor) -> float:
    """Least-squares slope of p(t)."""
    tc = t - t.mean()
    return float((tc * (p - p.mean())).sum() / (tc * tc).sum().clamp_min(1e-12))


def _straight(motion: str, t, x, y, config) -> float:
    ux, uy = DIRECTIONS[motion]
    vx, vy = _fit_slope(t, x), _fit_slope(t, y)                                # S per second
    speed = math.hypot(vx, vy)
    path = float(torch.hypot(torch.diff(x), torch.diff(y)).sum())
    if speed < 1e-9 or path < 1e-9:
        return 0.0
    along = vx * ux + vy * uy
    net = float((x[-1] - x[0]) * ux + (y[-1] - y[0]) * uy)
    efficiency = max(0.0, net) / path                                          # 1 for a straight path
    return max(0.0, along / speed) ** config.direction_power * _reached(along, SPEED, config) * efficiency


def _reversals(v: torch.Tensor, deadband: float) -> int:
    signs = torch.sign(v[v.abs() > deadband])
    return int((signs[1:] != signs[:-1]).sum()) if len(signs) > 1 else 0


def _expected_reversals(t0: float, duration: float) -> int:
    """Hop reversals (at multiples of half a period) strictly inside the clip's time (t0, t0 + duration)."""
    half = BOUNCE_PERIOD / 2
    return max(0, math.ceil((t0 + duration) / half - 1e-6) - 1 - math.floor(t0 / half + 1e-6))


def _bounce(t, x, y, fps, config, t0: float = 0.0) -> float:
    duration = float(t[-1] - t[0])
    yr = float(y.quantile(0.95) - y.quantile(0.05))
    xr = float(x.quantile(0.95) - x.quantile(0.05))
    vertical_share = max(0.0, 1.0 - xr / max(yr, 1e-9))                       # 1 when it does not drift sideways
    peak_speed = math.pi * BOUNCE_HEIGHT / BOUNCE_PERIOD / fps                 # S per frame at mid-hop
    vy = torch.diff(y)
    expected = _expected_reversals(t0, duration)
    observed = _reversals(vy, 0.15 * peak_speed)
    counted = 1.0 if expected == 0 else (min(observed, expected) / expected
                                         * math.exp(-max(0, observed - expected) / expected))
    return _reached(yr, BOUNCE_HEIGHT, config) * vertical_share * counted


def _size_change(motion: str, t, mass, radius, config, t0: float = 0.0) -> float:
    duration = float(t[-1] - t[0])
    k = max(1, min(3, len(mass) // 4))
    log_area = torch.log(mass.clamp_min(1e-6))
    change = float(log_area[-k:].mean() - log_area[:k].mean())
    expected = math.log(expected_area_ratio(motion, duration, t0))            # > 0 grow, < 0 shrink
    if abs(expected) < 1e-9:       # the clip starts after the law stopped: the size must hold
        return _still(t, x=None, y=None, radius=radius, config=config, moves=False)
    steps = torch.diff(log_area) * (1.0 if expected > 0 else -1.0)
    total = float(steps.abs().sum())
    monotonic = float(steps.clamp_min(0).sum()) / total if total > 1e-9 else 0.0
    return _reached(change / expected, 1.0, config) * monotonic


def _orbit(t, x, y, fps, config) -> float:
    duration = float(t[-1] - t[0])
    vx, vy = torch.diff(x), -torch.diff(y)                                     # y up: counter-clockwise > 0
    if len(vx) < 2:
        return 0.0
    cross = vx[:-1] * vy[1:] - vy[:-1] * vx[1:]
    dot = vx[:-1] * vx[1:] + vy[:-1] * vy[1:]
    turn = torch.atan2(cross, dot)                                             # [T-2] heading changes
    total = float(turn.abs().sum())
    consistency = float(turn.clamp_min(0).sum()) / total if total > 1e-9 else 0.0
    speed = float(torch.hypot(vx, vy).mean()) * fps
    expected_turn = 2 * math.pi * duration / ORBIT_PERIOD
    expected_speed = 2 * math.pi * ORBIT_RADIUS / ORBIT_PERIOD
    return (_reached(float(turn.sum()), expected_turn, config) * consistency ** 2
            * _reached(speed, expected_speed, config))


def _still(t, x, y, radius, config, moves: bool = True) -> float:
    """moves=False: judge the size only (x, y unused)."""
    duration = max(float(t[-1] - t[0]), 1e-9)
    drift = float(torch.hypot(torch.diff(x), torch.diff(y)).sum()) / duration if moves else 0.0  # S per second
    resize = float(torch.diff(torch.log(radius.clamp_min(1e-6))).abs().sum()) / duration  # log-size per second
    return math.exp(-(drift / config.still_speed) ** 2 - (resize / config.still_resize) ** 2)


def motion_score(track: Track, motion: str, fps: float, config: JudgeConfig, start_frame: int = 0) -> float:
    """NaN when the motion cannot be judged (unsaid, or fewer than 3 frames with the object).
    start_frame: the clip's first frame is frame `start_frame` of the motion (time start_frame / fps)."""
    if motion is None or int(track.present.sum()) < 3:
        return float("nan") if motion is None else 0.0
    keep = track.present
    t = torch.arange(len(keep), dtype=track.x.dtype)[keep] / fps
    x, y, mass = track.x[keep], track.y[keep], track.mass[keep]
    t0 = start_frame / fps
    if motion in DIRECTIONS:
        return _straight(motion, t, x, y, config)
    if motion == "bounce":
        return _bounce(t, x, y, fps, config, t0)
    if motion in ("grow", "shrink"):
        return _size_change(motion, t, mass, track.radius[keep], config, t0)
    if motion == "orbit":
        return _orbit(t, x, y, fps, config)
    if motion == "still":
        return _still(t, x, y, track.radius[keep], config)
    raise ValueError(f"unknown motion {motion!r}")
