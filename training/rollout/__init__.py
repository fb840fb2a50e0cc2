"""Student rollouts for training: bidirectional, autoregressive (Self Forcing style, mixed-step caches),
and the low/high-quality cache pair of cache-conditioned feature alignment (DESIGN §6)."""
from .autoregressive import ARRollout, ChunkTrace, rollout_ar
from .bidirectional import Rollout, rollout_bidirectional
from .cache_aware import CachePair, build_cache, cache_alignment_term, cache_features, cache_pair
from .common import CachedChunk, as_grid, denoise_path, draw_exit_step, draw_step_count, mixed_step_grids

__all__ = [
    "ARRollout",
    "CachePair",
    "CachedChunk",
    "ChunkTrace",
    "Rollout",
    "as_grid",
    "build_cache",
    "cache_alignment_term",
    "cache_features",
    "cache_pair",
    "denoise_path",
    "draw_exit_step",
    "draw_step_count",
    "mixed_step_grids",
    "rollout_ar",
    "rollout_bidirectional",
]
