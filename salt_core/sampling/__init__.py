"""Few-step samplers: whole-clip (bidirectional) and chunk-by-chunk against a KV cache (causal)."""
from .autoregressive import ChunkResult, PromptSegment, recache_prompt, sample_ar, stream_ar
from .clip import sample_clip
from .transitions import TRANSITIONS, model_timestep, predict_x0, transition_step

__all__ = [
    "ChunkResult",
    "PromptSegment",
    "TRANSITIONS",
    "model_timestep",
    "predict_x0",
    "recache_prompt",
    "sample_ar",
    "sample_clip",
    "stream_ar",
    "transition_step",
]
