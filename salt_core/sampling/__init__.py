"""The sampling core: one denoiser, one walk, one chunk driver.

* `Denoiser` — a model bound to its conditioning (prompt or KV cache + chunk), guidance and timestep convention:
  v(x, σ) and x̂0(x, σ).
* `Walk` — a step grid and a transition; `Walk.run` walks a denoiser over it, recording states and putting
  gradient only where asked.
* `ChunkDriver` — a causal model's KV cache(s) for one video: a denoiser per chunk, the context pass that commits
  it, prompt switches with re-cache.

Whole-clip (`sample_clip`) and chunk-by-chunk (`stream_ar`, `sample_ar`) sampling, the training rollouts, ODE
pairs and the semigroup-defect metric are thin users of these three; nothing else writes a denoising loop.
"""
from .autoregressive import ChunkResult, PromptSegment, StopSampling, collect_chunks, sample_ar, stream_ar
from .chunks import CausalSetup, ChunkDriver, ChunkEvent, ChunkLayout
from .clip import StepProgress, sample_clip
from .denoiser import Denoiser, predict_x0
from .guidance import NO_GUIDANCE, Guidance
from .noise import draw, seeded_generator
from .transitions import TRANSITIONS, check_transition, transition_step
from .walk import Move, StepEvent, Walk, WalkResult

__all__ = [
    "CausalSetup", "ChunkDriver", "ChunkEvent", "ChunkLayout", "ChunkResult", "Denoiser", "Guidance", "Move", "NO_GUIDANCE",
    "PromptSegment", "StepEvent", "StepProgress", "StopSampling", "TRANSITIONS", "Walk", "WalkResult",
    "check_transition", "collect_chunks", "draw", "predict_x0", "sample_ar", "sample_clip", "seeded_generator",
    "stream_ar", "transition_step",
]
