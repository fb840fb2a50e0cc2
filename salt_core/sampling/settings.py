"""What a model was trained with, and what the user asks for on top of it.

A checkpoint carries its trained settings (`salt_core.config.SamplingDefaults`: causal or not, chunk size, step
grid, shift, transition, timestep convention, cache policy). Every user choice — steps, explicit timesteps,
transition, chunk size and each field of the cache policy — is an override applied on top of those; anything the
user leaves unset keeps the trained value. Contradictions the sampler cannot run are refused here, before any
compute, naming the setting, the trained value and what is allowed; choices that run but differ from training are
listed in `notes` so the CLI and the nodes can say so.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..config import SamplingDefaults
from ..kv_cache import POLICIES, POSITIONS, CachePolicy
from ..schedules import resolve_grid
from .chunks import ChunkLayout
from .transitions import check_transition
from .walk import Walk


@dataclass(frozen=True)
class CacheOverrides:
    """User choices for the KV-cache policy; None keeps the trained value."""

    kind: Optional[str] = None
    window_frames: Optional[int] = None
    sink_frames: Optional[int] = None
    max_frames: Optional[int] = None
    positions: Optional[str] = None
    context_t: Optional[float] = None
    recache_on_switch: Optional[bool] = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in POLICIES:
            raise ValueError(f"cache policy {self.kind!r} is unknown; allowed: {list(POLICIES)}")
        if self.positions is not None and self.positions not in POSITIONS:
            raise ValueError(f"cache positions {self.positions!r} is unknown; allowed: {list(POSITIONS)}")

    @property
    def given(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class SamplingOverrides:
    """User choices on top of a model's trained settings; None / empty keeps the trained value."""

    steps: Optional[int] = None
    timesteps: Optional[Sequence[float]] = None  # explicit list on the un-shifted 0..1000 scale
    transition: Optional[str] = None
    chunk_frames: Optional[int] = None
    cache: CacheOverrides = field(default_factory=CacheOverrides)

    def __post_init__(self) -> None:
        if self.transition is not None:
            check_transition(self.transition)
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", tuple(float(t) for t in self.timesteps))


NO_OVERRIDES = SamplingOverrides()


@dataclass(frozen=True)
class SamplingPlan:
    """The settings a run samples with: trained values with the user's overrides applied."""

    walk: Walk
    causal: bool
    layout: Optional[ChunkLayout]  # causal models
    policy: Optional[CachePolicy]  # causal models
    notes: tuple[str, ...] = ()  # where the run differs from what the model was trained with


def describe_trained(s: SamplingDefaults) -> str:
    """One line: what the model was trained with."""
    grid = ", ".join(f"{t:g}" for t in s.timesteps) if len(s.timesteps) <= 8 else \
        f"{s.timesteps[0]:g} .. {s.timesteps[-1]:g}"
    steps = f"{len(s.timesteps)} steps [{grid}] shift {s.shift:g}, {s.transition}, " \
            f"{'integer' if s.integer_timesteps else 'float'} timesteps"
    if not s.causal:
        return f"bidirectional, {steps}"
    cache = s.cache.describe() if s.cache is not None else "cache policy not recorded"
    return f"causal, chunks of {s.chunk_frames} latent frames, {steps}, cache {cache}"


def _overridden_policy(trained: Optional[CachePolicy], over: CacheOverrides, latent_frames: int) -> tuple[CachePolicy, list[str]]:
    base = trained if trained is not None else CachePolicy("full", max_frames=max(latent_frames, 1))
    given = over.given
    kind = given.get("kind", base.kind)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(CachePolicy)}
    fields.update(given)
    fields["kind"] = kind
    if kind != base.kind:  # sizes of the trained kind do not carry over to another kind unless they fit it
        if kind == "full":
            fields["window_frames"] = given.get("window_frames", 0)
            fields["sink_frames"] = given.get("sink_frames", 0)
        if kind == "window":
            fields["sink_frames"] = given.get("sink_frames", 0)
        if kind in ("window", "sink_window") and fields["window_frames"] < 1:
            raise ValueError(f"cache policy '{kind}' needs a window size (window_frames / --window): the model "
                             f"was trained with '{base.kind}', which has none")
        if kind == "sink_window" and fields["sink_frames"] < 1:
            raise ValueError("cache policy 'sink_window' needs a sink size (sink_frames / --sink): the model was "
                             f"trained with '{base.kind}', which has none")
    if kind != "sink_window" and given.get("sink_frames"):
        raise ValueError(f"a sink size (sink_frames={given['sink_frames']}) applies to the 'sink_window' policy, "
                         f"not to '{kind}'; choose policy 'sink_window' too")
    if kind == "full" and "max_frames" not in given:
        fields["max_frames"] = max(fields["max_frames"], latent_frames)  # the whole video fits a full cache
    policy = CachePolicy(**fields)
    notes = []
    if trained is None:
        notes.append("the model does not record its trained cache policy: assuming a full cache over the video")
    else:
        for name, value in given.items():
            if value != getattr(trained, name):
                notes.append(f"cache {name} {value!r} (trained: {getattr(trained, name)!r})")
    return policy, notes


def plan_sampling(trained: SamplingDefaults, overrides: SamplingOverrides, *, latent_frames: int,
                  latent_hw: tuple[int, int], batch: int = 1, rope_positions: Optional[int] = None) -> SamplingPlan:
    """Apply `overrides` to `trained` for a video of latent_frames x latent_hw; every check happens here."""
    o, notes = overrides, []
    grid = resolve_grid(steps=o.steps, timesteps=o.timesteps, trained_timesteps=trained.timesteps,
                        shift=trained.shift)
    if tuple(grid.timesteps) != tuple(resolve_grid(trained_timesteps=trained.timesteps, shift=trained.shift).timesteps):
        notes.append(f"{grid.steps} steps [{', '.join(f'{t:.4g}' for t in grid.timesteps)}] "
                     f"(trained: {len(trained.timesteps)})")
    transition = o.transition or trained.transition
    if transition != trained.transition:
        notes.append(f"transition {transition} (trained: {trained.transition})")
    walk = Walk(grid, transition)
    if not trained.causal:
        causal_only = [name for name, v in (("chunk_frames", o.chunk_frames), *o.cache.given.items()) if v is not None]
        if causal_only:
            raise ValueError(f"{', '.join(causal_only)} only apply to causal (autoregressive) models; this model is "
                             "bidirectional (it denoises the whole clip at once)")
        return SamplingPlan(walk, False, None, None, tuple(notes))
    chunk = o.chunk_frames or trained.chunk_frames
    if chunk != trained.chunk_frames:
        notes.append(f"chunks of {chunk} latent frames (trained: {trained.chunk_frames})")
    layout = ChunkLayout(latent_frames, tuple(latent_hw), chunk, batch)
    policy, policy_notes = _overridden_policy(trained.cache, o.cache, latent_frames)
    if rope_positions is not None:
        policy.check_length(latent_frames, chunk, rope_positions)
    return SamplingPlan(walk, True, layout, policy, tuple(notes + policy_notes))
