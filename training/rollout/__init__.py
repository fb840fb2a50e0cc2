"""Student rollouts for training — bidirectional, autoregressive (Self Forcing style, mixed-step caches) and the
low/high-quality cache pair of cache-conditioned feature alignment — as users of salt_core's denoiser, walk and
chunk driver."""
from .autoregressive import ARRollout, ChunkSteps, ChunkTrace, plan_chunks, rollout_ar
from .bidirectional import Rollout, rollout_bidirectional
from .cache_aware import CacheAlignment, CachePair, build_cache, cache_alignment_term, cache_features, cache_pair
from .common import as_grid, draw_exit_step, draw_step_count, mixed_step_grids

__all__ = [
    "ARRollout", "CacheAlignment", "CachePair", "ChunkSteps", "ChunkTrace", "Rollout", "as_grid", "build_cache",
    "cache_alignment_term", "cache_features", "cache_pair", "draw_exit_step", "draw_step_count", "mixed_step_grids",
    "plan_chunks", "rollout_ar", "rollout_bidirectional",
]
